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

use super::bindings::types::{ApiKeyIdentity, Caller as WitCaller, IncomingRequest};
use super::bindings::waits::{Host, NextResult, Selected, Waitable};
use super::fault::HostFault;
use super::webhooks::{method_to_wit, scheme_to_wit};
use super::{HostState, Wait};
use crate::ids::{Token, TriggerName, WebhookId};
use crate::store::records::{Caller, Event, RequestRecord, RunStatus, WaitOutcome, WaitTarget};
use crate::store::{Channel, Inbox};

/// A wait as the guest asked for it; timers relative or absolute.
enum Wanted {
    Webhook(String),
    Trigger(String),
    TimerIn(u64),
    TimerAt(u64),
}

/// What the live side of a wait watches.
struct Awaited {
    targets: Vec<WaitTarget>,
    /// The webhooks among the targets, with their tokens.
    hooks: Vec<(WebhookId, Token)>,
    /// Where calls may come from, for the inbox.
    channels: Vec<Channel>,
    wait: Wait,
}

/// Whether a recorded target is what the guest asks for now (timers compare by kind:
/// a replay waits for the recorded moment).
fn same_target(recorded: &WaitTarget, wanted: &Wanted) -> bool {
    match (recorded, wanted) {
        (WaitTarget::Webhook { id }, Wanted::Webhook(wanted)) => id.to_string() == *wanted,
        (WaitTarget::Trigger { name }, Wanted::Trigger(wanted)) => name.as_str() == wanted,
        (WaitTarget::Timer { .. }, Wanted::TimerIn(_) | Wanted::TimerAt(_)) => true,
        _ => false,
    }
}

/// Where in a wait's targets a channel is.
fn index_of(targets: &[WaitTarget], channel: &Channel) -> u32 {
    let position = targets.iter().position(|target| match (target, channel) {
        (WaitTarget::Webhook { id }, Channel::Webhook(webhook)) => id == webhook,
        (WaitTarget::Trigger { name }, Channel::Trigger(trigger)) => name == trigger,
        _ => false,
    });
    position.unwrap_or_default() as u32
}

/// How a wait ends when no call ends it: a webhook that no longer takes calls (its
/// position in `closed`) closes it, else the earliest due timer times it out; `None` if it
/// goes on.
fn ended_without_call(targets: &[WaitTarget], closed: Option<u32>, now_ms: u64) -> Option<(u32, WaitOutcome)> {
    if let Some(index) = closed {
        return Some((index, WaitOutcome::Closed));
    }
    let due = targets.iter().enumerate().filter_map(|(index, target)| match target {
        WaitTarget::Timer { at_ms } if *at_ms <= now_ms => Some((*at_ms, index as u32)),
        _ => None,
    });
    due.min().map(|(_, index)| (index, WaitOutcome::TimedOut))
}

impl HostState {
    /// The wait's targets: from the log while replaying, else resolved and recorded.
    fn start_wait(&mut self, wanted: &[Wanted]) -> Result<Vec<WaitTarget>, HostFault> {
        if wanted.is_empty() {
            return Err(HostFault::Misuse("a wait needs at least one webhook or timer".into()));
        }
        if let Some(Event::WaitStarted { on }) = self.journal.replay("wait-started")? {
            if on.len() != wanted.len() || !on.iter().zip(wanted).all(|(r, w)| same_target(r, w)) {
                return Err(HostFault::Nondeterminism(format!("the run waits on other things than its log: {on:?}")));
            }
            // Checking other code: calls reach a run at a trigger its version declares.
            if self.journal.is_checking() {
                for target in &on {
                    if let WaitTarget::Trigger { name } = target
                        && !self.declared_triggers.contains(name)
                    {
                        return Err(HostFault::Nondeterminism(format!(
                            "the run waits at trigger `{name}`, which this version does not declare"
                        )));
                    }
                }
            }
            self.timers_set += on.iter().filter(|t| matches!(t, WaitTarget::Timer { .. })).count();
            return Ok(on);
        }
        let timers = wanted.iter().filter(|w| matches!(w, Wanted::TimerIn(_) | Wanted::TimerAt(_))).count();
        let quota = self.shared.settings.quotas.timers;
        if self.timers_set + timers > quota {
            return Err(HostFault::Quota(format!("the run reached its quota of {quota} timers")));
        }
        self.timers_set += timers;
        let now = self.shared.clock.now_ms();
        let mut on = Vec::with_capacity(wanted.len());
        for target in wanted {
            on.push(match target {
                Wanted::Webhook(id) => WaitTarget::Webhook { id: self.webhook(id)?.0 },
                Wanted::Trigger(name) => WaitTarget::Trigger { name: self.declared_trigger(name)? },
                Wanted::TimerIn(ms) => WaitTarget::Timer { at_ms: now.saturating_add(*ms) },
                Wanted::TimerAt(at_ms) => WaitTarget::Timer { at_ms: *at_ms },
            });
        }
        self.journal.record(Event::WaitStarted { on: on.clone() })?;
        Ok(on)
    }

