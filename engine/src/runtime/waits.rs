//! `latch:workflow/waits`: pausing a run until a call arrives on one of its webhooks, a
//! durable timer fires or a webhook closes. `next`, `select`, `sleep` and `sleep-until` are
//! all one wait over a list of targets.
//!
//! A wait keeps its instance parked in memory for a short while (a hot resume costs
//! microseconds) and then suspends: the instance is dropped and the run is resumed later
//! by replaying its log. Every wake-up that is not a call (a timeout, a sleep, a webhook's
//! expiry) is a durable timer, so it survives restarts.

use std::time::Duration;

use tokio::time::Instant;

use super::HostState;
use super::bindings::types::{ApiKeyIdentity, Caller as WitCaller, IncomingRequest};
use super::bindings::waits::{Host, NextResult, Selected, Waitable};
use super::fault::HostFault;
use super::webhooks::{method_to_wit, scheme_to_wit};
use crate::clock::now_ms;
use crate::store::event_record;
use crate::store::records::{Caller, Event, RequestRecord, RunStatus, WaitOutcome, WaitTarget};

/// A wait as the guest asked for it; timers relative or absolute.
enum Wanted {
    Webhook(String),
    Trigger(String),
    TimerIn(u64),
    TimerAt(u64),
}

/// A webhook the live side of a wait watches.
struct AwaitedHook {
    /// Position in the wait's targets.
    index: u32,
    number: u32,
    token: String,
}

/// What the live side of a wait is about.
struct Awaited {
    targets: Vec<WaitTarget>,
    hooks: Vec<AwaitedHook>,
    /// Named triggers, with their positions in the targets.
    triggers: Vec<(u32, String)>,
    /// When the wait must be looked at again without a call: its earliest timer or
    /// webhook expiry. A durable timer is set for it.
    wake_at_ms: Option<u64>,
}

/// Trigger names appear in URLs and in store keys (which a zero byte separates).
pub fn is_trigger_name(name: &str) -> bool {
    let legal = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    !name.is_empty() && name.len() <= 100 && name.chars().all(legal)
}

fn check_trigger_name(name: &str) -> Result<(), HostFault> {
    if !is_trigger_name(name) {
        return Err(HostFault::Misuse(format!("trigger name `{name}` must be letters, digits, `-`, `_` or `.`")));
    }
    Ok(())
}

fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether a recorded target is what the guest asks for now (timers compare by kind:
/// a replay waits for the recorded moment).
fn same_target(recorded: &WaitTarget, wanted: &Wanted) -> bool {
    match (recorded, wanted) {
        (WaitTarget::Webhook { id }, Wanted::Webhook(wanted)) => id == wanted,
        (WaitTarget::Trigger { name }, Wanted::Trigger(wanted)) => name == wanted,
        (WaitTarget::Timer { .. }, Wanted::TimerIn(_) | Wanted::TimerAt(_)) => true,
        _ => false,
    }
}

impl HostState {
    /// Writes the run's status and what it waits on (not flushed: a lost status is
    /// re-derived by replay after a crash).
    fn set_status(
        &mut self,
        status: RunStatus,
        waiting_on: Vec<String>,
        wake_at_ms: Option<u64>,
    ) -> Result<(), HostFault> {
        self.run.status = status;
        self.run.waiting_on = waiting_on;
        self.run.wake_at_ms = wake_at_ms;
        self.run.updated_at_ms = now_ms();
        self.shared.store.put_run(&self.run)?;
        Ok(())
    }

    /// The wait's targets: from the log while replaying, else resolved and recorded.
    fn start_wait(&mut self, wanted: &[Wanted]) -> Result<Vec<WaitTarget>, HostFault> {
        if wanted.is_empty() {
            return Err(HostFault::Misuse("a wait needs at least one webhook or timer".into()));
        }
        if let Some(Event::WaitStarted { on }) = self.journal.replay("wait-started")? {
            if on.len() != wanted.len() || !on.iter().zip(wanted).all(|(r, w)| same_target(r, w)) {
                return Err(HostFault::Nondeterminism(format!("the run waits on other things than its log: {on:?}")));
            }
            return Ok(on);
        }
        let now = now_ms();
        let mut on = Vec::with_capacity(wanted.len());
        for target in wanted {
            on.push(match target {
                Wanted::Webhook(id) => {
                    self.webhook(id)?;
                    WaitTarget::Webhook { id: id.clone() }
                }
                Wanted::Trigger(name) => {
                    check_trigger_name(name)?;
                    if !self.declared_triggers.contains(name) {
                        return Err(HostFault::Misuse(format!(
                            "the run waits at trigger `{name}`, which its module does not declare in describe() \
                             (named triggers take calls only once declared, with their auth or as open)"
                        )));
                    }
                    WaitTarget::Trigger { name: name.clone() }
                }
                Wanted::TimerIn(ms) => WaitTarget::Timer { at_ms: now.saturating_add(*ms) },
                Wanted::TimerAt(at_ms) => WaitTarget::Timer { at_ms: *at_ms },
            });
        }
        self.journal.record(Event::WaitStarted { on: on.clone() })?;
        Ok(on)
    }

    /// Waits for the first of `wanted`; returns its position and how it ended.
    async fn wait_for(&mut self, wanted: Vec<Wanted>) -> Result<(u32, WaitOutcome), HostFault> {
        let targets = self.start_wait(&wanted)?;
        if let Some(Event::WaitEnded { index, result }) = self.journal.replay("wait-ended")? {
            return Ok((index, result));
        }
        let mut hooks = Vec::new();
        let mut triggers = Vec::new();
        let mut wake_at_ms = None;
        for (index, target) in targets.iter().enumerate() {
            match target {
                WaitTarget::Trigger { name } => triggers.push((index as u32, name.clone())),
                WaitTarget::Webhook { id } => {
                    let (number, info) = self.webhook(id)?;
                    let token = info.token.clone();
                    let expires = self.shared.store.hook(&token)?.and_then(|h| h.expires_at_ms);
                    wake_at_ms = earliest(wake_at_ms, expires);
                    hooks.push(AwaitedHook { index: index as u32, number, token });
                }
                WaitTarget::Timer { at_ms } => wake_at_ms = earliest(wake_at_ms, Some(*at_ms)),
            }
        }
        // Parked time is not the guest's CPU time.
        self.cpu.pause();
        let ended = self.wait_live(Awaited { targets, hooks, triggers, wake_at_ms }).await;
        // Each wake-up is a new activation: a run held hot across many calls gets the
        // budget afresh for each.
        self.cpu.restart();
        ended
    }

    /// Ends the wait if it can end now, and records how: the earliest call on any of its
    /// webhooks, else a webhook that no longer takes calls, else a timer that is due.
    fn try_end_wait(&mut self, awaited: &Awaited) -> Result<Option<(u32, WaitOutcome)>, HostFault> {
        let store = self.shared.store.clone();
        let numbers: Vec<u32> = awaited.hooks.iter().map(|h| h.number).collect();
        let first_on_hook = store.first_arrival(&self.run.id, &numbers)?;
        let mut first_on_trigger: Option<(u64, u32, &str)> = None;
        for (index, name) in &awaited.triggers {
            if let Some(arrival) = store.first_trigger_arrival(&self.run.id, name)?
                && first_on_trigger.is_none_or(|(earliest, ..)| arrival < earliest)
            {
                first_on_trigger = Some((arrival, *index, name));
            }
        }
        let seq = self.journal.next_seq();
        let delivered = |index: u32| {
            move |request| {
                event_record(
                    seq,
                    Event::WaitEnded { index, result: WaitOutcome::Request { request: Box::new(request) } },
                )
            }
        };
        let taken = match (first_on_hook, first_on_trigger) {
            (Some((hook_arrival, number)), trigger) if trigger.is_none_or(|(arrival, ..)| hook_arrival < arrival) => {
                let index = awaited.hooks.iter().find(|h| h.number == number).map_or(0, |h| h.index);
                store.take_request(&self.run.id, number, delivered(index))?
            }
            (_, Some((_, index, name))) => store.take_trigger_request(&self.run.id, name, delivered(index))?,
            _ => None,
        };
        if let Some(record) = taken {
            self.journal.push(record.event.clone());
            if let Event::WaitEnded { index, result } = record.event {
                return Ok(Some((index, result)));
            }
        }
        let now = now_ms();
        let mut ending = None;
        for hook in &awaited.hooks {
            let open = store.hook(&hook.token)?.is_some_and(|h| h.is(&self.run.id, hook.number) && h.takes_calls(now));
            if !open {
                ending = Some((hook.index, WaitOutcome::Closed));
                break;
            }
        }
        if ending.is_none() {
            let due = awaited.targets.iter().enumerate().filter_map(|(index, target)| match target {
                WaitTarget::Timer { at_ms } if *at_ms <= now => Some((*at_ms, index as u32)),
                _ => None,
            });
            ending = due.min().map(|(_, index)| (index, WaitOutcome::TimedOut));
        }
        let Some((index, result)) = ending else { return Ok(None) };
        self.journal.record(Event::WaitEnded { index, result: result.clone() })?;
        Ok(Some((index, result)))
    }

    /// The live part of a wait: take what is there already, else park, hot for a while,
    /// then suspend.
    async fn wait_live(&mut self, awaited: Awaited) -> Result<(u32, WaitOutcome), HostFault> {
        let shared = self.shared.clone();
        let notify = shared.live.notifier(&self.run.id);
        if let Some(ended) = self.try_end_wait(&awaited)? {
            return self.wait_ended(&awaited, ended);
        }
        // Set on every live wait, replayed ones too: a crash may have come between
        // `wait-started` and the timer. Setting it again is harmless.
        if let Some(at) = awaited.wake_at_ms {
            shared.store.add_timer(at, &self.run.id)?;
            shared.timers_changed.notify_one();
        }
        // Everything the run did before it waits (the URLs it handed out above all) is
        // made durable before anyone can see it waiting.
        shared.store.flush().await?;
        let waiting_on = awaited.targets.iter().filter_map(|t| match t {
            WaitTarget::Webhook { id } => Some(id.clone()),
            WaitTarget::Trigger { name } => Some(format!("trigger:{name}")),
            WaitTarget::Timer { .. } => None,
        });
        self.set_status(RunStatus::Waiting, waiting_on.collect(), awaited.wake_at_ms)?;
        // Visible to `any` and `all` callers once the run's status says where it waits. A
        // replayed wait keeps its first registration, and so its place in the queue.
        for (_, name) in &awaited.triggers {
            shared.store.add_trigger_waiter(&self.run.module, name, &self.run.id, now_ms())?;
        }
        let hot = shared.live.try_hot(shared.settings.max_hot_runs);
        let hot_until = Instant::now() + if hot.is_some() { shared.settings.hot_hold } else { Duration::ZERO };
        loop {
            if shared.live.is_cancelled(&self.run.id) {
                return Err(HostFault::Cancelled);
            }
            if let Some(ended) = self.try_end_wait(&awaited)? {
                return self.wait_ended(&awaited, ended);
            }
            let now = Instant::now();
            // Another run waiting to execute ends the hot hold: its slot is worth more.
            if now >= hot_until || shared.activations.contended() {
                let store = &shared.store;
                let run_id = &self.run.id;
                // Decided under the driver lock: a call, a timer or a cancellation from
                // here on finds no driver and starts a new one.
                let suspended = shared.live.release_unless(run_id, || {
                    awaited.hooks.iter().any(|h| store.has_request(run_id, h.number).unwrap_or(true))
                        || awaited
                            .triggers
                            .iter()
                            .any(|(_, name)| store.first_trigger_arrival(run_id, name).map_or(true, |a| a.is_some()))
                        || awaited.wake_at_ms.is_some_and(|at| now_ms() >= at)
                        || shared.live.is_cancelled(run_id)
                });
                if suspended {
                    return Err(HostFault::Suspend);
                }
                continue;
            }
            let park_until = match awaited.wake_at_ms {
                Some(at) => hot_until.min(now + Duration::from_millis(at.saturating_sub(now_ms()))),
                None => hot_until,
            };
            tokio::select! {
                _ = tokio::time::timeout_at(park_until, notify.notified()) => {}
                () = shared.activations.wanted() => {}
            }
        }
    }

    /// Clears what a wait left behind once it ended, and tells a held caller that the run
    /// took its call, once that is durable.
    fn wait_ended(&mut self, awaited: &Awaited, ended: (u32, WaitOutcome)) -> Result<(u32, WaitOutcome), HostFault> {
        let store = &self.shared.store;
        if let Some(at) = awaited.wake_at_ms {
            store.remove_timer(at, &self.run.id)?;
        }
        for (_, name) in &awaited.triggers {
            store.remove_trigger_waiter(&self.run.module, name, &self.run.id)?;
        }
        if self.run.status != RunStatus::Running || !self.run.waiting_on.is_empty() {
            self.set_status(RunStatus::Running, Vec::new(), None)?;
        }
        if let WaitOutcome::Request { request } = &ended.1
            && self.shared.holds.is_held(&request.id)
        {
            let (shared, request_id) = (self.shared.clone(), request.id.clone());
            tokio::spawn(async move {
                match shared.store.flush().await {
                    Ok(()) => shared.holds.taken(&request_id),
                    Err(e) => tracing::error!(request = %request_id, "cannot make a taken call durable: {e}"),
                }
            });
        }
        Ok(ended)
    }

    /// What the guest sees of a wait's outcome; a delivered request may be answered.
    fn next_result(&mut self, outcome: WaitOutcome) -> NextResult {
        match outcome {
            WaitOutcome::Request { request } => {
                self.delivered.insert(request.id.clone());
                NextResult::Request(request_to_wit(*request))
            }
            WaitOutcome::TimedOut => NextResult::TimedOut,
            WaitOutcome::Closed => NextResult::Closed,
        }
    }
}

pub(super) fn request_to_wit(request: RequestRecord) -> IncomingRequest {
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
            Caller::ApiKey { name, roles } => WitCaller::ApiKey(ApiKeyIdentity { name, roles }),
            Caller::Signature { scheme } => WitCaller::Signature(scheme_to_wit(scheme)),
        },
        received_at_ms: request.received_at_ms,
    }
}

