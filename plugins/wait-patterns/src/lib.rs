//! Small waiting patterns, as test fixtures and examples.
//!
//! - `{"pattern": "sleep", "ms": n}`: sleeps durably; output `{"slept_ms"}` as the run's
//!   recorded clock saw it.
//! - `{"pattern": "first-of-two", "tokens": [a, b], "only_first"?: bool, "sleep_ms"?: n,
//!   "manual"?: bool}`: makes two webhooks (with `manual`, each call is answered by the run
//!   with `200 {"taken": true}`), sleeps `sleep_ms` durably (calls that come meanwhile are
//!   kept), waits for the first call on either, then for the other (unless `only_first`);
//!   output `{"first_index", "first", "second"}`.
//! - `{"pattern": "step-then-wait", "token": t}`: a step whose body reads the clock and
//!   randomness, a log line that depends on both after it, then a wait on webhook `t`. A
//!   replay skips the step's body yet must log the same line; output `{"after"}`.

use latch_sdk::{
    Error, ModuleInfo, Outcome, Response, Result, RetryPolicy, Start, Waitable, Webhook, WebhookOptions, Workflow, log,
    now_ms, select, sleep, step,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(tag = "pattern", rename_all = "kebab-case")]
enum Input {
    Sleep {
        ms: u64,
    },
    FirstOfTwo {
        tokens: [String; 2],
        #[serde(default)]
        only_first: bool,
        #[serde(default)]
        sleep_ms: u64,
        #[serde(default)]
        manual: bool,
    },
    StepThenWait {
        token: String,
    },
}

/// The WASI clock and random source, as a guest reads them.
fn clock_and_randomness() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let random = getrandom::u64().unwrap_or_default();
    format!("{}-{random}", now.as_micros())
}

fn step_then_wait(token: String) -> Result<Value> {
    let inside: String = step("read-clock-and-randomness", RetryPolicy::once(), |_| {
        // Several readings, so that skipping them would show.
        for _ in 0..5 {
            clock_and_randomness();
        }
        Ok(clock_and_randomness())
    })?;
    let after = clock_and_randomness();
    log::info(format!("inside {inside}, after {after}"));
    Webhook::create(WebhookOptions::new().token(token))?.next()?;
    Ok(json!({ "after": after }))
}

fn first_of_two(tokens: [String; 2], only_first: bool, sleep_ms: u64, manual: bool) -> Result<Value> {
    let options = |token| {
        let options = WebhookOptions::new().token(token);
        if manual { options.manual_response(30_000) } else { options }
    };
    let [a, b] = tokens.map(|token| Webhook::create(options(token)));
    let hooks = [a?, b?];
    if sleep_ms > 0 {
        sleep(sleep_ms);
    }
    let first = select(&[Waitable::Webhook(&hooks[0]), Waitable::Webhook(&hooks[1])]);
    let Outcome::Request(request) = first.outcome else {
        return Err(Error::new("closed", "a webhook closed"));
    };
    if manual {
        request.respond(Response::json(200, &json!({ "taken": true }))?)?;
    }
    if only_first {
        return Ok(json!({ "first_index": first.index, "first": request.data, "second": null }));
    }
    // The call on the other webhook, if it came meanwhile, was kept for this wait.
    let second = hooks[1 - first.index].next()?;
    Ok(json!({ "first_index": first.index, "first": request.data, "second": second.data }))
}

struct WaitPatterns;

impl Workflow for WaitPatterns {
    fn describe() -> ModuleInfo {
        ModuleInfo::new("Durable sleep and first-of-several waits")
    }

    fn run(start: Start) -> Result<Value> {
        match start.input()? {
            Input::Sleep { ms } => {
                let before = now_ms();
                sleep(ms);
                Ok(json!({ "slept_ms": now_ms() - before }))
            }
            Input::FirstOfTwo { tokens, only_first, sleep_ms, manual } => {
                first_of_two(tokens, only_first, sleep_ms, manual)
            }
            Input::StepThenWait { token } => step_then_wait(token),
        }
    }
}

latch_sdk::workflow!(WaitPatterns);
