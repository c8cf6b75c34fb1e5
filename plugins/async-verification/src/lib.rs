//! Async request-reply with a deadline (Workflow DevKit's "async verification"): submit a
//! document to a vendor over outbound HTTP, handing it a callback URL, then race the
//! vendor's callback against a durable timer.
//!
//! Input: `{"document_id": string, "vendor_url": string, "deadline_ms"?: number}`.
//! Output: `{"document_id", "status": "verified" | "rejected" | "timed_out", "details"?}`.

use latch_sdk::{
    Error, HttpRequest, ModuleInfo, Outcome, Response, Result, RetryPolicy, Start, StepError, Waitable, Webhook,
    WebhookOptions, Workflow, select, step,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Input {
    document_id: String,
    vendor_url: String,
    #[serde(default = "thirty_seconds")]
    deadline_ms: u64,
}

fn thirty_seconds() -> u64 {
    30_000
}

/// How long the vendor's callback is held for the run's answer.
const ANSWER_DEADLINE_MS: u32 = 10_000;

/// Errors a retry cannot mend.
const FATAL_CODES: [&str; 3] = ["host-not-allowed", "bad-url", "bad-request"];

fn submit(input: &Input, callback_url: &str) -> Result<u16, StepError> {
    let request = HttpRequest::post(&input.vendor_url)
        .json(&json!({ "document_id": input.document_id, "callback_url": callback_url }))?;
    let response = request
        .send()
        .map_err(|e| if FATAL_CODES.contains(&e.code.as_str()) { StepError::Fatal(e) } else { StepError::Retry(e) })?;
    match response.status {
        200..=299 => Ok(response.status),
        500..=599 => Err(StepError::Retry(Error::new("vendor-unavailable", response.body))),
        status => Err(StepError::Fatal(Error::new("vendor-refused", format!("{status}: {}", response.body)))),
    }
}

struct AsyncVerification;

impl Workflow for AsyncVerification {
    fn describe() -> ModuleInfo {
        ModuleInfo::new("Submits a document to a vendor and races its callback against a deadline")
    }

    fn run(start: Start) -> Result<Value> {
        let input: Input = start.input()?;
        let callback = Webhook::create(WebhookOptions::new().manual_response(ANSWER_DEADLINE_MS))?;
        step("submit-to-vendor", RetryPolicy::default(), |_| submit(&input, callback.url()))?;

        let first = select(&[Waitable::Webhook(&callback), Waitable::Timer(input.deadline_ms)]);
        match first.outcome {
            Outcome::Request(request) => {
                request.respond(Response::json(200, &json!({ "ack": true }))?)?;
                let approved = request.data.get("approved").and_then(Value::as_bool).unwrap_or(false);
                let details = request.data.get("details").or(request.data.get("reason")).cloned();
                Ok(json!({
                    "document_id": input.document_id,
                    "status": if approved { "verified" } else { "rejected" },
                    "details": details.unwrap_or(Value::Null),
                }))
            }
            Outcome::TimedOut => Ok(json!({ "document_id": input.document_id, "status": "timed_out" })),
            Outcome::Closed => Err(Error::new("closed", "the callback URL closed without a callback")),
        }
    }
}

latch_sdk::workflow!(AsyncVerification);
