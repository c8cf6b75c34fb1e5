//! Durable state, reached through four role traits: a run's log (`RunLog`), the calls
//! waiting for runs (`Inbox`), durable timers (`Timers`) and everything else the engine
//! keeps (`Registry`). A backend is one module behind them (`sled`, the embedded default);
//! no type of a backend leaks out.
//!
//! # Durability
//!
//! A write returns once it is durable, except the writes called *staged* below: those
//! become durable with the next durable write of the same store (for sled, the flush that
//! the next durable write waits for covers them), because the run's log, which a staged
//! write always precedes or follows, makes them recoverable. No caller flushes.
//!
//! # Write order and recovery, for each write of several records
//!
//! No operation relies on writing more than one record atomically (PostgreSQL commits some
//! of them in one transaction; sled writes each on its own). Where an operation writes
//! several, the order below makes every crash point recoverable, by the rule given:
//!
//! - **Starting a run**: the run record, then its `started` event (one flush covers both,
//!   and the caller is answered after it). Recovery: a run record without a `started`
//!   event is deleted; nobody was told of it.
//! - **Accepting a call**: one write: the call in its run's inbox (for a single-use
//!   webhook, the webhook's one slot, taken with a compare-and-swap, so that of two racing
//!   calls one wins). Nothing to recover.
//! - **Taking a call into the run's log**: (1) the inbox entry is claimed (`Call` to
//!   `Taking`, so that its caller can no longer withdraw it), staged; (2) the `wait-ended`
//!   event carrying it is appended, durably; (3) the entry is removed (a single-use slot
//!   keeps a `Taken` mark), staged. Recovery (`repair_inbox`): an entry still `Taking`
//!   whose request is in the log is finished as (3); one whose request is not goes back to
//!   `Call`, or, held (its caller is gone), is refused. A run whose commit failed after (1)
//!   settles its takes the same way as it ends (`settle_takes`), its held callers waiting
//!   still. A replay that meets an entry whose
//!   request it delivered already finishes it as (3): a call is never delivered twice.
//! - **A call with a sender's message id** (a signature scheme's, or an `Idempotency-Key`):
//!   the id's note naming where the call goes, staged (a named trigger's call notes each
//!   run durably before it is handed to it); the call, as above; then the note marked
//!   accepted with the answer, before the caller is answered. Recovery: a retry that finds
//!   a note not marked accepted (a crash, or that last write failed) looks for its call
//!   where it would be: still held in an inbox, the retry waits for the first caller's
//!   fate; taken into the run's log, or acknowledged and listed as not taken, the retry
//!   gets the first answer and delivers nothing; elsewhere, the note is forgotten and the
//!   retry is a new call.
//! - **Creating a webhook**: the hook record under its token (a compare-and-swap: a live
//!   token of another webhook is refused), staged, then the `webhook-created` event in the
//!   run's log. Recovery: a replay creates the webhook again; a hook record left by a crash
//!   for the same run and webhook is taken over.
//! - **Closing a webhook, or ending a run** (staged: the run's log already holds the
//!   `webhook-closed` or terminal event, or will before anything else is seen): the hook
//!   record is marked closed; then each call left in its inbox is written to the
//!   not-taken list and removed from the inbox. Recovery: a run whose log ends is
//!   finished again at start-up, which repeats every step; a replay closes the webhook
//!   again; writing a not-taken record twice is harmless. A held caller told its call was
//!   not taken is right either way: recovery refuses a held call left in an inbox. A
//!   close that fails without a crash is tried again (`Executor::close_leftovers`), and a
//!   call racing a close looks at the hook record again after its write.
//! - **An API key**: created by claiming its name (compare-and-swap), then writing the key
//!   under its digest; revoked in the other order. A name whose key is not there is taken
//!   still (the key is being made or revoked). Recovery: start-up frees a name that names
//!   no key.
//! - **Deleting a run** (retention): everything it owns, its log next to last and its
//!   record last. Recovery: a deletion cut short leaves a record, which the next sweep
//!   finds and finishes deleting; or only the record, which start-up removes as a creation
//!   cut short (a record without a log).
//! - A run's status, what it waits on, its timer and its places at named triggers are a
//!   view of its log, staged; recovery writes them again from the log (`restore_parked`).