    /// A trigger the run may wait at: a name its module version declares.
    fn declared_trigger(&self, name: &str) -> Result<TriggerName, HostFault> {
        let name = TriggerName::parse(name).map_err(|e| HostFault::Misuse(e.to_string()))?;
        if !self.declared_triggers.contains(&name) {
            return Err(HostFault::Misuse(format!(
                "the run waits at trigger `{name}`, which its module does not declare in describe() \
                 (named triggers take calls only once declared, with their auth or as open)"
            )));
        }
        Ok(name)
    }

    /// Waits for the first of `wanted`; returns its position and how it ended.
    async fn wait_for(&mut self, wanted: Vec<Wanted>) -> Result<(u32, WaitOutcome), HostFault> {
        let targets = self.start_wait(&wanted)?;
        if let Some(Event::WaitEnded { index, result }) = self.journal.replay("wait-ended")? {
            return Ok((index, result));
        }
        let mut hooks = Vec::new();
        let mut channels = Vec::new();
        let mut expiries = Vec::new();
        for target in &targets {
            match target {
                WaitTarget::Webhook { id } => {
                    let token = self.webhook(&id.to_string())?.1.token.clone();
                    expiries.push(self.shared.store.hook(&token).await?.and_then(|h| h.expires_at_ms));
                    hooks.push((*id, token));
                    channels.push(Channel::Webhook(*id));
                }
                WaitTarget::Trigger { name } => channels.push(Channel::Trigger(name.clone())),
                WaitTarget::Timer { .. } => {}
            }
        }
        let wait = Wait::of(&targets, expiries);
        // Parked time is not the guest's CPU time.
        self.cpu.pause();
        let ended = self.wait_live(Awaited { targets, hooks, channels, wait }).await;
        // Each wake-up is a new activation: a run held hot across many calls gets the
        // budget afresh for each.
        self.cpu.restart();
        ended
    }

    /// Ends the wait if it can end now, and records how: the earliest call on any of its
    /// webhooks and triggers (claimed, its take finished at the next commit), else a
    /// webhook that no longer takes calls, else a timer that is due.
    async fn try_end_wait(&mut self, awaited: &Awaited) -> Result<Option<(u32, WaitOutcome)>, HostFault> {
        let store = self.shared.store.clone();
        let run = self.run.id;
        loop {
            let channel = match awaited.channels.as_slice() {
                // One channel: `claim` finds its oldest call itself, without a look first.
                [only] => only.clone(),
                many => match store.first_arrival(run, many).await? {
                    Some(channel) => channel,
                    None => break,
                },
            };
            // No call left on the channel: on one channel the wait cannot end with a call; of
            // several, the one `first_arrival` named was withdrawn meanwhile: look again.
            let Some(claimed) = store.claim(run, &channel).await? else {
                if awaited.channels.len() == 1 {
                    break;
                }
                continue;
            };
            // Taken already (a take a crash cut short, which this replay delivered): the next.
            if self.delivered.contains(&claimed.entry.request.id) {
                store.taken(run, &claimed).await?;
                continue;
            }
            let waited = self.shared.clock.now_ms().saturating_sub(claimed.entry.request.received_at_ms);
            self.shared.metrics.call_taken(waited);
            let index = index_of(&awaited.targets, &channel);
            let result = WaitOutcome::Request { request: Box::new(claimed.entry.request.clone()) };
            self.journal.record(Event::WaitEnded { index, result: result.clone() })?;
            self.claimed.push(claimed);
            return Ok(Some((index, result)));
        }
        let now = self.shared.clock.now_ms();
        let mut closed = None;
        for (webhook, token) in &awaited.hooks {
            let open = store.hook(token).await?.is_some_and(|h| h.is(run, *webhook) && h.takes_calls(now));
            if !open {
                closed = Some(index_of(&awaited.targets, &Channel::Webhook(*webhook)));
                break;
            }
        }
        let Some((index, result)) = ended_without_call(&awaited.targets, closed, now) else { return Ok(None) };
        self.journal.record(Event::WaitEnded { index, result: result.clone() })?;
        Ok(Some((index, result)))
    }

