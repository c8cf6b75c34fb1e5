//! A run's event log as the host calls see it, with no store behind it: recorded events
//! are handed back in order while replaying; past the end, new events are recorded into an
//! outbox, which the host writes to the store at the run's next effect (before anything
//! leaves the run: an outbound call, an answer, parking, its end). An event lost to a
//! crash before then is recorded again by the replay, which makes the same calls.

use crate::clock::SharedClock;
use crate::store::records::{Event, EventRecord};

use super::RunQuotas;
use super::fault::HostFault;
use super::redact::Redactor;

pub struct Journal {
    events: Vec<Event>,
    cursor: usize,
    /// Recorded, not yet written.
    outbox: Vec<EventRecord>,
    /// What is recorded goes through it (URL keys become placeholders), and what is
    /// replayed comes back through it.
    redactor: Redactor,
    clock: SharedClock,
    /// A probe (`describe()` at upload) belongs to no run: it may not record anything.
    probe: bool,
    /// The bytes the written log takes, against the run's quota.
    bytes: u64,
    quotas: Option<RunQuotas>,
    /// Replaying on other code to check it (an upgrade's dry run): nothing may go live.
    checking: bool,
    /// Where and how a checked replay first left the log.
    divergence: Option<Divergence>,
}

/// The first place a replay left its log: the event's position, what the log has there,
/// and what the code asked for instead.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Divergence {
    pub seq: u64,
    pub recorded: String,
    pub asked: String,
}

impl Journal {
    /// `events` is the whole log, `bytes` its size; the cursor starts after the `started`
    /// event.
    pub fn new(
        (events, bytes): (Vec<EventRecord>, u64),
        redactor: Redactor,
        clock: SharedClock,
        quotas: RunQuotas,
    ) -> Journal {
        let events = events.into_iter().map(|r| r.event).collect();
        let quotas = Some(quotas);
        let (probe, checking, divergence) = (false, false, None);
        Journal { events, cursor: 1, outbox: Vec::new(), redactor, clock, probe, bytes, quotas, checking, divergence }
    }

    /// The same journal, replaying only: at the end of the log, or where the code leaves
    /// it, the activation stops (`HostFault::ReplayEnd`, or a recorded `divergence`) instead
    /// of going live. Nothing is recorded.
    pub fn checking(mut self) -> Journal {
        self.checking = true;
        self
    }

    pub fn is_checking(&self) -> bool {
        self.checking
    }

    pub fn divergence(&self) -> Option<&Divergence> {
        self.divergence.as_ref()
    }

    /// The journal of an instance that only describes its module.
    pub fn probe(redactor: Redactor, clock: SharedClock) -> Journal {
        let (events, outbox, probe, quotas, checking, divergence) = (Vec::new(), Vec::new(), true, None, false, None);
        Journal { events, cursor: 1, outbox, redactor, clock, probe, bytes: 0, quotas, checking, divergence }
    }

    pub fn redactor(&mut self) -> &mut Redactor {
        &mut self.redactor
    }

    fn refuse_probe(&self) -> Result<(), HostFault> {
        if self.probe {
            return Err(HostFault::Misuse("describe() may not call the engine's host functions".into()));
        }
        Ok(())
    }

    /// While replaying, the next recorded event, which must be of `kind`; `None` once the
    /// log is exhausted and the call must be performed live.
    pub fn replay(&mut self, kind: &'static str) -> Result<Option<Event>, HostFault> {
        self.refuse_probe()?;
        self.pass_notes();
        let Some(event) = self.events.get(self.cursor) else {
            return if self.checking { Err(HostFault::ReplayEnd) } else { Ok(None) };
        };
        if event.kind() != kind {
            let (recorded, seq) = (event.kind(), self.cursor);
            self.diverged(format!("a `{kind}` call"));
            return Err(HostFault::Nondeterminism(format!(
                "the run made a `{kind}` call where its log has `{recorded}` (event {seq})"
            )));
        }
        self.cursor += 1;
        let event = event.clone();
        Ok(Some(self.redactor.expand(event)))
    }

    /// While replaying, the next recorded event without moving past it; `None` at the end
    /// of the log (a checked replay stops there instead).
    pub fn next_recorded(&mut self) -> Result<Option<&Event>, HostFault> {
        self.refuse_probe()?;
        self.pass_notes();
        if self.checking && self.cursor >= self.events.len() {
            return Err(HostFault::ReplayEnd);
        }
        Ok(self.events.get(self.cursor))
    }