mod backend;
mod codec;
mod commit_latency;
mod postgres;
pub mod records;
mod sled;

use std::future::Future;

use crate::ids::{KeyName, ModuleName, RunId, Token, TriggerName, WebhookId};
use records::{
    ApiKeyRecord, EventRecord, HookRecord, IdempotencyRecord, InboxEntry, ModuleRecord, NotTakenReason, NotTakenRecord,
    RequestRecord, RunRecord, RunStatus,
};

pub use self::backend::Store;
pub use self::commit_latency::CommitLatency;
pub use self::postgres::{Leadership, PgStore};
pub use self::sled::SledStore;

/// Told that a write is visible to readers of the store; it is durable no later than the
/// store's next durable write (a backend may call it once the write is durable already).
pub type Written<'a> = dyn Fn() + Send + Sync + 'a;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, a full disk, a lost connection): the write did not happen,
    /// or is not known to be durable.
    #[error("storage: {0}")]
    Unavailable(String),
    #[error("stored record is unreadable: {0}")]
    Codec(#[from] serde_json::Error),
    #[error("token is already taken by a live webhook")]
    TokenTaken,
    #[error("the name is taken")]
    NameTaken,
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A record that could not be decoded, skipped by a listing and reported.
#[derive(Debug, Clone)]
pub struct Unreadable {
    pub key: String,
    pub error: String,
}

/// Which runs a page lists: newest first (ids sort by creation), older than `before` (the
/// previous page's cursor), at most `limit`, of one status, one module, created at or
/// after `since_ms`, as asked.
#[derive(Debug, Clone)]
pub struct RunQuery {
    pub status: Option<RunStatus>,
    pub module: Option<ModuleName>,
    pub since_ms: Option<u64>,
    pub before: Option<RunId>,
    pub limit: usize,
}

impl RunQuery {
    fn matches(&self, run: &RunRecord) -> bool {
        self.status.is_none_or(|s| s == run.status)
            && self.module.as_ref().is_none_or(|m| *m == run.module)
            && self.since_ms.is_none_or(|since| run.created_at_ms >= since)
    }
}

/// A page of runs, and the cursor of the next when there are more.
#[derive(Debug, Default)]
pub struct RunPage {
    pub runs: Vec<RunRecord>,
    pub unreadable: Vec<Unreadable>,
    pub next: Option<RunId>,
}

impl RunPage {
    /// Takes the next run a backend read (newest first); false once the page is full.
    fn take(&mut self, query: &RunQuery, key: impl FnOnce() -> String, read: Result<RunRecord>) -> bool {
        match read {
            Ok(run) if query.matches(&run) => {
                if self.runs.len() == query.limit {
                    self.next = self.runs.last().map(|last| last.id);
                    return false;
                }
                self.runs.push(run);
            }
            Ok(_) => {}
            Err(e) => self.unreadable.push(Unreadable { key: key(), error: e.to_string() }),
        }
        true
    }
}

/// What became of a call delivered to a webhook.
#[derive(Debug)]
pub enum Delivery {
    Accepted,
    /// The webhook was used (single use), closed or expired meanwhile.
    Gone,
}

/// Where in a run's inbox a call waits: on one of its webhooks or at a named trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    Webhook(WebhookId),
    Trigger(TriggerName),
}

/// A call claimed from an inbox (being taken into the run's log).
#[derive(Debug, Clone)]
pub struct Claimed {
    pub channel: Channel,
    pub arrival: u64,
    pub entry: InboxEntry,
    /// A single-use webhook's slot: it keeps a mark once taken.
    pub slot: bool,
}

/// Timers whose time has come, as `(due_ms, run)`, and when the next one is due.
pub struct DueTimers {
    pub due: Vec<(u64, RunId)>,
    pub next_ms: Option<u64>,
}

