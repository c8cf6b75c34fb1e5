//! Small waiting patterns, as test fixtures and examples.
//!
//! - `{"pattern": "sleep", "ms": n}`: sleeps durably; output `{"slept_ms"}` as the run's
//!   recorded clock saw it.
//! - `{"pattern": "first-of-two", "tokens": [a, b]}`: waits for the first call on either
//!   of two webhooks, then for the other; output `{"first_index", "first", "second"}`.

use latch_sdk::{
    Error, ModuleInfo, Outcome, Result, Start, Waitable, Webhook, WebhookOptions, Workflow, now_ms, select, sleep,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(tag = "pattern", rename_all = "kebab-case")]
enum Input {
    Sleep { ms: u64 },
    FirstOfTwo { tokens: [String; 2] },
}

fn first_of_two(tokens: [String; 2]) -> Result<Value> {
    let [a, b] = tokens.map(|token| Webhook::create(WebhookOptions::new().token(token)));
    let hooks = [a?, b?];
    let first = select(&[Waitable::Webhook(&hooks[0]), Waitable::Webhook(&hooks[1])]);
    let Outcome::Request(request) = first.outcome else {
        return Err(Error::new("closed", "a webhook closed"));
    };
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
            Input::FirstOfTwo { tokens } => first_of_two(tokens),
        }
    }
}

latch_sdk::workflow!(WaitPatterns);
