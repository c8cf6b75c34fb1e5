//! The benchmark's workflow: parks on a webhook and answers its calls.
//!
//! Input: `{"token"?: string, "history"?: n, "rounds"?: r, "manual"?: bool,
//! "timeout_ms"?: ms, "expires_in_ms"?: ms}`.
//! It creates one webhook (with `token` if given, so the caller knows the URL before the
//! run has started; expiring after `expires_in_ms`), appends `history` log events (a log
//! of that length for replay to walk), then takes up to `rounds` calls (default 1), each
//! waited for at most `timeout_ms`. With `manual` each call is answered by the run with
//! `200 {"round": i}`; otherwise the engine answers 202 at once.
//! Output: `{"rounds": calls taken, "ended": "answered" | "timed-out" | "closed"}`.

use latch_sdk::{ModuleInfo, Response, Result, Start, Webhook, WebhookOptions, Workflow, log};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Input {
    token: Option<String>,
    #[serde(default)]
    history: u32,
    #[serde(default = "one")]
    rounds: u32,
    #[serde(default)]
    manual: bool,
    timeout_ms: Option<u64>,
    expires_in_ms: Option<u64>,
}

fn one() -> u32 {
    1
}

/// How long a caller is held for a manual answer.
const ANSWER_DEADLINE_MS: u32 = 30_000;

struct BenchEcho;

impl Workflow for BenchEcho {
    fn describe() -> ModuleInfo {
        ModuleInfo::new("Benchmark workload: parks on a webhook and answers its calls")
    }

    fn run(start: Start) -> Result<Value> {
        let input: Input = start.input()?;
        let mut options = WebhookOptions::new();
        if let Some(token) = input.token {
            options = options.token(token);
        }
        if input.rounds > 1 {
            options = options.many();
        }
        if input.manual {
            options = options.manual_response(ANSWER_DEADLINE_MS);
        }
        if let Some(ms) = input.expires_in_ms {
            options = options.expires_in(ms);
        }
        let hook = Webhook::create(options)?;
        for n in 0..input.history {
            log::debug(format!("history {n}"));
        }
        let mut taken = 0;
        let ended = loop {
            if taken == input.rounds {
                break "answered";
            }
            let next = match input.timeout_ms {
                Some(ms) => hook.next_timeout(ms),
                None => hook.next().map(Some),
            };
            let request = match next {
                Ok(Some(request)) => request,
                Ok(None) => break "timed-out",
                Err(e) if e.code == "closed" => break "closed",
                Err(e) => return Err(e),
            };
            if input.manual {
                request.respond(Response::json(200, &json!({ "round": taken }))?)?;
            }
            taken += 1;
        };
        Ok(json!({ "rounds": taken, "ended": ended }))
    }
}

latch_sdk::workflow!(BenchEcho);