/// A run's log and its record.
pub trait RunLog: Send + Sync {
    /// Creates a run: its record, then its `started` event.
    fn create_run(&self, run: &RunRecord, started: &EventRecord) -> impl Future<Output = Result<()>> + Send;
    fn run(&self, id: RunId) -> impl Future<Output = Result<Option<RunRecord>>> + Send;
    /// Writes the run's record (its status and what it waits on), staged.
    fn put_run(&self, run: &RunRecord) -> impl Future<Output = Result<()>> + Send;
    /// Every run, oldest first (recovery reads them all); unreadable records are reported.
    fn runs(&self) -> impl Future<Output = Result<(Vec<RunRecord>, Vec<Unreadable>)>> + Send;
    /// A page of runs, newest first (see `RunQuery`); unreadable records are reported.
    fn run_page(&self, query: &RunQuery) -> impl Future<Output = Result<RunPage>> + Send;
    /// The run's log, and the bytes it takes; an unreadable event is an error.
    fn events(&self, id: RunId) -> impl Future<Output = Result<(Vec<EventRecord>, u64)>> + Send;
    /// The run's log for people to read: unreadable events are passed over and reported.
    fn readable_events(&self, id: RunId) -> impl Future<Output = Result<(Vec<EventRecord>, Vec<Unreadable>)>> + Send;
    /// Appends events to the run's log.
    fn append(&self, id: RunId, events: &[EventRecord]) -> impl Future<Output = Result<()>> + Send;
    /// The webhooks the run created, from its log (unreadable events passed over).
    fn webhooks_of(&self, id: RunId) -> impl Future<Output = Result<Vec<(Token, WebhookId)>>> + Send;
    /// Runs that ended before `before_ms`, oldest first.
    fn finished_before(&self, before_ms: u64) -> impl Future<Output = Result<Vec<RunId>>> + Send;
    /// Deletes an ended run and everything it owns.
    fn delete_run(&self, id: RunId) -> impl Future<Output = Result<()>> + Send;
    /// Notes that an operator asked the run to end.
    fn request_cancel(&self, id: RunId) -> impl Future<Output = Result<()>> + Send;
    fn cancel_requested(&self, id: RunId) -> impl Future<Output = Result<bool>> + Send;
    /// Staged: a cancellation left noted for an ended run is never read.
    fn clear_cancel(&self, id: RunId) -> impl Future<Output = Result<()>> + Send;
}

