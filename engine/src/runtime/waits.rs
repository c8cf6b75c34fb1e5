//! `latch:workflow/waits`: pausing a run until a call arrives, a deadline passes or the
//! webhook closes. A wait keeps its instance parked in memory for a short while (a hot
//! resume costs microseconds) and then suspends: the instance is dropped and the run is
//! resumed later by replaying its log.

use std::time::Duration;

use tokio::time::Instant;

use super::HostState;
use super::bindings::types::{Caller as WitCaller, IncomingRequest};
use super::bindings::waits::{Host, NextResult};
use super::fault::HostFault;
use super::webhooks::method_to_wit;
use crate::clock::now_ms;
use crate::store::event_record;
use crate::store::records::{Caller, Event, RequestRecord, RunStatus, WaitOutcome};

/// What the live side of a wait is about.
struct Awaited {
    id: String,
    number: u32,
    token: String,
    deadline_ms: Option<u64>,
    /// When the wait must be looked at again without a call: the deadline or the
    /// webhook's expiry, whichever comes first. A durable timer is set for it.
    wake_at_ms: Option<u64>,
}

fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl HostState {
    /// Writes the run's status and what it waits on (not flushed: a lost status is
    /// re-derived by replay after a crash).
    fn set_status(&mut self, status: RunStatus, waiting_on: Vec<String>) -> Result<(), HostFault> {
        self.run.status = status;
        self.run.waiting_on = waiting_on;
        self.run.updated_at_ms = now_ms();
        self.shared.store.put_run(&self.run)?;
        Ok(())
    }

    /// Ends the wait if it can end now: a call is in the inbox, the hook is gone, or the
    /// deadline passed. The ending is recorded in the log.
    fn try_end_wait(&mut self, awaited: &Awaited) -> Result<Option<WaitOutcome>, HostFault> {
        let store = self.shared.store.clone();
        let seq = self.journal.next_seq();
        let taken = store.take_request(&self.run.id, awaited.number, |request| {
            event_record(seq, Event::WaitEnded { result: WaitOutcome::Request { request } })
        })?;
        if let Some(record) = taken {
            self.journal.push(record.event.clone());
            if let Event::WaitEnded { result } = record.event {
                return Ok(Some(result));
            }
        }
        let now = now_ms();
        let open =
            store.hook(&awaited.token)?.is_some_and(|h| h.is(&self.run.id, awaited.number) && h.takes_calls(now));
        let ending = if !open {
            WaitOutcome::Closed
        } else if awaited.deadline_ms.is_some_and(|d| now >= d) {
            WaitOutcome::TimedOut
        } else {
            return Ok(None);
        };
        self.journal.record(Event::WaitEnded { result: ending.clone() })?;
        Ok(Some(ending))
    }

    /// The live part of a wait: park, hot for a while, then suspend.
    async fn wait_live(&mut self, awaited: Awaited) -> Result<WaitOutcome, HostFault> {
        let shared = self.shared.clone();
        let notify = shared.live.notifier(&self.run.id);
        // Everything the run did before it waits (the URLs it handed out above all) is
        // made durable before anyone can see it waiting.
        shared.store.flush().await?;
        self.set_status(RunStatus::Waiting, vec![awaited.id.clone()])?;
        let hot = shared.live.try_hot(shared.settings.max_hot_runs);
        let hot_until = Instant::now() + if hot.is_some() { shared.settings.hot_hold } else { Duration::ZERO };
        loop {
            if let Some(outcome) = self.try_end_wait(&awaited)? {
                if let Some(due) = awaited.wake_at_ms {
                    shared.store.remove_timer(due, &self.run.id)?;
                }
                self.set_status(RunStatus::Running, Vec::new())?;
                return Ok(outcome);
            }
            let now = Instant::now();
            if now >= hot_until {
                let store = &shared.store;
                let run_id = &self.run.id;
                let suspended =
                    shared.live.release_unless(run_id, || store.has_request(run_id, awaited.number).unwrap_or(true));
                if suspended {
                    return Err(HostFault::Suspend);
                }
                continue;
            }
            let park_until = match awaited.wake_at_ms {
                Some(due) => hot_until.min(now + Duration::from_millis(due.saturating_sub(now_ms()))),
                None => hot_until,
            };
            let _ = tokio::time::timeout_at(park_until, notify.notified()).await;
        }
    }
}

fn request_to_wit(request: RequestRecord) -> IncomingRequest {
    IncomingRequest {
        id: request.id,
        webhook: request.webhook,
        method: method_to_wit(request.method),
        path: request.path,
        query: request.query,
        headers: request.headers,
        data: request.data.to_string(),
        caller: match request.caller {
            Caller::Anonymous => WitCaller::Anonymous,
            Caller::UrlKey => WitCaller::UrlKey,
        },
        received_at_ms: request.received_at_ms,
    }
}

impl Host for HostState {
    async fn next(&mut self, webhook: String, timeout_ms: Option<u64>) -> wasmtime::Result<NextResult> {
        let (number, info) = self.webhook(&webhook)?;
        let token = info.token.clone();
        let deadline_ms = match self.journal.replay("wait-started")? {
            Some(Event::WaitStarted { webhook: recorded, deadline_ms }) => {
                if recorded != webhook {
                    return Err(HostFault::Nondeterminism(format!(
                        "the run waits on `{webhook}` where its log waits on `{recorded}`"
                    ))
                    .into());
                }
                deadline_ms
            }
            _ => {
                let deadline_ms = timeout_ms.map(|t| now_ms().saturating_add(t));
                self.journal.record(Event::WaitStarted { webhook: webhook.clone(), deadline_ms })?;
                deadline_ms
            }
        };
        let outcome = match self.journal.replay("wait-ended")? {
            Some(Event::WaitEnded { result }) => result,
            _ => {
                let expires_at_ms =
                    self.shared.store.hook(&token).map_err(HostFault::from)?.and_then(|h| h.expires_at_ms);
                let wake_at_ms = earliest(deadline_ms, expires_at_ms);
                // Set on every live wait, replayed ones too: a crash may have come between
                // `wait-started` and the timer. Setting it again is harmless.
                if let Some(at) = wake_at_ms {
                    self.shared.store.add_timer(at, &self.run.id).map_err(HostFault::from)?;
                    self.shared.timers_changed.notify_one();
                }
                // Parked time is not the guest's CPU time.
                self.cpu.pause();
                let outcome = self.wait_live(Awaited { id: webhook, number, token, deadline_ms, wake_at_ms }).await;
                self.cpu.resume();
                outcome?
            }
        };
        Ok(match outcome {
            WaitOutcome::Request { request } => {
                self.delivered.insert(request.id.clone());
                NextResult::Request(request_to_wit(request))
            }
            WaitOutcome::TimedOut => NextResult::TimedOut,
            WaitOutcome::Closed => NextResult::Closed,
        })
    }
}
