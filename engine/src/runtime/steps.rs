//! `latch:workflow/steps`: each attempt of a step is recorded once; a replay hands the
//! recorded result back instead of running the attempt again. Retries and their backoff
//! are the guest SDK's loop over `recorded`/`record-attempt` and durable `waits.sleep`.
//!
//! In the log an attempt is a span: `step-started`, the attempt's own host calls (an
//! outbound call, say), then `step-attempt` with its result. A replay jumps over the span.
//! A span without its result (the process died mid-attempt) runs the attempt again, its
//! host calls replaying what the log holds.

use super::HostState;
use super::bindings::steps::{AttemptResult, Host};
use super::bindings::types::Error as WitError;
use super::fault::HostFault;
use super::webhooks::diverged_unless;
use crate::store::records::{Event, Failure, WaitOutcome};

impl HostState {
    /// Takes in what a skipped event did to the run's state.
    fn absorb(&mut self, event: &Event) {
        match event {
            Event::WebhookCreated { webhook } => self.webhooks.push(webhook.as_ref().ok().cloned()),
            Event::WaitEnded { result: WaitOutcome::Request { request }, .. } => {
                self.delivered.insert(request.id.clone());
            }
            Event::Responded { request_id, result: Ok(()), .. } => {
                self.responded.insert(request_id.clone());
            }
            _ => {}
        }
    }
}

impl Host for HostState {
    async fn recorded(&mut self, name: String, attempt: u32) -> wasmtime::Result<Option<AttemptResult>> {
        let Some(Event::StepStarted { name: recorded, attempt: number }) = self.journal.replay("step-started")? else {
            self.journal.record(Event::StepStarted { name, attempt })?;
            return Ok(None);
        };
        diverged_unless(recorded == name && number == attempt, || {
            format!("the run runs step `{name}` attempt {attempt} where its log has `{recorded}` attempt {number}")
        })?;
        let ended = self
            .journal
            .skip_to(|e| matches!(e, Event::StepAttempt { name: n, attempt: a, .. } if *n == name && *a == attempt));
        let Some((skipped, Event::StepAttempt { outcome, fatal, .. })) = ended else { return Ok(None) };
        // What the attempt's body did still counts: its webhooks exist, its requests were
        // delivered and answered.
        for event in &skipped {
            self.absorb(event);
        }
        self.determinism.realign(self.journal.next_replayed_seq());
        let outcome = outcome.map(|output| output.to_string()).map_err(WitError::from);
        Ok(Some(AttemptResult { outcome, fatal }))
    }

    async fn record_attempt(&mut self, name: String, attempt: u32, ended: AttemptResult) -> wasmtime::Result<()> {
        let outcome = match ended.outcome {
            Ok(text) => Ok(serde_json::from_str(&text)
                .map_err(|e| HostFault::Misuse(format!("step `{name}` returned output that is not JSON: {e}")))?),
            Err(error) => Err(Failure::new(error.code, error.message)),
        };
        if let Err(failure) = &outcome {
            let message = self.journal.redactor().text(&failure.message);
            tracing::info!(run = %self.run.id, step = %name, attempt, "step attempt failed: {message}");
        }
        self.journal.record(Event::StepAttempt { name, attempt, outcome, fatal: ended.fatal })?;
        self.determinism.realign(self.journal.next_replayed_seq());
        Ok(())
    }
}
