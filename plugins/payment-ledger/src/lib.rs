//! Workflow DevKit's payment webhook: one URL takes many payment events, each answered by
//! the run itself, until a terminal event settles the order (`for await ... break`).
//!
//! Input: `{"order_id": string, "answer_within_ms"?: ms}`. Each call's JSON has a `type`;
//! `payment.succeeded` and `refund.created` are terminal. A `{"type": "slow", "ms": n}`
//! event is answered only after a durable sleep of n ms (to show the caller's deadline).
//! Output: `{"order_id", "webhook_url", "ledger": [{"type", "action"}], "status": "settled"}`.

use latch_sdk::{ModuleInfo, Response, Result, Start, Webhook, WebhookOptions, Workflow, sleep};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Input {
    order_id: String,
    #[serde(default = "ten_seconds")]
    answer_within_ms: u32,
}

fn ten_seconds() -> u32 {
    10_000
}

const TERMINAL: [&str; 2] = ["payment.succeeded", "refund.created"];

fn action(kind: &str) -> &'static str {
    match kind {
        "payment.succeeded" => "captured",
        "payment.failed" => "flagged",
        "refund.created" => "refunded",
        _ => "ignored",
    }
}

struct PaymentLedger;

impl Workflow for PaymentLedger {
    fn describe() -> ModuleInfo {
        ModuleInfo::new("Records payment events from one webhook, answering each, until the order settles")
    }

    fn run(start: Start) -> Result<Value> {
        let input: Input = start.input()?;
        let webhook = Webhook::create(WebhookOptions::new().many().manual_response(input.answer_within_ms))?;
        let mut ledger = Vec::new();
        loop {
            let request = webhook.next()?;
            let kind = request.data.get("type").and_then(Value::as_str).unwrap_or("unknown").to_string();
            if kind == "slow" {
                sleep(request.data.get("ms").and_then(Value::as_u64).unwrap_or(0));
            }
            let action = action(&kind);
            // Answering after the caller's deadline is not an error: it is recorded.
            request.respond(Response::json(200, &json!({ "ack": true, "action": action }))?)?;
            ledger.push(json!({ "type": kind, "action": action }));
            if TERMINAL.contains(&kind.as_str()) {
                break;
            }
        }
        webhook.close();
        Ok(json!({ "order_id": input.order_id, "webhook_url": webhook.url(), "ledger": ledger, "status": "settled" }))
    }
}

latch_sdk::workflow!(PaymentLedger);
