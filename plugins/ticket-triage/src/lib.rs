//! Triages a support ticket from two callbacks: the SLA lookup, then the resolution.
//!
//! Input: `{"ticket_id": string, "subject"?: string}`.
//! Output: `{"ticket_id", "priority": "urgent" | "normal" | "unknown", "sla": <SLA callback
//! data>, "resolution": <resolution callback data>}`.
//!
//! Both callback URLs exist from the start, so a ticketing system may call `resolved`
//! before `sla`: the resolution is kept until the run asks for it.

use latch_sdk::{Error, Method, ModuleInfo, Result, Start, Webhook, WebhookOptions, Workflow, log};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Input {
    ticket_id: String,
    subject: Option<String>,
}

/// Tickets whose SLA is at most this many hours are urgent.
const URGENT_SLA_HOURS: f64 = 4.0;

/// The ticket's priority from the SLA callback's `sla_hours`.
fn priority(sla: &Value) -> &'static str {
    match sla.get("sla_hours").and_then(Value::as_f64) {
        Some(hours) if hours <= URGENT_SLA_HOURS => "urgent",
        Some(_) => "normal",
        None => "unknown",
    }
}

struct TicketTriage;

impl Workflow for TicketTriage {
    fn describe() -> ModuleInfo {
        ModuleInfo::new("Prioritises a support ticket from its SLA, then waits for its resolution")
    }

    fn run(start: Start) -> Result<Value> {
        let input: Input = start.input()?;
        if input.ticket_id.trim().is_empty() {
            return Err(Error::new("bad-input", "ticket_id must not be empty"));
        }
        log::info(format!(
            "triaging ticket {}: {}",
            input.ticket_id,
            input.subject.as_deref().unwrap_or("(no subject)")
        ));

        let sla_hook = Webhook::create(WebhookOptions::new())?;
        // An agent may resolve the ticket by opening a link (GET, query as data) as well
        // as the ticketing system by POSTing JSON.
        let resolved_hook = Webhook::create(WebhookOptions::new().methods([Method::Get, Method::Post]))?;
        log::info(format!("SLA callback URL: {}", sla_hook.url()));
        log::info(format!("resolution callback URL: {}", resolved_hook.url()));

        let sla = sla_hook.next()?.data;
        let priority = priority(&sla);
        log::info(format!("ticket {} priority: {priority}", input.ticket_id));

        let resolution = resolved_hook.next()?.data;
        log::info(format!("ticket {} resolved", input.ticket_id));

        Ok(json!({
            "ticket_id": input.ticket_id,
            "priority": priority,
            "sla": sla,
            "resolution": resolution,
        }))
    }
}

latch_sdk::workflow!(TicketTriage);
