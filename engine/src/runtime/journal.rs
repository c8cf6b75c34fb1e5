//! A run's event log as the host calls see it: recorded results are handed back in
//! order while replaying; past the end, new results are appended.

use crate::store::Store;
use crate::store::records::{Event, EventRecord};

use super::RunQuotas;
use super::fault::HostFault;
use super::redact::Redactor;

pub struct Journal {
    run_id: String,
    events: Vec<Event>,
    cursor: usize,
    store: Store,
    /// What is written goes through it (URL keys become placeholders), and what is
    /// replayed comes back through it.
    redactor: Redactor,
    /// A probe (`describe()` at upload) belongs to no run: it may not record anything.
    probe: bool,
    /// The bytes the log takes, against the run's quota.
    bytes: u64,
    quotas: Option<RunQuotas>,
}

impl Journal {
    /// `events` is the whole log, `bytes` its size; the cursor starts after the `started`
    /// event.
    pub fn new(
        run_id: String,
        (events, bytes): (Vec<EventRecord>, u64),
        store: Store,
        redactor: Redactor,
        quotas: RunQuotas,
    ) -> Journal {
        let events = events.into_iter().map(|r| r.event).collect();
        Journal { run_id, events, cursor: 1, store, redactor, probe: false, bytes, quotas: Some(quotas) }
    }

    /// The journal of an instance that only describes its module.
    pub fn probe(store: Store, redactor: Redactor) -> Journal {
        let events = Vec::new();
        Journal { run_id: String::new(), events, cursor: 1, store, redactor, probe: true, bytes: 0, quotas: None }
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
        let Some(event) = self.events.get(self.cursor) else { return Ok(None) };
        if event.kind() != kind {
            return Err(HostFault::Nondeterminism(format!(
                "the run made a `{kind}` call where its log has `{}` (event {})",
                event.kind(),
                self.cursor
            )));
        }
        self.cursor += 1;
        let event = event.clone();
        Ok(Some(self.redactor.expand(event)))
    }

    /// While replaying, moves past the first event ahead that `wanted` accepts; returns the
    /// events passed over and that one. `None` (and no move) if the rest of the log has none.
    pub fn skip_to(&mut self, wanted: impl Fn(&Event) -> bool) -> Option<(Vec<Event>, Event)> {
        let ahead = self.events.get(self.cursor..)?;
        let offset = ahead.iter().position(wanted)?;
        let skipped: Vec<Event> = ahead[..offset].to_vec();
        let found = ahead[offset].clone();
        self.cursor += offset + 1;
        let skipped = skipped.into_iter().map(|e| self.redactor.expand(e)).collect();
        Some((skipped, self.redactor.expand(found)))
    }

    /// Appends a live result to the log.
    pub fn record(&mut self, event: Event) -> Result<(), HostFault> {
        self.refuse_probe()?;
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

    /// Appends the event that ends the run, after everything in the log, wherever the
    /// activation stopped (a run cancelled or failed during replay ends there too).
    /// Returns it as written.
    pub fn record_end(&mut self, event: Event) -> Result<Event, HostFault> {
        self.refuse_probe()?;
        self.write(event)
    }

    fn write(&mut self, event: Event) -> Result<Event, HostFault> {
        // The event that ends the run is always written, quota or not.
        if !event.is_terminal() {
            self.check_quotas()?;
        }
        let record = crate::store::event_record(self.next_seq(), self.redactor.event(event));
        self.bytes += self.store.append_event(&self.run_id, &record)?;
        self.events.push(record.event.clone());
        self.cursor = self.events.len();
        Ok(record.event)
    }

    /// Adds an event already written by the store (in its own transaction).
    pub fn push(&mut self, event: Event) {
        self.bytes += serde_json::to_vec(&event).map_or(0, |bytes| bytes.len() as u64);
        self.events.push(event);
        self.cursor = self.events.len();
    }

    /// Fails the run once its log is past its quotas.
    pub fn check_quotas(&self) -> Result<(), HostFault> {
        let Some(quotas) = self.quotas else { return Ok(()) };
        if self.events.len() >= quotas.events {
            return Err(HostFault::Quota(format!("the run's log reached its quota of {} events", quotas.events)));
        }
        if self.bytes >= quotas.log_bytes {
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

    /// Events the guest has not replayed yet: left over when it finishes, it diverged.
    pub fn unreplayed(&self) -> Option<&Event> {
        self.events.get(self.cursor)
    }

    /// The event that ended the run in an earlier activation, if the log has one.
    pub fn terminal(&self) -> Option<&Event> {
        self.events.last().filter(|e| e.is_terminal())
    }
}