    /// Notes where a checked replay left the log: at the next event, asked `asked`.
    pub fn diverged(&mut self, asked: String) {
        if self.divergence.is_none() {
            let recorded = self.events.get(self.cursor).map_or("the end of the log", Event::kind).to_string();
            self.divergence = Some(Divergence { seq: self.cursor as u64, recorded, asked });
        }
    }

    /// Moves past notes (`upgraded`): they record no call.
    fn pass_notes(&mut self) {
        while self.events.get(self.cursor).is_some_and(Event::is_note) {
            self.cursor += 1;
        }
    }

    /// While replaying, moves past the first event ahead that `wanted` accepts; returns the
    /// events passed over and that one. `None` (and no move) if the rest of the log has none.
    pub fn skip_to(&mut self, wanted: impl Fn(&Event) -> bool) -> Option<(Vec<Event>, Event)> {
        self.pass_notes();
        let ahead = self.events.get(self.cursor..)?;
        let offset = ahead.iter().position(wanted)?;
        let skipped: Vec<Event> = ahead[..offset].to_vec();
        let found = ahead[offset].clone();
        self.cursor += offset + 1;
        let skipped = skipped.into_iter().map(|e| self.redactor.expand(e)).collect();
        Some((skipped, self.redactor.expand(found)))
    }

    /// Records a live result, after everything replayed.
    pub fn record(&mut self, event: Event) -> Result<(), HostFault> {
        self.refuse_probe()?;
        if self.checking {
            return Err(HostFault::ReplayEnd);
        }
        if let Some(next) = self.unreplayed() {
            return Err(HostFault::Nondeterminism(format!(
                "the run made a new `{}` call where its log has `{}` next",
                event.kind(),
                next.kind()
            )));
        }
        self.write(event)?;
        Ok(())
    }

    /// Records the event that ends the run, after everything in the log, wherever the
    /// activation stopped (a run cancelled or failed during replay ends there too).
    /// Returns it as recorded.
    pub fn record_end(&mut self, event: Event) -> Result<Event, HostFault> {
        self.refuse_probe()?;
        self.write(event)
    }

    fn write(&mut self, event: Event) -> Result<Event, HostFault> {
        let record = crate::store::event_record(self.next_seq(), self.clock.now_ms(), self.redactor.event(event));
        // Counted as it is recorded, not as it is written: a run that only logs writes
        // nothing until its next effect, and must not hold an unbounded outbox meanwhile.
        let size = serde_json::to_vec(&record).map_or(0, |bytes| bytes.len() as u64);
        // The event that ends the run is always recorded, quota or not; so is the end of a
        // wait, which may take a call already claimed from the inbox (its size is bounded
        // by the body limit): the quota then binds at the next event.
        if !record.event.is_terminal() && !matches!(record.event, Event::WaitEnded { .. }) {
            self.check_quotas(size)?;
        }
        self.bytes += size;
        self.events.push(record.event.clone());
        self.cursor = self.events.len();
        let event = record.event.clone();
        self.outbox.push(record);
        Ok(event)
    }

    /// The events recorded since the last call, to be written.
    pub fn take_outbox(&mut self) -> Vec<EventRecord> {
        std::mem::take(&mut self.outbox)
    }

    /// Fails the run when one more event of `size` bytes would take its log past its quotas
    /// (checked before it is kept: one huge event cannot overshoot the bytes quota).
    fn check_quotas(&self, size: u64) -> Result<(), HostFault> {
        let Some(quotas) = self.quotas else { return Ok(()) };
        if self.events.len() >= quotas.events {
            return Err(HostFault::Quota(format!("the run's log reached its quota of {} events", quotas.events)));
        }
        if self.bytes.saturating_add(size) > quotas.log_bytes {
            return Err(HostFault::Quota(format!("the run's log reached its quota of {} bytes", quotas.log_bytes)));
        }
        Ok(())
    }

    /// The position just past the last event replayed or recorded.
    pub fn next_replayed_seq(&self) -> u64 {
        self.cursor as u64
    }

    pub fn next_seq(&self) -> u64 {
        self.events.len() as u64
    }

    /// Events the guest has not replayed yet (notes aside): left over when it finishes,
    /// it diverged.
    pub fn unreplayed(&self) -> Option<&Event> {
        self.events.get(self.cursor..)?.iter().find(|event| !event.is_note())
    }