/// Webhooks, and the calls waiting for runs until they take them.
pub trait Inbox: Send + Sync {
    /// Registers a webhook under its token, staged. A token held by another live webhook
    /// is refused (`TokenTaken`); one left by a crash for this very webhook is taken over.
    fn create_hook(&self, hook: &HookRecord, now_ms: u64) -> impl Future<Output = Result<()>> + Send;
    fn hook(&self, token: &Token) -> impl Future<Output = Result<Option<HookRecord>>> + Send;
    /// Closes a run's webhook, staged; the calls left in its inbox go to the not-taken
    /// list and are returned (the held ones' callers are to be told).
    fn close_hook(
        &self,
        token: &Token,
        run: RunId,
        webhook: WebhookId,
        reason: NotTakenReason,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<InboxEntry>>> + Send;
    /// Puts a call in the inbox of the webhook `hook` names, if that webhook still holds the
    /// token and takes calls. A `held` call's caller waits for the run to take it.
    /// `written` is called as soon as the call is in the inbox, possibly before it is durable
    /// (sled: before its fsync; PostgreSQL: after its commit): the run may take it meanwhile
    /// (its log's durable write then covers the call's), so its wait and the call's fsync
    /// overlap.
    fn deliver(
        &self,
        hook: &HookRecord,
        request: &RequestRecord,
        held: bool,
        now_ms: u64,
        written: &Written<'_>,
    ) -> impl Future<Output = Result<Delivery>> + Send;
    /// Keeps a call to a named trigger for a run until it takes it; its caller is held.
    fn deliver_to_trigger(
        &self,
        run: RunId,
        name: &TriggerName,
        request: &RequestRecord,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Of the given channels of a run, the one whose oldest call came first.
    fn first_arrival(&self, run: RunId, channels: &[Channel]) -> impl Future<Output = Result<Option<Channel>>> + Send;
    /// Claims the oldest call on a channel (`Call` to `Taking`), staged. `None` only when
    /// no call is left on it.
    fn claim(&self, run: RunId, channel: &Channel) -> impl Future<Output = Result<Option<Claimed>>> + Send;
    /// Finishes taking a claimed call, once the event that took it is durable, staged.
    fn taken(&self, run: RunId, claimed: &Claimed) -> impl Future<Output = Result<()>> + Send;
    /// Takes a held call back out of the inbox if the run has not claimed it; true if it
    /// was withdrawn. A single-use webhook's slot is empty again: it takes a call again.
    /// Staged: a withdrawal a crash loses leaves a held call, which start-up refuses.
    fn withdraw(
        &self,
        run: RunId,
        channel: &Channel,
        request: &RequestRecord,
        now_ms: u64,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Calls waiting for a run, webhooks then named triggers.
    fn queued(&self, run: RunId) -> impl Future<Output = Result<Vec<InboxEntry>>> + Send;
    /// How many calls wait for a run, and their bytes.
    fn queued_load(&self, run: RunId) -> impl Future<Output = Result<(usize, u64)>> + Send;
    fn has_any_request(&self, run: RunId) -> impl Future<Output = Result<bool>> + Send;
    /// The calls that reached the run and that it did not take.
    fn not_taken(&self, run: RunId) -> impl Future<Output = Result<Vec<NotTakenRecord>>> + Send;
    /// Refuses every call held at the run's named triggers (it ended); returns them.
    fn refuse_trigger_calls(
        &self,
        run: RunId,
        reason: NotTakenReason,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<InboxEntry>>> + Send;
    /// At start-up: finishes or undoes interrupted takes (see the module's doc) and refuses
    /// held calls, whose callers are gone. Returns how many calls were refused.
    fn repair_inbox(&self, now_ms: u64) -> impl Future<Output = Result<usize>> + Send;
    /// As a run ends, with no driver left: the takes its last commit left unfinished (that
    /// commit failed) are finished if their call is in the log, and their calls queued
    /// again if not (a close then refuses them, and tells their held callers). Returns the
    /// ids of the calls whose takes it finished: they are in the run.
    fn settle_takes(&self, run: RunId) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Notes that a run waits at a module's named trigger, staged; a note already there
    /// keeps its time.
    fn add_trigger_waiter(
        &self,
        module: &ModuleName,
        name: &TriggerName,
        run: RunId,
        since: u64,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Staged, as every note of where a run waits.
    fn remove_trigger_waiter(
        &self,
        module: &ModuleName,
        name: &TriggerName,
        run: RunId,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Runs noted as waiting at a module's named trigger, longest waiting first.
    fn trigger_waiters(
        &self,
        module: &ModuleName,
        name: &TriggerName,
    ) -> impl Future<Output = Result<Vec<(RunId, u64)>>> + Send;
    /// Claims a waiting run for one call: of several concurrent claims, one wins. Staged:
    /// a claim lives only while its call is handed over, which a crash ends.
    fn claim_trigger_waiter(
        &self,
        module: &ModuleName,
        name: &TriggerName,
        run: RunId,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// Durable timers, by due time.
pub trait Timers: Send + Sync {
    /// Staged: recovery sets a parked run's timer again from its log.
    fn add_timer(&self, due_ms: u64, run: RunId) -> impl Future<Output = Result<()>> + Send;
    /// Staged: a timer a crash brings back only wakes its run for nothing (a wait ends at
    /// the time its log gives), or is dropped once the run has ended.
    fn remove_timer(&self, due_ms: u64, run: RunId) -> impl Future<Output = Result<()>> + Send;
    /// Timers due at `now_ms` or earlier, oldest first, and when the next is due.
    fn due_timers(&self, now_ms: u64) -> impl Future<Output = Result<DueTimers>> + Send;
    fn has_timer(&self, due_ms: u64, run: RunId) -> impl Future<Output = Result<bool>> + Send;
}

/// Modules, keys, secrets, senders' message ids, and the engine's own settings.
pub trait Registry: Send + Sync {
    fn meta(&self, key: &str) -> impl Future<Output = Result<Option<String>>> + Send;
    fn set_meta(&self, key: &str, value: &str) -> impl Future<Output = Result<()>> + Send;
    /// A unique, increasing number (request ids, arrival order), across restarts.
    fn next_id(&self) -> impl Future<Output = Result<u64>> + Send;
    /// Makes every staged write durable: at shutdown, so that a clean stop leaves nothing
    /// for recovery to repair.
    fn close(&self) -> impl Future<Output = Result<()>> + Send;

    fn module(&self, name: &ModuleName) -> impl Future<Output = Result<Option<ModuleRecord>>> + Send;
    /// Every module, by name.
    fn modules(&self) -> impl Future<Output = Result<Vec<ModuleRecord>>> + Send;
    fn put_module(&self, module: &ModuleRecord) -> impl Future<Output = Result<()>> + Send;
    fn blob(&self, version: &str) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;
    fn put_blob(&self, version: &str, bytes: &[u8]) -> impl Future<Output = Result<()>> + Send;

    /// Stores a new API key; a name in use is refused (`NameTaken`).
    fn create_api_key(&self, key: &ApiKeyRecord) -> impl Future<Output = Result<()>> + Send;
    fn api_key(&self, key_sha256: &str) -> impl Future<Output = Result<Option<ApiKeyRecord>>> + Send;
    fn api_keys(&self) -> impl Future<Output = Result<Vec<ApiKeyRecord>>> + Send;
    /// Revokes the key with this name; false if there is none.
    fn revoke_api_key(&self, name: &KeyName) -> impl Future<Output = Result<bool>> + Send;

    /// Stores a secret; true if it is new.
    fn put_secret(&self, name: &KeyName, value: &str) -> impl Future<Output = Result<bool>> + Send;
    fn secret(&self, name: &KeyName) -> impl Future<Output = Result<Option<String>>> + Send;
    fn secret_names(&self) -> impl Future<Output = Result<Vec<String>>> + Send;
    fn delete_secret(&self, name: &KeyName) -> impl Future<Output = Result<bool>> + Send;

    /// Arms a start trigger to capture its next call as a sample.
    fn listen_for_sample(&self, module: &ModuleName, trigger: &str) -> impl Future<Output = Result<()>> + Send;
    /// Disarms a listening trigger; true for the one call that does so. Staged: the
    /// sample's durable write that follows covers it.
    fn take_listening(&self, module: &ModuleName, trigger: &str) -> impl Future<Output = Result<bool>> + Send;
    fn put_sample(
        &self,
        module: &ModuleName,
        trigger: &str,
        sample: &serde_json::Value,
    ) -> impl Future<Output = Result<()>> + Send;
    fn sample(
        &self,
        module: &ModuleName,
        trigger: &str,
    ) -> impl Future<Output = Result<Option<serde_json::Value>>> + Send;

    /// Notes a sender's message id for a first call, unless a live note of it exists: then
    /// that note is returned (the call is a repeat). Staged: the call's own durable write
    /// (its delivery, or its run's start) covers it; a note a crash loses had no call.
    fn begin_message(
        &self,
        key: &str,
        record: &IdempotencyRecord,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<IdempotencyRecord>>> + Send;
    fn message(&self, key: &str) -> impl Future<Output = Result<Option<IdempotencyRecord>>> + Send;
    fn put_message(&self, key: &str, record: &IdempotencyRecord) -> impl Future<Output = Result<()>> + Send;
    /// Staged: a note a crash brings back is looked into by the next retry (was its call
    /// delivered?) before anything is delivered again.
    fn forget_message(&self, key: &str) -> impl Future<Output = Result<()>> + Send;
    /// Forgets ids past their time, and past `max_kept` capped ids the oldest capped ones
    /// created before `keep_after_ms` (an id not capped stays its whole time); returns how
    /// many.
    fn forget_expired_messages(
        &self,
        now_ms: u64,
        max_kept: usize,
        keep_after_ms: u64,
    ) -> impl Future<Output = Result<usize>> + Send;
}

/// Everything the engine keeps.
pub trait Storage: RunLog + Inbox + Timers + Registry + Clone + 'static {}

impl<S: RunLog + Inbox + Timers + Registry + Clone + 'static> Storage for S {}

/// Builds an event record stamped with `at_ms`.
pub fn event_record(seq: u64, at_ms: u64, event: records::Event) -> EventRecord {
    EventRecord { seq, at_ms, event }
}

#[cfg(test)]
mod conformance;
