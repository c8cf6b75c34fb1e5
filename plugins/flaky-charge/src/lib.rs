//! A retried step: charge a card through a payment API that sometimes fails. Server
//! errors are retried with durable backoff; a refusal (4xx) is fatal and not retried.
//!
//! Input: `{"charge_url": string, "amount": number, "attempts"?: n, "backoff_ms"?: ms}`.
//! Output: `{"amount", "attempt": the attempt that succeeded, "receipt": <API answer>}`.

use latch_sdk::{Error, HttpRequest, ModuleInfo, Result, RetryPolicy, Start, StepError, Workflow, step};
use serde::Deserialize;
use serde_json::{Number, Value, json};

#[derive(Deserialize)]
struct Input {
    charge_url: String,
    amount: Number,
    #[serde(default = "three")]
    attempts: u32,
    #[serde(default = "one_second")]
    backoff_ms: u64,
}

fn three() -> u32 {
    3
}

fn one_second() -> u64 {
    1_000
}

fn charge(input: &Input, attempt: u32) -> Result<Value, StepError> {
    let response =
        HttpRequest::post(&input.charge_url).json(&json!({ "amount": input.amount, "attempt": attempt }))?.send()?;
    match response.status {
        200..=299 => Ok(json!({ "attempt": attempt, "receipt": response.json::<Value>()? })),
        500..=599 => Err(StepError::Retry(Error::new("payment-api-down", format!("{}", response.status)))),
        status => Err(StepError::Fatal(Error::new("charge-refused", format!("{status}: {}", response.body)))),
    }
}

struct FlakyCharge;

impl Workflow for FlakyCharge {
    fn describe() -> ModuleInfo {
        ModuleInfo::new("Charges a card through a flaky API, retrying server errors with durable backoff")
    }

    fn run(start: Start) -> Result<Value> {
        let input: Input = start.input()?;
        let policy =
            RetryPolicy { max_attempts: input.attempts, initial_backoff_ms: input.backoff_ms, max_backoff_ms: 60_000 };
        let charged: Value = step("charge", policy, |attempt| charge(&input, attempt))?;
        Ok(json!({ "amount": input.amount, "attempt": charged["attempt"], "receipt": charged["receipt"] }))
    }
}

latch_sdk::workflow!(FlakyCharge);