    /// The kind of the event at `seq`, for a report.
    pub fn recorded_kind(&self, seq: u64) -> &'static str {
        self.events.get(seq as usize).map_or("the end of the log", Event::kind)
    }

    /// The event that ended the run in an earlier activation, if the log has one.
    pub fn terminal(&self) -> Option<&Event> {
        self.events.last().filter(|e| e.is_terminal())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;

    fn journal(events: Vec<Event>) -> Journal {
        let clock = ManualClock::at(1_000);
        let records =
            events.into_iter().enumerate().map(|(seq, event)| EventRecord { seq: seq as u64, at_ms: 0, event });
        let quotas = RunQuotas {
            webhooks: 10,
            timers: 10,
            events: 5,
            log_bytes: 1 << 20,
            queued_calls: 10,
            queued_bytes: 1 << 20,
        };
        let redactor = Redactor::for_tests("run");
        Journal::new((records.collect(), 0), redactor, Arc::new(clock), quotas)
    }

    fn started() -> Event {
        Event::Started { input: serde_json::Value::Null, start_ms: 0, seed: 1, trigger: None }
    }

    #[test]
    fn a_replay_hands_back_the_log_in_order_then_records_into_the_outbox() {
        let mut journal = journal(vec![started(), Event::Now { ms: 7 }]);
        assert_eq!(journal.replay("now").expect("replayed"), Some(Event::Now { ms: 7 }));
        assert_eq!(journal.replay("now").expect("live"), None, "past the end, calls are live");
        journal.record(Event::Random { value: 3 }).expect("recorded");
        let outbox = journal.take_outbox();
        assert_eq!(outbox.len(), 1);
        assert_eq!((outbox[0].seq, outbox[0].at_ms), (2, 1_000), "numbered after the log, stamped by the clock");
        assert!(journal.take_outbox().is_empty(), "written once");
    }

    #[test]
    fn a_call_other_than_the_log_has_is_nondeterminism() {
        let mut journal = journal(vec![started(), Event::Now { ms: 7 }]);
        assert!(matches!(journal.replay("random"), Err(HostFault::Nondeterminism(_))));
        let mut journal = self::journal(vec![started(), Event::Now { ms: 7 }]);
        assert!(matches!(journal.record(Event::Random { value: 1 }), Err(HostFault::Nondeterminism(_))));
        assert_eq!(journal.unreplayed(), Some(&Event::Now { ms: 7 }));
    }

    #[test]
    fn a_step_that_ran_is_skipped_with_what_it_did() {
        let attempt =
            Event::StepAttempt { name: "s".into(), attempt: 1, outcome: Ok(serde_json::json!(1)), fatal: false };
        let mut journal = journal(vec![started(), Event::Now { ms: 1 }, Event::Now { ms: 2 }, attempt.clone()]);
        let (skipped, found) = journal.skip_to(|e| e.kind() == "step-attempt").expect("found");
        assert_eq!((skipped.len(), found), (2, attempt));
        assert_eq!(journal.next_replayed_seq(), 4);
        assert!(journal.skip_to(|e| e.kind() == "step-attempt").is_none(), "nothing left");
    }

    #[test]
    fn past_its_quota_of_events_a_run_fails_but_still_ends() {
        let mut journal = journal(vec![started()]);
        for n in 0..4 {
            journal.record(Event::Random { value: n }).expect("under the quota");
        }
        assert!(matches!(journal.record(Event::Random { value: 9 }), Err(HostFault::Quota(_))));
        let failure = crate::store::records::Failure::new("quota-exceeded", "full");
        assert!(journal.record_end(Event::Failed { error: failure }).is_ok(), "the end is always recorded");
        assert_eq!(journal.terminal().map(Event::kind), Some("failed"));
    }

    #[test]
    fn one_event_larger_than_the_bytes_left_is_refused_not_kept() {
        let mut journal = journal(vec![started()]);
        let line = |bytes: usize| Event::Log { level: "info".into(), message: "x".repeat(bytes) };
        journal.record(line(1000)).expect("under the quota");
        assert!(matches!(journal.record(line(2 << 20)), Err(HostFault::Quota(_))), "2 MiB past a 1 MiB quota");
        assert_eq!(journal.take_outbox().len(), 1, "the huge line was not kept");
        journal.record(line(1000)).expect("what fits still does");
    }

    #[test]
    fn a_wait_that_takes_a_call_ends_whatever_the_quota() {
        let mut journal = journal(vec![started()]);
        for n in 0..4 {
            journal.record(Event::Random { value: n }).expect("under the quota");
        }
        let ended = Event::WaitEnded { index: 0, result: crate::store::records::WaitOutcome::TimedOut };
        journal.record(ended).expect("the end of a wait is recorded past the quota");
        assert!(matches!(journal.record(Event::Random { value: 9 }), Err(HostFault::Quota(_))), "then it binds");
    }
}
