//! FlowRunner's order processing: prepare an order, then pause at the mid-flow trigger
//! `payment-confirmed` until the payment system calls
//! `/t/{module}/payment-confirmed?execution=<run id>|any|all`, then complete the order.
//!
//! Input: `{"order_id": string, "timeout_ms"?: ms}`.
//! Output: `{"order_id", "run_id", "status": "completed" | "payment-timed-out", "payment"?}`.

use latch_sdk::{ModuleInfo, Result, Start, Workflow, log, run_id, wait_trigger};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Input {
    order_id: String,
    timeout_ms: Option<u64>,
}

struct OrderApproval;

impl Workflow for OrderApproval {
    fn describe() -> ModuleInfo {
        ModuleInfo::new("Prepares an order, then waits at the payment-confirmed trigger before completing it")
    }

    fn run(start: Start) -> Result<Value> {
        let input: Input = start.input()?;
        log::info(format!("order {} prepared; waiting for payment-confirmed", input.order_id));
        let Some(payment) = wait_trigger("payment-confirmed", input.timeout_ms) else {
            return Ok(json!({ "order_id": input.order_id, "run_id": run_id(), "status": "payment-timed-out" }));
        };
        Ok(json!({ "order_id": input.order_id, "run_id": run_id(), "status": "completed", "payment": payment.data }))
    }
}

latch_sdk::workflow!(OrderApproval);
