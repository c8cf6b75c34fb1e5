// An order that waits for its approval, in four versions of one module (this file is
// each version's code; `VERSION` tells them apart), for the upgrade tests:
// 1. the original: the total ignores the discount (the bug);
// 2. the fix: the same calls up to the wait, the discount applied after it (compatible);
// 3. the fix plus a time stamp taken before the webhook (diverges from 1's logs);
// 4. version 3 with the stamp behind `patched("stamp-orders")` (compatible again).
//
// Input: `{"order_id": string, "amount": number, "discount_percent"?: number, "wait"?:
// "approval" | "timer" | "calls" | "held" | "trigger", "ms"?: number, "calls"?: number}`:
// what the run waits on (a webhook's one call; a durable timer of `ms`; `calls` calls to one
// webhook; a call whose caller is held while the run sleeps `ms`, then answered with the
// total; a call to the named trigger `approve`, which version 4 no longer declares).
// Output: `{"version", "order_id", "total", "stamped": bool, "approval": <what arrived>}`.

use latch_sdk::{
    Error, ModuleInfo, NamedTrigger, Response, Result, Start, Webhook, WebhookOptions, Workflow, log, sleep,
    wait_trigger,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Input {
    order_id: String,
    amount: f64,
    #[serde(default)]
    discount_percent: f64,
    #[serde(default)]
    wait: Option<String>,
    #[serde(default)]
    ms: u64,
    #[serde(default)]
    calls: usize,
}

struct OrderDiscount;

impl Workflow for OrderDiscount {
    fn describe() -> ModuleInfo {
        let info = ModuleInfo::new("Waits for an order's approval, then totals it (four versions, for upgrades)");
        match VERSION {
            4 => info,
            _ => info.named_trigger(NamedTrigger::new("approve")),
        }
    }

    fn run(start: Start) -> Result<Value> {
        let input: Input = start.input()?;
        if input.order_id.is_empty() {
            return Err(Error::new("bad-input", "order_id must not be empty"));
        }
        let stamped = match VERSION {
            3 => Some(latch_sdk::now_ms()),
            4 if latch_sdk::patched("stamp-orders") => Some(latch_sdk::now_ms()),
            _ => None,
        };
        let total = |amount: f64| match VERSION {
            1 => amount,
            _ => amount * (100.0 - input.discount_percent) / 100.0,
        };
        let decision = match input.wait.as_deref().unwrap_or("approval") {
            "timer" => {
                sleep(input.ms);
                json!({ "slept_ms": input.ms })
            }
            "trigger" => wait_trigger("approve", None).map_or(Value::Null, |request| request.data),
            "calls" => {
                let hook = Webhook::create(WebhookOptions::new().many())?;
                log::info(format!("order {} takes {} calls", input.order_id, input.calls));
                let taken: Result<Vec<Value>> = (0..input.calls).map(|_| Ok(hook.next()?.data)).collect();
                json!(taken?)
            }
            "held" => {
                let hook = Webhook::create(WebhookOptions::new().manual())?;
                log::info(format!("order {} answers its caller after {} ms", input.order_id, input.ms));
                let request = hook.next()?;
                sleep(input.ms);
                request.respond(Response::json(200, &json!({ "version": VERSION, "total": total(input.amount) }))?)?;
                request.data
            }
            _ => {
                let approval = Webhook::create(WebhookOptions::new())?;
                log::info(format!("order {} awaits approval", input.order_id));
                approval.next()?.data
            }
        };
        let total = total(input.amount);
        // Asked again after the wait: the run's first answer holds (and is recorded once).
        if VERSION == 4 && latch_sdk::patched("stamp-orders") != stamped.is_some() {
            return Err(Error::new("patched-changed", "patched answered otherwise the second time"));
        }
        Ok(json!({
            "version": VERSION,
            "order_id": input.order_id,
            "total": total,
            "stamped": stamped.is_some(),
            "approval": decision,
        }))
    }
}

latch_sdk::workflow!(OrderDiscount);
