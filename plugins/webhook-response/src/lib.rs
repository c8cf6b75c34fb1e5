//! A Webhook listener paired with a Webhook Response: calls to the module's trigger URLs
//! start runs, and the run chooses the answer.
//!
//! - `POST|PATCH /t/{module}/orders/new` (header `x-shop` and a body with `order_id`
//!   expected, else 422): the run answers 201 `{"order_id", "run_id"}`, or 202 when the
//!   order's `priority` is `low` (the status is chosen at run time).
//! - `GET /t/{module}/ping`: answered at once, 200 `{"pong":true,"run":"<run id>"}`; the
//!   run's output is the query.
//! - `POST /t/{module}/secure-orders?key=<api key>`: an API key in the URL (Blink's full
//!   URL); answered 202 at once.

use latch_sdk::{Auth, Error, Method, ModuleInfo, Response, Result, Start, Trigger, Workflow, run_id};
use serde_json::{Value, json};

struct WebhookResponse;

impl Workflow for WebhookResponse {
    fn describe() -> ModuleInfo {
        let expected = json!({
            "type": "object",
            "properties": {
                "headers": { "type": "object", "required": ["x-shop"] },
                "body": { "type": "object", "required": ["order_id"], "properties": { "order_id": { "type": "string" } } }
            }
        });
        ModuleInfo::new("Starts a run per incoming order and answers with a status chosen by the run")
            .trigger(
                Trigger::new("new-order", "orders/new")
                    .methods([Method::Post, Method::Patch])
                    .expects(expected)
                    .manual(),
            )
            .trigger(
                Trigger::new("ping", "ping").methods([Method::Get]).response(
                    Response::new(200)
                        .header("content-type", "application/json")
                        .body(r#"{"pong":true,"run":"{{run_id}}"}"#),
                ),
            )
            .trigger(Trigger::new("secure-orders", "secure-orders").auth(Auth::UrlKey))
    }

    fn run(start: Start) -> Result<Value> {
        let Start::Trigger(request) = start else {
            return Err(Error::new("bad-input", "this module is started by its trigger URLs"));
        };
        match request.webhook.as_str() {
            "trigger:new-order" => {
                let order_id = request.data["order_id"].clone();
                let status = if request.data["priority"] == "low" { 202 } else { 201 };
                request.respond(Response::json(status, &json!({ "order_id": order_id, "run_id": run_id() }))?)?;
                Ok(json!({ "order_id": order_id, "answered": status }))
            }
            _ => Ok(json!({ "trigger": request.webhook, "data": request.data })),
        }
    }
}

latch_sdk::workflow!(WebhookResponse);
