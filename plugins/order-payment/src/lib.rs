//! Waits for a payment provider to confirm an order's payment.
//!
//! Input: `{"order_id": string, "amount": number, "currency"?: string}`.
//! Output: `{"order_id", "amount", "status": "paid" | "payment-failed", "payment": <callback data>}`.

use latch_sdk::{Error, ModuleInfo, Result, Start, Webhook, WebhookOptions, Workflow, log};
use serde::Deserialize;
use serde_json::{Number, Value, json};

#[derive(Deserialize)]
struct Input {
    order_id: String,
    amount: Number,
    currency: Option<String>,
}

struct OrderPayment;

impl Workflow for OrderPayment {
    fn describe() -> ModuleInfo {
        ModuleInfo::new("Waits for a payment provider's callback confirming an order's payment")
    }

    fn run(start: Start) -> Result<Value> {
        let input: Input = start.input()?;
        if input.order_id.trim().is_empty() {
            return Err(Error::new("bad-input", "order_id must not be empty"));
        }

        let callback = Webhook::create(WebhookOptions::new())?;
        log::info(format!(
            "awaiting payment of {} {} for order {}",
            input.amount,
            input.currency.as_deref().unwrap_or("(no currency)"),
            input.order_id
        ));
        log::info(format!("payment callback URL: {}", callback.url()));

        let payment = callback.next()?.data;
        let status =
            if payment.get("status").and_then(Value::as_str) == Some("failed") { "payment-failed" } else { "paid" };
        log::info(format!("order {}: {status}", input.order_id));

        Ok(json!({
            "order_id": input.order_id,
            "amount": input.amount,
            "status": status,
            "payment": payment,
        }))
    }
}

latch_sdk::workflow!(OrderPayment);