    /// The live part of a wait: take what is there already, else park, hot for a while,
    /// then suspend.
    async fn wait_live(&mut self, awaited: Awaited) -> Result<(u32, WaitOutcome), HostFault> {
        let shared = self.shared.clone();
        let run = self.run.id;
        let notify = shared.live.notifier(run);
        shared.live.clear_pending(run);
        if let Some(ended) = self.try_end_wait(&awaited).await? {
            // Parked by an earlier activation: it runs again.
            if self.run.status == RunStatus::Waiting {
                self.run = shared.run_state.resumed(&self.run, &awaited.wait).await?;
            }
            return Ok(ended);
        }
        // Everything the run did before it waits (the URLs it handed out above all) is
        // durable before anyone can see it waiting.
        self.commit().await?;
        match shared.run_state.parked(&self.run, &awaited.wait).await {
            Ok(parked) => self.run = parked,
            Err(e) => {
                // Part of the park (its timer, its places at triggers) may be written: the
                // run's end clears the wait its record names.
                self.run.waiting_on = awaited.wait.on.clone();
                self.run.wake_at_ms = awaited.wait.wake_at_ms;
                return Err(e.into());
            }
        }
        shared.metrics.wait_parked();
        let hot = shared.live.try_hot(shared.settings.max_hot_runs);
        let hot_until = Instant::now() + if hot.is_some() { shared.settings.hot_hold } else { Duration::ZERO };
        loop {
            if shared.live.is_cancelled(run) {
                return Err(HostFault::Cancelled);
            }
            shared.live.clear_pending(run);
            if let Some(ended) = self.try_end_wait(&awaited).await? {
                self.run = shared.run_state.resumed(&self.run, &awaited.wait).await?;
                return Ok(ended);
            }
            let now = Instant::now();
            // Another run waiting to execute ends the hot hold: its slot is worth more.
            if now >= hot_until || shared.activations.contended() {
                // A call, a timer or a cancellation from here on finds no driver and starts
                // a new one; one that came since the look above keeps this one.
                if shared.live.release_unless_pending(run) {
                    return Err(HostFault::Suspend);
                }
                continue;
            }
            let wake_in = awaited.wait.wake_at_ms.map(|at| at.saturating_sub(shared.clock.now_ms()));
            let park_until = match wake_in {
                Some(ms) => hot_until.min(now + Duration::from_millis(ms)),
                None => hot_until,
            };
            tokio::select! {
                _ = tokio::time::timeout_at(park_until, notify.notified()) => {}
                () = shared.activations.wanted() => {}
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(at_ms: u64) -> WaitTarget {
        WaitTarget::Timer { at_ms }
    }

    #[test]
    fn a_wait_ends_at_its_earliest_due_timer_or_at_a_closed_webhook_first() {
        let targets = [WaitTarget::Webhook { id: WebhookId(1) }, timer(500), timer(300)];
        assert_eq!(ended_without_call(&targets, None, 299), None, "nothing due yet");
        assert_eq!(ended_without_call(&targets, None, 300), Some((2, WaitOutcome::TimedOut)));
        assert_eq!(ended_without_call(&targets, None, 900), Some((2, WaitOutcome::TimedOut)), "the earliest wins");
        assert_eq!(ended_without_call(&targets, Some(0), 900), Some((0, WaitOutcome::Closed)), "closed first");
    }

    use crate::store::records::Waiting;

    #[test]
    fn a_wait_is_shown_on_its_webhooks_and_triggers_and_wakes_at_its_earliest_time() {
        let paid = TriggerName::parse("paid").expect("a name");
        let targets =
            [WaitTarget::Webhook { id: WebhookId(2) }, WaitTarget::Trigger { name: paid.clone() }, timer(900)];
        let wait = Wait::of(&targets, [Some(400)]);
        assert_eq!(wait.on, vec![Waiting::Webhook(WebhookId(2)), Waiting::Trigger(paid)]);
        assert_eq!(wait.wake_at_ms, Some(400), "the webhook expires before the timer");
        assert_eq!(Wait::of(&[timer(5)], [None]).wake_at_ms, Some(5));
        let channel = Channel::Trigger(TriggerName::parse("paid").expect("a name"));
        assert_eq!(index_of(&targets, &channel), 1);
    }

    #[test]
    fn a_replayed_wait_must_wait_on_what_its_log_says() {
        let recorded = WaitTarget::Webhook { id: WebhookId(1) };
        assert!(same_target(&recorded, &Wanted::Webhook("wh-1".into())));
        assert!(!same_target(&recorded, &Wanted::Webhook("wh-2".into())));
        assert!(same_target(&timer(5), &Wanted::TimerIn(99)), "a replay waits for the recorded moment");
        assert!(!same_target(&timer(5), &Wanted::Trigger("paid".into())));
    }
}