impl Host for HostState {
    async fn next(&mut self, webhook: String, timeout_ms: Option<u64>) -> wasmtime::Result<NextResult> {
        let mut wanted = vec![Wanted::Webhook(webhook)];
        wanted.extend(timeout_ms.map(Wanted::TimerIn));
        let (_, outcome) = self.wait_for(wanted).await?;
        Ok(self.next_result(outcome))
    }

    async fn select(&mut self, waitables: Vec<Waitable>) -> wasmtime::Result<Selected> {
        let wanted = waitables
            .into_iter()
            .map(|w| match w {
                Waitable::Webhook(id) => Wanted::Webhook(id),
                Waitable::Trigger(name) => Wanted::Trigger(name),
                Waitable::Timer(ms) => Wanted::TimerIn(ms),
                Waitable::Deadline(at_ms) => Wanted::TimerAt(at_ms),
            })
            .collect();
        let (index, outcome) = self.wait_for(wanted).await?;
        Ok(Selected { index, outcome: self.next_result(outcome) })
    }

    async fn sleep(&mut self, duration_ms: u64) -> wasmtime::Result<()> {
        self.wait_for(vec![Wanted::TimerIn(duration_ms)]).await?;
        Ok(())
    }

    async fn sleep_until(&mut self, unix_ms: u64) -> wasmtime::Result<()> {
        self.wait_for(vec![Wanted::TimerAt(unix_ms)]).await?;
        Ok(())
    }
}
