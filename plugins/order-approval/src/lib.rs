//! FlowRunner's order processing: prepare an order, then pause at the mid-flow trigger
//! `payment-confirmed` until the payment system calls
//! `/t/{module}/payment-confirmed?execution=<run id>|any|all`, then complete the order.
//!
//! With `"trigger": "payment-verified"` it waits at a trigger that takes only callers
//! with an API key holding the `payments` role, and only once `body.status` is
//! `confirmed` (FlowRunner's authenticated, conditional trigger).
//!
//! Input: `{"order_id": string, "timeout_ms"?: ms, "trigger"?: name}`.
//! Output: `{"order_id", "run_id", "status": "completed" | "payment-timed-out", "payment"?,
//! "caller"?: API key name}`.

use latch_sdk::{Auth, Caller, ModuleInfo, NamedTrigger, Result, Start, Workflow, log, run_id, wait_trigger};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Input {
    order_id: String,
    timeout_ms: Option<u64>,
    #[serde(default = "payment_confirmed")]
    trigger: String,
}

fn payment_confirmed() -> String {
    "payment-confirmed".into()
}

struct OrderApproval;

impl Workflow for OrderApproval {
    fn describe() -> ModuleInfo {
        ModuleInfo::new("Prepares an order, then waits at the payment-confirmed trigger before completing it")
            // Open to any caller that names the run, or `any`/`all` (FlowRunner's no-auth trigger).
            .named_trigger(NamedTrigger::new("payment-confirmed"))
            .named_trigger(
                NamedTrigger::new("payment-verified")
                    .auth(Auth::Bearer(vec!["payments".into()]))
                    .condition(r#"body.status == "confirmed""#),
            )
    }

    fn run(start: Start) -> Result<Value> {
        let input: Input = start.input()?;
        log::info(format!("order {} prepared; waiting for {}", input.order_id, input.trigger));
        let Some(payment) = wait_trigger(&input.trigger, input.timeout_ms) else {
            return Ok(json!({ "order_id": input.order_id, "run_id": run_id(), "status": "payment-timed-out" }));
        };
        let caller = match &payment.caller {
            Caller::ApiKey { name, .. } => Some(name.clone()),
            _ => None,
        };
        Ok(json!({
            "order_id": input.order_id,
            "run_id": run_id(),
            "status": "completed",
            "payment": payment.data,
            "caller": caller,
        }))
    }
}

latch_sdk::workflow!(OrderApproval);
