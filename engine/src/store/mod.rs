//! Durable state in sled: typed records in, typed records out. This is the only code that
//! knows tree names, key layouts and encodings.

mod compact;
mod group_commit;
mod keys;
pub mod records;

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use group_commit::GroupCommit;
use records::{
    ApiKeyRecord, Event, EventRecord, HookRecord, HookState, IdempotencyRecord, InboxEntry, ModuleRecord,
    NotTakenReason, NotTakenRecord, RequestRecord, RunRecord, RunStatus,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("storage: {0}")]
    Flush(std::sync::Arc<sled::Error>),
    #[error("starting the flushing thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("stored record is unreadable: {0}")]
    Codec(#[from] serde_json::Error),
    #[error("token is already taken by a live webhook")]
    TokenTaken,
    #[error("the name is taken")]
    NameTaken,
    /// A write lost a race with another one for the same record; it is tried again.
    #[error("a concurrent write changed the record")]
    Conflict,
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Timers whose time has come, as `(due_ms, run_id)`, and when the next one is due.
pub struct DueTimers {
    pub due: Vec<(u64, String)>,
    pub next_ms: Option<u64>,
}

/// What became of a call delivered to a webhook.
#[derive(Debug)]
pub enum Delivery {
    Accepted,
    /// The hook was used (single use) or closed meanwhile.
    Gone,
}

/// Where in a run's inbox a call waits: on one of its webhooks or at a named trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    Webhook(u32),
    Trigger(String),
}

/// A record that could not be decoded, skipped by a listing and reported.
#[derive(Debug, Clone)]
pub struct Unreadable {
    pub key: String,
    pub error: String,
}

/// Where the id counter of a compacted store starts.
const ID_BASE_META: &str = "id-base";

/// The next id a store would hand out: its base plus sled's counter.
fn next_id_of(db: &sled::Db) -> Result<u64> {
    let base =
        db.open_tree("meta")?.get(ID_BASE_META)?.and_then(|v| v.as_ref().try_into().ok()).map_or(0, u64::from_be_bytes);
    Ok(base + db.generate_id()?)
}

/// At most this many refused calls are kept per run for operators; more are only logged.
const REFUSED_KEPT_PER_RUN: usize = 100;

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    /// Added to sled's id counter, which a compaction starts afresh (see `compact`).
    id_base: u64,
    commit: GroupCommit,
    meta: sled::Tree,
    modules: sled::Tree,
    blobs: sled::Tree,
    runs: sled::Tree,
    events: sled::Tree,
    hooks: sled::Tree,
    inbox: sled::Tree,
    timers: sled::Tree,
    /// API keys by the sha256 of the key; `key_names` maps a name to that digest.
    api_keys: sled::Tree,
    key_names: sled::Tree,
    secrets: sled::Tree,
    /// Senders' message ids of accepted calls, so that retries get the first answer.
    messages: sled::Tree,
    /// Calls that reached a run's inbox and that it never took, per run, by arrival.
    not_taken: sled::Tree,
    /// Calls to named triggers, per run, until the run takes them.
    trigger_inbox: sled::Tree,
    /// Runs waiting at a module's named trigger; the value is when the wait began.
    trigger_waiters: sled::Tree,
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(value)?)
}

/// Reads a stored record without serde_json's nesting limit: a record wraps what arrived
/// in a few levels of its own, so a body accepted at ingress must still read back. The
/// depth stays bounded (and the stack safe) because every writer parsed what it stores
/// with the limit, and ingress caps nesting well below it.
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    deserializer.disable_recursion_limit();
    let value = T::deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// Turns a transaction's outcome back into our error type.
fn untx<T>(result: std::result::Result<T, TransactionError<StoreError>>) -> Result<T> {
    result.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    })
}

fn not_a_run_id() -> StoreError {
    StoreError::Codec(serde::de::Error::custom("run id is not a uuid"))
}

fn abort(e: impl Into<StoreError>) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e.into())
}

impl Store {
    /// Opens (or creates) the store in `dir`, with sled's page cache bounded to
    /// `cache_bytes`: past it, records are read back from disk. Space that deleted records
    /// left is reused at once, and given back to the filesystem here, at start-up (see
    /// `compact`).
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store> {
        compact::finish_interrupted(dir)?;
        compact::compact_or_carry_on(dir);
        let db = sled::Config::new().path(dir.join("sled")).cache_capacity(cache_bytes).open()?;
        let meta = db.open_tree("meta")?;
        let id_base = meta.get(ID_BASE_META)?.and_then(|v| v.as_ref().try_into().ok()).map_or(0, u64::from_be_bytes);
        Ok(Store {
            id_base,
            meta,
            modules: db.open_tree("modules")?,
            blobs: db.open_tree("blobs")?,
            runs: db.open_tree("runs")?,
            events: db.open_tree("events")?,
            hooks: db.open_tree("hooks")?,
            inbox: db.open_tree("inbox")?,
            timers: db.open_tree("timers")?,
            api_keys: db.open_tree("api_keys")?,
            key_names: db.open_tree("key_names")?,
            secrets: db.open_tree("secrets")?,
            messages: db.open_tree("messages")?,
            not_taken: db.open_tree("not_taken")?,
            trigger_inbox: db.open_tree("trigger_inbox")?,
            trigger_waiters: db.open_tree("trigger_waiters")?,
            commit: GroupCommit::start(db.clone())?,
            db,
        })
    }

    /// Makes every write so far durable. Concurrent callers share one fsync.
    pub async fn flush(&self) -> Result<()> {
        self.commit.flush().await.map_err(StoreError::Flush)
    }

    /// A unique, increasing number (ids of requests, arrival order), across restarts and
    /// compactions.
    pub fn next_id(&self) -> Result<u64> {
        Ok(self.id_base + self.db.generate_id()?)
    }

    // --- meta -----------------------------------------------------------------------

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self.meta.get(key)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.meta.insert(key, value.as_bytes())?;
        Ok(())
    }

    // --- API keys and secrets -----------------------------------------------------------

    /// Stores a new API key, its name and digest in one transaction; a name already in use
    /// is refused.
    pub fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        let (name, digest, bytes) = (key.name.as_bytes(), key.key_sha256.as_bytes(), encode(key)?);
        untx((&self.key_names, &self.api_keys).transaction(|(names, keys)| {
            if names.get(name)?.is_some() {
                return Err(abort(StoreError::NameTaken));
            }
            names.insert(name, digest)?;
            keys.insert(digest, bytes.as_slice())?;
            Ok(())
        }))
    }

    pub fn api_key(&self, key_sha256: &str) -> Result<Option<ApiKeyRecord>> {
        self.api_keys.get(key_sha256.as_bytes())?.map(|v| decode(&v)).transpose()
    }

    pub fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        self.api_keys.iter().values().map(|v| decode(&v?)).collect()
    }

    /// Revokes the key with this name, its name and digest in one transaction (a crash
    /// cannot leave a key that works but is not listed); false if there is none.
    pub fn revoke_api_key(&self, name: &str) -> Result<bool> {
        untx((&self.key_names, &self.api_keys).transaction(|(names, keys)| {
            let Some(digest) = names.remove(name.as_bytes())? else { return Ok(false) };
            keys.remove(digest)?;
            Ok(true)
        }))
    }

    pub fn put_secret(&self, name: &str, value: &str) -> Result<bool> {
        Ok(self.secrets.insert(name.as_bytes(), value.as_bytes())?.is_none())
    }

    pub fn secret(&self, name: &str) -> Result<Option<String>> {
        Ok(self.secrets.get(name.as_bytes())?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn secret_names(&self) -> Result<Vec<String>> {
        self.secrets.iter().keys().map(|k| Ok(String::from_utf8_lossy(&k?).into_owned())).collect()
    }

    pub fn delete_secret(&self, name: &str) -> Result<bool> {
        Ok(self.secrets.remove(name.as_bytes())?.is_some())
    }

    /// Notes a sender's message id for a new call, unless a live record of it exists:
    /// then that record is returned (the call is a repeat). An expired record is replaced.
    pub fn begin_message(
        &self,
        key: &str,
        record: &IdempotencyRecord,
        now_ms: u64,
    ) -> Result<Option<IdempotencyRecord>> {
        let bytes = encode(record)?;
        loop {
            let previous = self.messages.get(key.as_bytes())?;
            if let Some(bytes) = &previous {
                let existing: IdempotencyRecord = decode(bytes)?;
                if existing.forget_at_ms > now_ms {
                    return Ok(Some(existing));
                }
            }
            if self.messages.compare_and_swap(key.as_bytes(), previous, Some(bytes.as_slice()))?.is_ok() {
                return Ok(None);
            }
        }
    }

    pub fn message(&self, key: &str) -> Result<Option<IdempotencyRecord>> {
        self.messages.get(key.as_bytes())?.map(|v| decode(&v)).transpose()
    }

    pub fn put_message(&self, key: &str, record: &IdempotencyRecord) -> Result<()> {
        self.messages.insert(key.as_bytes(), encode(record)?)?;
        Ok(())
    }

    /// Forgets a message id whose call was not accepted: a retry is a new call.
    pub fn forget_message(&self, key: &str) -> Result<()> {
        self.messages.remove(key.as_bytes())?;
        Ok(())
    }

    /// Forgets the message ids whose time has passed, and past `max_kept` the oldest ones
    /// created before `keep_after_ms` (the shortest window every scheme needs); returns
    /// how many were forgotten.
    pub fn forget_expired_messages(&self, now_ms: u64, max_kept: usize, keep_after_ms: u64) -> Result<usize> {
        let mut forgotten = 0;
        let mut live = Vec::new();
        for entry in self.messages.iter() {
            let (key, bytes) = entry?;
            let record: Option<IdempotencyRecord> = decode(&bytes).ok();
            match record {
                Some(record) if record.forget_at_ms > now_ms => live.push((record.created_at_ms, key, bytes)),
                // Only if unchanged: a concurrent call may have just renewed it.
                _ => {
                    forgotten += usize::from(self.messages.compare_and_swap(&key, Some(bytes), None::<&[u8]>)?.is_ok())
                }
            }
        }
        if live.len() > max_kept {
            live.sort_by_key(|(created, ..)| *created);
            let excess = live.len() - max_kept;
            for (created, key, bytes) in live.into_iter().take(excess) {
                if created < keep_after_ms && self.messages.compare_and_swap(&key, Some(bytes), None::<&[u8]>)?.is_ok()
                {
                    forgotten += 1;
                }
            }
        }
        Ok(forgotten)
    }

    // --- cancellation -----------------------------------------------------------------

    /// Notes, durably once flushed, that an operator asked a run to end.
    pub fn request_cancel(&self, run_id: &str) -> Result<()> {
        self.meta.insert(format!("cancel:{run_id}"), &[1])?;
        Ok(())
    }

    pub fn cancel_requested(&self, run_id: &str) -> Result<bool> {
        Ok(self.meta.contains_key(format!("cancel:{run_id}"))?)
    }

    pub fn clear_cancel(&self, run_id: &str) -> Result<()> {
        self.meta.remove(format!("cancel:{run_id}"))?;
        Ok(())
    }

    // --- sample events ----------------------------------------------------------------

    fn sample_key(module: &str, trigger: &str) -> String {
        format!("sample:{module}:{trigger}")
    }

    /// Arms a trigger: its next call is captured as a sample instead of starting a run.
    pub fn listen_for_sample(&self, module: &str, trigger: &str) -> Result<()> {
        self.meta.insert(format!("listen:{module}:{trigger}"), &[1])?;
        Ok(())
    }

    /// Disarms a listening trigger; true for the one call that does so.
    pub fn take_listening(&self, module: &str, trigger: &str) -> Result<bool> {
        let key = format!("listen:{module}:{trigger}");
        Ok(self.meta.compare_and_swap(key, Some(&[1][..]), None as Option<&[u8]>)?.is_ok())
    }

    pub fn put_sample(&self, module: &str, trigger: &str, sample: &serde_json::Value) -> Result<()> {
        self.meta.insert(Self::sample_key(module, trigger), encode(sample)?)?;
        Ok(())
    }

    pub fn sample(&self, module: &str, trigger: &str) -> Result<Option<serde_json::Value>> {
        self.meta.get(Self::sample_key(module, trigger))?.map(|v| decode(&v)).transpose()
    }

    // --- modules --------------------------------------------------------------------

    pub fn module(&self, name: &str) -> Result<Option<ModuleRecord>> {
        self.modules.get(name)?.map(|v| decode(&v)).transpose()
    }

    pub fn put_module(&self, module: &ModuleRecord) -> Result<()> {
        self.modules.insert(module.name.as_bytes(), encode(module)?)?;
        Ok(())
    }

    pub fn blob(&self, version: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.blobs.get(version)?.map(|v| v.to_vec()))
    }

    pub fn put_blob(&self, version: &str, bytes: &[u8]) -> Result<()> {
        self.blobs.insert(version, bytes)?;
        Ok(())
    }

    // --- runs -----------------------------------------------------------------------

    /// Writes a new run and its `started` event together.
    pub fn create_run(&self, run: &RunRecord, started: &EventRecord) -> Result<()> {
        let run_key = keys::run(&run.id).ok_or_else(not_a_run_id)?;
        let (run_bytes, event_bytes) = (encode(run)?, encode(started)?);
        untx((&self.runs, &self.events).transaction(|(runs, events)| {
            runs.insert(&run_key, run_bytes.as_slice())?;
            events.insert(keys::event(&run_key, started.seq).as_slice(), event_bytes.as_slice())?;
            Ok(())
        }))
    }

    pub fn run(&self, id: &str) -> Result<Option<RunRecord>> {
        let Some(key) = keys::run(id) else { return Ok(None) };
        self.runs.get(key)?.map(|v| decode(&v)).transpose()
    }

    pub fn put_run(&self, run: &RunRecord) -> Result<()> {
        if let Some(key) = keys::run(&run.id) {
            self.runs.insert(key, encode(run)?)?;
        }
        Ok(())
    }

    /// Every run, oldest first, optionally only those with one status. A record that
    /// cannot be read is skipped and reported, so one bad record hides no other run.
    pub fn runs(&self, status: Option<RunStatus>) -> Result<(Vec<RunRecord>, Vec<Unreadable>)> {
        let mut out = Vec::new();
        let mut unreadable = Vec::new();
        for item in self.runs.iter() {
            let (key, bytes) = item?;
            match decode::<RunRecord>(&bytes) {
                Ok(run) if status.is_none_or(|s| s == run.status) => out.push(run),
                Ok(_) => {}
                Err(e) => {
                    let key = uuid::Uuid::from_slice(&key).map_or_else(|_| hex::encode(&key), |id| id.to_string());
                    tracing::error!(run = %key, "skipping an unreadable run record: {e}");
                    unreadable.push(Unreadable { key, error: e.to_string() });
                }
            }
        }
        Ok((out, unreadable))
    }

    /// Runs that ended before `before_ms`, oldest first.
    pub fn finished_before(&self, before_ms: u64) -> Result<Vec<String>> {
        let (runs, _) = self.runs(None)?;
        Ok(runs.into_iter().filter(|r| r.status.is_terminal() && r.updated_at_ms < before_ms).map(|r| r.id).collect())
    }

    /// Deletes an ended run and everything it owns: its log, its calls, its webhooks' tokens.
    /// The run record goes last, so that a crash half-way leaves a run that a later sweep
    /// finds and finishes deleting.
    pub fn delete_run(&self, run_id: &str) -> Result<()> {
        let Some(run_key) = keys::run(run_id) else { return Ok(()) };
        for (token, number) in self.webhooks_of(run_id)? {
            let owned = self.hook(&token)?.is_some_and(|hook| hook.is(run_id, number));
            if owned {
                self.hooks.remove(token.as_bytes())?;
            }
        }
        for tree in [&self.events, &self.inbox, &self.trigger_inbox, &self.not_taken] {
            for key in tree.scan_prefix(run_key).keys() {
                tree.remove(key?)?;
            }
        }
        self.meta.remove(format!("cancel:{run_id}"))?;
        self.runs.remove(run_key)?;
        Ok(())
    }

    // --- events ---------------------------------------------------------------------

    pub fn events(&self, run_id: &str) -> Result<Vec<EventRecord>> {
        Ok(self.events_with_size(run_id)?.0)
    }

    /// The run's log for people to read: a record that cannot be decoded is passed over
    /// and reported (by its sequence number).
    pub fn readable_events(&self, run_id: &str) -> Result<(Vec<EventRecord>, Vec<Unreadable>)> {
        let Some(run_key) = keys::run(run_id) else { return Ok((Vec::new(), Vec::new())) };
        let (mut events, mut unreadable) = (Vec::new(), Vec::new());
        for item in self.events.scan_prefix(run_key) {
            let (key, value) = item?;
            match decode(&value) {
                Ok(event) => events.push(event),
                Err(e) => {
                    let seq = keys::inbox_arrival(&key).map_or_else(|| hex::encode(&key), |seq| seq.to_string());
                    unreadable.push(Unreadable { key: seq, error: e.to_string() });
                }
            }
        }
        Ok((events, unreadable))
    }

    /// The run's log, and how many bytes it takes.
    pub fn events_with_size(&self, run_id: &str) -> Result<(Vec<EventRecord>, u64)> {
        let Some(run_key) = keys::run(run_id) else { return Ok((Vec::new(), 0)) };
        let mut bytes = 0;
        let mut events = Vec::new();
        for value in self.events.scan_prefix(run_key).values() {
            let value = value?;
            bytes += value.len() as u64;
            events.push(decode(&value)?);
        }
        Ok((events, bytes))
    }

    /// The run's newest event.
    pub fn last_event(&self, run_id: &str) -> Result<Option<EventRecord>> {
        let Some(run_key) = keys::run(run_id) else { return Ok(None) };
        self.events.scan_prefix(run_key).values().next_back().transpose()?.map(|v| decode(&v)).transpose()
    }

    /// Appends an event to the run's log; returns its size in bytes.
    pub fn append_event(&self, run_id: &str, record: &EventRecord) -> Result<u64> {
        let bytes = encode(record)?;
        let size = bytes.len() as u64;
        if let Some(run_key) = keys::run(run_id) {
            self.events.insert(keys::event(&run_key, record.seq), bytes)?;
        }
        Ok(size)
    }

    /// How many calls wait in a run's inbox (webhooks and named triggers), and their bytes.
    pub fn queued_load(&self, run_id: &str) -> Result<(usize, u64)> {
        let Some(run_key) = keys::run(run_id) else { return Ok((0, 0)) };
        let (mut count, mut bytes) = (0, 0);
        for inbox in [&self.inbox, &self.trigger_inbox] {
            for value in inbox.scan_prefix(run_key).values() {
                count += 1;
                bytes += value?.len() as u64;
            }
        }
        Ok((count, bytes))
    }

    // --- hooks ----------------------------------------------------------------------

    /// Registers a webhook under its token and appends its `created` event, in one
    /// transaction (a crash cannot leave a hook the log does not know). A token held by a
    /// live webhook is refused.
    pub fn create_hook(&self, hook: &HookRecord, created: &EventRecord) -> Result<()> {
        let run_key = keys::run(&hook.run_id).ok_or_else(not_a_run_id)?;
        let (hook_bytes, event_bytes) = (encode(hook)?, encode(created)?);
        let event_key = keys::event(&run_key, created.seq);
        untx((&self.hooks, &self.events).transaction(|(hooks, events)| {
            if let Some(previous) = hooks.get(hook.token.as_bytes())? {
                let previous: HookRecord = decode(&previous).map_err(abort)?;
                if previous.state == HookState::Open {
                    return Err(abort(StoreError::TokenTaken));
                }
            }
            hooks.insert(hook.token.as_bytes(), hook_bytes.as_slice())?;
            events.insert(event_key.as_slice(), event_bytes.as_slice())?;
            Ok(())
        }))
    }

    pub fn hook(&self, token: &str) -> Result<Option<HookRecord>> {
        self.hooks.get(token.as_bytes())?.map(|v| decode(&v)).transpose()
    }

    /// Closes a run's webhook. The calls still in its inbox are moved to the run's
    /// not-taken list, each in one transaction, and returned: an acknowledged one keeps its
    /// contents, a held one (its caller is told) keeps only its identity. A token that has
    /// since passed to another run's webhook is left alone.
    pub fn close_hook(
        &self,
        token: &str,
        run_id: &str,
        number: u32,
        reason: NotTakenReason,
    ) -> Result<Vec<InboxEntry>> {
        let Some(mut hook) = self.hook(token)? else { return Ok(Vec::new()) };
        if !hook.is(run_id, number) {
            return Ok(Vec::new());
        }
        if hook.state != HookState::Closed {
            hook.state = HookState::Closed;
            self.hooks.insert(token.as_bytes(), encode(&hook)?)?;
        }
        let Some(run_key) = keys::run(run_id) else { return Ok(Vec::new()) };
        self.move_to_not_taken(&self.inbox, &run_key, keys::inbox_prefix(&run_key, number), reason)
    }

    /// Moves every call under `prefix` of an inbox to the run's not-taken list.
    fn move_to_not_taken(
        &self,
        inbox: &sled::Tree,
        run_key: &keys::RunKey,
        prefix: Vec<u8>,
        reason: NotTakenReason,
    ) -> Result<Vec<InboxEntry>> {
        let mut moved = Vec::new();
        for item in inbox.scan_prefix(prefix) {
            let (key, bytes) = item?;
            let entry: InboxEntry = decode(&bytes)?;
            let arrival = keys::inbox_arrival(&key).unwrap_or_default();
            let record = if entry.held {
                NotTakenRecord::refused(entry.request.clone(), reason, crate::clock::now_ms())
            } else {
                NotTakenRecord {
                    request: entry.request.clone(),
                    acknowledged: true,
                    reason,
                    at_ms: crate::clock::now_ms(),
                }
            };
            let keep = record.acknowledged || self.refused_kept(run_key)? < REFUSED_KEPT_PER_RUN;
            let record_bytes = encode(&record)?;
            let not_taken_key = keys::not_taken(run_key, arrival);
            let removed = untx((inbox, &self.not_taken).transaction(|(inbox, not_taken)| {
                let removed = inbox.remove(&key)?.is_some();
                if removed && keep {
                    not_taken.insert(not_taken_key.as_slice(), record_bytes.as_slice())?;
                }
                Ok(removed)
            }))?;
            if removed {
                moved.push(entry);
            }
        }
        Ok(moved)
    }

    /// How many refused calls of the run are kept (counted up to the cap).
    fn refused_kept(&self, run_key: &keys::RunKey) -> Result<usize> {
        let mut count = 0;
        for item in self.not_taken.scan_prefix(run_key).values() {
            let record: NotTakenRecord = decode(&item?)?;
            count += usize::from(!record.acknowledged);
            if count >= REFUSED_KEPT_PER_RUN {
                break;
            }
        }
        Ok(count)
    }

    /// The calls that reached the run and that it did not take, by arrival.
    pub fn not_taken(&self, run_id: &str) -> Result<Vec<NotTakenRecord>> {
        let Some(run_key) = keys::run(run_id) else { return Ok(Vec::new()) };
        self.not_taken.scan_prefix(run_key).values().map(|v| decode(&v?)).collect()
    }

    /// Refuses every call held at the run's named triggers (the run ended), moving them to
    /// its not-taken list; returns them, so their callers can be told.
    pub fn refuse_trigger_calls(&self, run_id: &str, reason: NotTakenReason) -> Result<Vec<InboxEntry>> {
        let Some(run_key) = keys::run(run_id) else { return Ok(Vec::new()) };
        self.move_to_not_taken(&self.trigger_inbox, &run_key, run_key.to_vec(), reason)
    }

    /// At start-up: every held call lost its caller with the last process (it was never
    /// acknowledged), so it is refused; the sender's retry is the one that counts. A
    /// single-use webhook a refused call had used takes a call again. An entry that cannot
    /// be read is dropped and reported. Returns how many calls were refused.
    pub fn refuse_orphaned_calls(&self) -> Result<usize> {
        let mut refused = 0;
        for (inbox, is_webhook) in [(&self.inbox, true), (&self.trigger_inbox, false)] {
            for item in inbox.iter() {
                let (key, bytes) = item?;
                let Some(run_key) = key.get(..16).and_then(|k| <keys::RunKey>::try_from(k).ok()) else { continue };
                let entry = match decode::<InboxEntry>(&bytes) {
                    Ok(entry) => entry,
                    Err(e) => {
                        tracing::error!("dropping an unreadable call from an inbox: {e}");
                        inbox.remove(&key)?;
                        continue;
                    }
                };
                if !entry.held {
                    continue;
                }
                let number = key.get(16..20).and_then(|n| n.try_into().ok()).map(u32::from_be_bytes);
                let reopen = match number.filter(|_| is_webhook) {
                    Some(number) => self.token_of(&run_key, number)?.map(|token| (token, number)),
                    None => None,
                };
                let reopen = reopen.as_ref().map(|(token, number)| (token.as_str(), *number));
                self.refuse_held(inbox, &run_key, &key, entry, reopen)?;
                refused += 1;
            }
        }
        Ok(refused)
    }

    /// The webhooks a run created, as (token, number), from its log; an event that cannot
    /// be read is passed over.
    pub fn webhooks_of(&self, run_id: &str) -> Result<Vec<(String, u32)>> {
        let Some(run_key) = keys::run(run_id) else { return Ok(Vec::new()) };
        let mut webhooks = Vec::new();
        for value in self.events.scan_prefix(run_key).values() {
            if let Ok(EventRecord { event: Event::WebhookCreated { webhook: Ok(info) }, .. }) = decode(&value?)
                && let Some(number) = info.number()
            {
                webhooks.push((info.token, number));
            }
        }
        Ok(webhooks)
    }

    /// The token of a run's webhook `number`, from its log.
    fn token_of(&self, run_key: &keys::RunKey, number: u32) -> Result<Option<String>> {
        for value in self.events.scan_prefix(run_key).values() {
            if let Ok(EventRecord { event: Event::WebhookCreated { webhook: Ok(info) }, .. }) = decode(&value?)
                && info.number() == Some(number)
            {
                return Ok(Some(info.token));
            }
        }
        Ok(None)
    }

    /// Moves one held call to the not-taken list as `restarted`, giving its single-use
    /// webhook's token back (`reopen`), in one transaction.
    fn refuse_held(
        &self,
        inbox: &sled::Tree,
        run_key: &keys::RunKey,
        key: &[u8],
        entry: InboxEntry,
        reopen: Option<(&str, u32)>,
    ) -> Result<()> {
        let arrival = keys::inbox_arrival(key).unwrap_or_default();
        let keep = self.refused_kept(run_key)? < REFUSED_KEPT_PER_RUN;
        let record =
            encode(&NotTakenRecord::refused(entry.request, NotTakenReason::Restarted, crate::clock::now_ms()))?;
        let not_taken_key = keys::not_taken(run_key, arrival);
        let run_id = uuid::Uuid::from_bytes(*run_key).to_string();
        untx((inbox, &self.not_taken, &self.hooks).transaction(|(inbox, not_taken, hooks)| {
            inbox.remove(key)?;
            if keep {
                not_taken.insert(not_taken_key.as_slice(), record.as_slice())?;
            }
            if let Some((token, number)) = reopen {
                reopen_hook(hooks, token, &run_id, number)?;
            }
            Ok(())
        }))
    }

    /// Takes a held call back out of the run's inbox (its caller waited long enough), if the
    /// run has not taken it meanwhile; true if it was withdrawn. A single-use webhook whose
    /// token is given as `reopen` takes a call again: this one was not delivered.
    pub fn withdraw(&self, run_id: &str, channel: &Channel, arrival: u64, reopen: Option<&str>) -> Result<bool> {
        let Some(run_key) = keys::run(run_id) else { return Ok(false) };
        let (inbox, key, number) = match channel {
            Channel::Webhook(number) => (&self.inbox, keys::inbox(&run_key, *number, arrival), *number),
            Channel::Trigger(name) => (&self.trigger_inbox, keys::trigger_inbox(&run_key, name, arrival), 0),
        };
        let Some(bytes) = inbox.get(&key)? else { return Ok(false) };
        let entry: InboxEntry = decode(&bytes)?;
        let keep = self.refused_kept(&run_key)? < REFUSED_KEPT_PER_RUN;
        let record = encode(&NotTakenRecord::refused(entry.request, NotTakenReason::TimedOut, crate::clock::now_ms()))?;
        let not_taken_key = keys::not_taken(&run_key, arrival);
        untx((inbox, &self.not_taken, &self.hooks).transaction(|(inbox, not_taken, hooks)| {
            if inbox.remove(key.as_slice())?.is_none() {
                return Ok(false);
            }
            if keep {
                not_taken.insert(not_taken_key.as_slice(), record.as_slice())?;
            }
            if let Some(token) = reopen {
                reopen_hook(hooks, token, run_id, number)?;
            }
            Ok(true)
        }))
    }

    // --- inbox ----------------------------------------------------------------------

    /// Puts a call in the inbox of the webhook `hook` names, if that webhook still holds
    /// the token and takes calls; a single-use hook is marked used in the same
    /// transaction, so only one of two racing calls wins.
    ///
    /// A `held` call's caller waits for the run to take it; any other is acknowledged once
    /// this is durable.
    pub fn deliver(&self, hook: &HookRecord, request: &RequestRecord, held: bool, now_ms: u64) -> Result<Delivery> {
        let Some(run_key) = keys::run(&hook.run_id) else { return Ok(Delivery::Gone) };
        let arrival = request.arrival().map_or_else(|| self.next_id(), Ok)?;
        let inbox_key = keys::inbox(&run_key, hook.number, arrival);
        let request_bytes = encode(&InboxEntry { request: request.clone(), held })?;
        let token = hook.token.as_bytes();
        untx((&self.hooks, &self.inbox).transaction(|(hooks, inbox)| {
            let Some(current) = hooks.get(token)? else { return Ok(Delivery::Gone) };
            let mut current: HookRecord = decode(&current).map_err(abort)?;
            // The caller was checked against `hook`: the token must still be that hook's.
            if !current.is(&hook.run_id, hook.number) || !current.takes_calls(now_ms) {
                return Ok(Delivery::Gone);
            }
            if current.single_use {
                current.state = HookState::Used;
                hooks.insert(token, encode(&current).map_err(abort)?)?;
            }
            inbox.insert(inbox_key.as_slice(), request_bytes.as_slice())?;
            Ok(Delivery::Accepted)
        }))
    }

    /// Whether a call waits in the inbox of a run's webhook.
    pub fn has_request(&self, run_id: &str, number: u32) -> Result<bool> {
        let Some(run_key) = keys::run(run_id) else { return Ok(false) };
        Ok(self.inbox.scan_prefix(keys::inbox_prefix(&run_key, number)).next().transpose()?.is_some())
    }

    /// Of the given webhooks of a run, the one whose oldest waiting call came first, with
    /// that call's arrival number.
    pub fn first_arrival(&self, run_id: &str, numbers: &[u32]) -> Result<Option<(u64, u32)>> {
        let Some(run_key) = keys::run(run_id) else { return Ok(None) };
        let mut first: Option<(u64, u32)> = None;
        for &number in numbers {
            if let Some(key) = self.inbox.scan_prefix(keys::inbox_prefix(&run_key, number)).keys().next() {
                let arrival = keys::inbox_arrival(&key?).unwrap_or(u64::MAX);
                if first.is_none_or(|(earliest, _)| arrival < earliest) {
                    first = Some((arrival, number));
                }
            }
        }
        Ok(first)
    }

    /// Calls for a run that it has not taken yet, in arrival order per webhook, then per
    /// named trigger; with whether each is held (its caller still waits).
    pub fn queued_requests(&self, run_id: &str) -> Result<Vec<InboxEntry>> {
        let Some(run_key) = keys::run(run_id) else { return Ok(Vec::new()) };
        let webhooks = self.inbox.scan_prefix(run_key).values();
        webhooks.chain(self.trigger_inbox.scan_prefix(run_key).values()).map(|v| decode(&v?)).collect()
    }

    /// Whether any call waits for the run, on any of its webhooks or named triggers.
    pub fn has_any_request(&self, run_id: &str) -> Result<bool> {
        let Some(run_key) = keys::run(run_id) else { return Ok(false) };
        Ok(self.inbox.scan_prefix(run_key).next().transpose()?.is_some()
            || self.trigger_inbox.scan_prefix(run_key).next().transpose()?.is_some())
    }

    // --- named triggers -----------------------------------------------------------------

    /// Keeps a call to a named trigger for a run until it takes it; its caller is held.
    pub fn deliver_to_trigger(&self, run_id: &str, name: &str, request: &RequestRecord) -> Result<()> {
        let run_key = keys::run(run_id).ok_or_else(not_a_run_id)?;
        let arrival = request.arrival().map_or_else(|| self.next_id(), Ok)?;
        let entry = InboxEntry { request: request.clone(), held: true };
        self.trigger_inbox.insert(keys::trigger_inbox(&run_key, name, arrival), encode(&entry)?)?;
        Ok(())
    }

    /// The arrival number of the oldest call to a run's named trigger.
    pub fn first_trigger_arrival(&self, run_id: &str, name: &str) -> Result<Option<u64>> {
        let Some(run_key) = keys::run(run_id) else { return Ok(None) };
        let first = self.trigger_inbox.scan_prefix(keys::trigger_inbox_prefix(&run_key, name)).keys().next();
        Ok(first.transpose()?.and_then(|key| keys::inbox_arrival(&key)))
    }

    /// Takes the oldest call to a run's named trigger and records its delivery as the
    /// event `make_event` builds, in one transaction.
    pub fn take_trigger_request(
        &self,
        run_id: &str,
        name: &str,
        make_event: impl Fn(RequestRecord) -> EventRecord,
    ) -> Result<Option<EventRecord>> {
        let Some(run_key) = keys::run(run_id) else { return Ok(None) };
        self.take_oldest(&self.trigger_inbox, &run_key, keys::trigger_inbox_prefix(&run_key, name), make_event)
    }

    /// Notes that a run waits at a module's named trigger (for `any` and `all`); an entry
    /// already there keeps its time.
    pub fn add_trigger_waiter(&self, module: &str, name: &str, run_id: &str, since: u64) -> Result<()> {
        if let Some(run_key) = keys::run(run_id) {
            let key = keys::trigger_waiter(module, name, &run_key);
            let _kept =
                self.trigger_waiters.compare_and_swap(key, None as Option<&[u8]>, Some(&since.to_be_bytes()[..]))?;
        }
        Ok(())
    }

    pub fn remove_trigger_waiter(&self, module: &str, name: &str, run_id: &str) -> Result<()> {
        if let Some(run_key) = keys::run(run_id) {
            self.trigger_waiters.remove(keys::trigger_waiter(module, name, &run_key))?;
        }
        Ok(())
    }

    /// The runs waiting at a module's named trigger, with when each began to, longest
    /// waiting first.
    pub fn trigger_waiters(&self, module: &str, name: &str) -> Result<Vec<(String, u64)>> {
        let mut waiters = Vec::new();
        for item in self.trigger_waiters.scan_prefix(keys::trigger_waiters_prefix(module, name)) {
            let (key, since) = item?;
            let since = since.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX);
            if let Some(run) = keys::trigger_waiter_run(&key) {
                waiters.push((since, run));
            }
        }
        waiters.sort();
        Ok(waiters.into_iter().map(|(since, run)| (run, since)).collect())
    }

    /// Claims a waiting run for one call: only one of several concurrent claims wins.
    pub fn claim_trigger_waiter(&self, module: &str, name: &str, run_id: &str) -> Result<bool> {
        let Some(run_key) = keys::run(run_id) else { return Ok(false) };
        Ok(self.trigger_waiters.remove(keys::trigger_waiter(module, name, &run_key))?.is_some())
    }

    /// Takes the oldest call on a run's webhook and records its delivery as the event
    /// `make_event` builds, in one transaction: a call is either in the inbox or in the log.
    pub fn take_request(
        &self,
        run_id: &str,
        number: u32,
        make_event: impl Fn(RequestRecord) -> EventRecord,
    ) -> Result<Option<EventRecord>> {
        let Some(run_key) = keys::run(run_id) else { return Ok(None) };
        self.take_oldest(&self.inbox, &run_key, keys::inbox_prefix(&run_key, number), make_event)
    }

    /// Moves the oldest call under `prefix` of an inbox tree into the run's log, in one
    /// transaction that fails if the call left the inbox meanwhile (withdrawn by its
    /// caller): then the next oldest is taken.
    fn take_oldest(
        &self,
        inbox: &sled::Tree,
        run_key: &keys::RunKey,
        prefix: Vec<u8>,
        make_event: impl Fn(RequestRecord) -> EventRecord,
    ) -> Result<Option<EventRecord>> {
        loop {
            let Some(first) = inbox.scan_prefix(&prefix).next() else { return Ok(None) };
            let (inbox_key, bytes) = first?;
            let entry: InboxEntry = decode(&bytes)?;
            let record = make_event(entry.request);
            let event_key = keys::event(run_key, record.seq);
            let event_bytes = encode(&record)?;
            let taken = untx((inbox, &self.events).transaction(|(inbox, events)| {
                if inbox.remove(&inbox_key)?.is_none() {
                    return Err(abort(StoreError::Conflict));
                }
                events.insert(event_key.as_slice(), event_bytes.as_slice())?;
                Ok(())
            }));
            match taken {
                Ok(()) => return Ok(Some(record)),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    // --- timers ---------------------------------------------------------------------

    pub fn add_timer(&self, due_ms: u64, run_id: &str) -> Result<()> {
        if let Some(run_key) = keys::run(run_id) {
            self.timers.insert(keys::timer(due_ms, &run_key), &[])?;
        }
        Ok(())
    }

    pub fn remove_timer(&self, due_ms: u64, run_id: &str) -> Result<()> {
        if let Some(run_key) = keys::run(run_id) {
            self.timers.remove(keys::timer(due_ms, &run_key))?;
        }
        Ok(())
    }

    /// Timers due at `now_ms` or earlier, oldest first, and the due time of the next one.
    pub fn due_timers(&self, now_ms: u64) -> Result<DueTimers> {
        let mut due = Vec::new();
        for item in self.timers.iter().keys() {
            let Some((at, run_id)) = keys::parse_timer(&item?) else { continue };
            if at > now_ms {
                return Ok(DueTimers { due, next_ms: Some(at) });
            }
            due.push((at, run_id));
        }
        Ok(DueTimers { due, next_ms: None })
    }

    pub fn has_timer(&self, due_ms: u64, run_id: &str) -> Result<bool> {
        let Some(run_key) = keys::run(run_id) else { return Ok(false) };
        Ok(self.timers.contains_key(keys::timer(due_ms, &run_key))?)
    }
}

/// Gives a single-use webhook's token back (its call was not delivered), if the token is
/// still that webhook's and used.
fn reopen_hook(
    hooks: &sled::transaction::TransactionalTree,
    token: &str,
    run_id: &str,
    number: u32,
) -> std::result::Result<(), ConflictableTransactionError<StoreError>> {
    let Some(bytes) = hooks.get(token.as_bytes())? else { return Ok(()) };
    let mut hook: HookRecord = decode(&bytes).map_err(abort)?;
    if hook.is(run_id, number) && hook.single_use && hook.state == HookState::Used {
        hook.state = HookState::Open;
        hooks.insert(token.as_bytes(), encode(&hook).map_err(abort)?)?;
    }
    Ok(())
}

/// Builds an event record stamped with the current time.
pub fn event_record(seq: u64, event: Event) -> EventRecord {
    EventRecord { seq, at_ms: crate::clock::now_ms(), event }
}

#[cfg(test)]
mod tests {
    use super::records::{Caller, HttpResponse, Method, ResponseMode, WebhookInfo};
    use super::*;

    fn message(created_at_ms: u64, forget_at_ms: u64) -> IdempotencyRecord {
        IdempotencyRecord {
            fingerprint: "f".into(),
            deliveries: Vec::new(),
            accepted: true,
            answer: Some(HttpResponse { status: 202, headers: Vec::new(), body: String::new() }),
            answer_from: Default::default(),
            created_at_ms,
            forget_at_ms,
        }
    }

    #[test]
    fn a_message_id_is_noted_once_until_it_expires() {
        let (_dir, store) = store();
        assert!(store.begin_message("m-1", &message(0, 2_000), 1_000).expect("noted").is_none());
        let repeat = store.begin_message("m-1", &message(1_500, 9_000), 1_500).expect("checked");
        assert_eq!(repeat.map(|r| r.forget_at_ms), Some(2_000), "a live note is the first's");
        assert!(store.begin_message("m-1", &message(2_000, 9_000), 2_000).expect("renewed").is_none(), "expired");
    }

    #[test]
    fn expired_message_ids_are_forgotten_and_past_the_cap_the_oldest_go() {
        let (_dir, store) = store();
        for (n, created) in [10u64, 20, 30, 40].iter().enumerate() {
            store.begin_message(&format!("m-{n}"), &message(*created, 10_000), *created).expect("noted");
        }
        store.begin_message("old", &message(0, 500), 0).expect("noted");
        assert_eq!(store.forget_expired_messages(1_000, 10, 0).expect("swept"), 1, "the expired one");
        // Over a cap of 2: the two oldest go, unless younger than the minimum window.
        assert_eq!(store.forget_expired_messages(1_000, 2, 25).expect("swept"), 2);
        assert!(store.message("m-0").expect("read").is_none() && store.message("m-1").expect("read").is_none());
        assert!(store.message("m-2").expect("read").is_some());
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), 1 << 20).expect("store opens");
        (dir, store)
    }

    fn hook(run_id: &str, token: &str) -> HookRecord {
        HookRecord {
            token: token.into(),
            run_id: run_id.into(),
            number: 1,
            methods: vec![Method::Post],
            single_use: true,
            state: HookState::Open,
            auth: Default::default(),
            on_auth_failure: Default::default(),
            schema: None,
            condition: None,
            response: ResponseMode::Manual { deadline_ms: 1 },
            expires_at_ms: None,
            chosen_token: false,
        }
    }

    fn created(token: &str) -> EventRecord {
        let info = WebhookInfo { id: "wh-1".into(), token: token.into(), url: String::new() };
        event_record(1, Event::WebhookCreated { webhook: Ok(info) })
    }

    fn request_numbered(arrival: u64) -> RequestRecord {
        RequestRecord {
            id: format!("rq-{arrival}"),
            webhook: "wh-1".into(),
            method: Method::Post,
            path: "/hooks/t".into(),
            query: vec![],
            headers: vec![("x".into(), "y".into())],
            data: serde_json::json!({ "n": arrival }),
            caller: Caller::Anonymous,
            received_at_ms: 0,
        }
    }

    fn request() -> RequestRecord {
        request_numbered(1)
    }

    fn run_id() -> String {
        uuid::Uuid::now_v7().to_string()
    }

    fn take(store: &Store, run: &str) -> Option<EventRecord> {
        store
            .take_request(run, 1, |request| {
                event_record(
                    9,
                    Event::WaitEnded { index: 0, result: records::WaitOutcome::Request { request: Box::new(request) } },
                )
            })
            .expect("take")
    }

    #[test]
    fn a_token_passed_to_another_run_is_not_closed_or_fed_by_the_first() {
        let (_dir, store) = store();
        let (first, second) = (run_id(), run_id());
        let first_hook = hook(&first, "order-1");
        store.create_hook(&first_hook, &created("order-1")).expect("created");
        assert!(matches!(
            store.create_hook(&hook(&second, "order-1"), &created("order-1")),
            Err(StoreError::TokenTaken)
        ));

        assert!(matches!(store.deliver(&first_hook, &request(), false, 0), Ok(Delivery::Accepted)));
        // Used, so the token is free for the second run.
        store.create_hook(&hook(&second, "order-1"), &created("order-1")).expect("token reused");

        // The first run ends late: the second run's webhook stays open.
        store.close_hook("order-1", &first, 1, NotTakenReason::RunEnded).expect("close");
        let current = store.hook("order-1").expect("read").expect("hook");
        assert_eq!((current.run_id.as_str(), current.state), (second.as_str(), HookState::Open));
        // A caller authenticated against the first run's hook is not delivered to the second.
        assert!(matches!(store.deliver(&first_hook, &request(), false, 0), Ok(Delivery::Gone)));
        assert!(!store.has_request(&second, 1).expect("inbox"));
    }

    #[test]
    fn an_expired_hook_takes_no_call() {
        let (_dir, store) = store();
        let mut expiring = hook(&run_id(), "soon");
        expiring.expires_at_ms = Some(100);
        store.create_hook(&expiring, &created("soon")).expect("created");
        assert!(matches!(store.deliver(&expiring, &request(), false, 100), Ok(Delivery::Gone)));
        assert!(matches!(store.deliver(&expiring, &request(), false, 99), Ok(Delivery::Accepted)));
    }

    #[test]
    fn a_hook_and_its_event_are_written_together() {
        let (_dir, store) = store();
        let run = run_id();
        store.create_hook(&hook(&run, "t"), &created("t")).expect("created");
        let last = store.last_event(&run).expect("read").expect("an event");
        assert_eq!(last.event.kind(), "webhook-created");
    }

    #[test]
    fn closing_keeps_an_acknowledged_call_whole_and_only_the_identity_of_a_held_one() {
        let (_dir, store) = store();
        let run = run_id();
        let mut many = hook(&run, "many");
        many.single_use = false;
        store.create_hook(&many, &created("many")).expect("created");
        store.deliver(&many, &request_numbered(1), false, 0).expect("acknowledged");
        store.deliver(&many, &request_numbered(2), true, 0).expect("held");
        let left = store.close_hook("many", &run, 1, NotTakenReason::RunEnded).expect("closed");
        assert_eq!(left.iter().map(|e| e.held).collect::<Vec<_>>(), [false, true]);
        let kept = store.not_taken(&run).expect("listed");
        assert_eq!(kept.len(), 2);
        assert!(kept[0].acknowledged && kept[0].request.data == serde_json::json!({ "n": 1 }));
        assert!(!kept[1].acknowledged && kept[1].request.data.is_null() && kept[1].request.headers.is_empty());
        assert!(store.queued_requests(&run).expect("inbox").is_empty());
    }

    #[test]
    fn a_withdrawn_call_is_not_taken_and_a_taken_one_cannot_be_withdrawn() {
        let (_dir, store) = store();
        let run = run_id();
        let mut many = hook(&run, "many");
        many.single_use = false;
        store.create_hook(&many, &created("many")).expect("created");
        store.deliver(&many, &request_numbered(5), true, 0).expect("held");
        store.deliver(&many, &request_numbered(6), true, 0).expect("held");
        assert!(store.withdraw(&run, &Channel::Webhook(1), 5, None).expect("withdrawn"));
        let taken = take(&store, &run).expect("the next call is taken");
        let records::Event::WaitEnded { result: records::WaitOutcome::Request { request }, .. } = taken.event else {
            panic!("a delivery")
        };
        assert_eq!(request.id, "rq-6");
        assert!(!store.withdraw(&run, &Channel::Webhook(1), 6, None).expect("checked"), "already in the log");
        assert_eq!(store.not_taken(&run).expect("listed")[0].reason, NotTakenReason::TimedOut);
    }

    #[test]
    fn held_calls_are_refused_at_start_up_and_acknowledged_ones_kept() {
        let (_dir, store) = store();
        let run = run_id();
        let mut many = hook(&run, "many");
        many.single_use = false;
        store.create_hook(&many, &created("many")).expect("created");
        store.deliver(&many, &request_numbered(1), false, 0).expect("acknowledged");
        store.deliver(&many, &request_numbered(2), true, 0).expect("held");
        store.deliver_to_trigger(&run, "paid", &request_numbered(3)).expect("held at a trigger");
        assert_eq!(store.refuse_orphaned_calls().expect("refused"), 2);
        let queued = store.queued_requests(&run).expect("inbox");
        assert_eq!(queued.iter().map(|e| e.request.id.as_str()).collect::<Vec<_>>(), ["rq-1"]);
        assert!(store.not_taken(&run).expect("listed").iter().all(|n| n.reason == NotTakenReason::Restarted));
    }

    #[test]
    fn api_keys_are_created_and_revoked_whole() {
        let (_dir, store) = store();
        let key = ApiKeyRecord { name: "k".into(), roles: vec![], key_sha256: "d1".into(), created_at_ms: 0 };
        store.create_api_key(&key).expect("created");
        let same_name = ApiKeyRecord { key_sha256: "d2".into(), ..key.clone() };
        assert!(matches!(store.create_api_key(&same_name), Err(StoreError::NameTaken)));
        assert!(store.api_key("d2").expect("read").is_none(), "a refused key leaves nothing behind");
        assert!(store.revoke_api_key("k").expect("revoked"));
        assert!(store.api_key("d1").expect("read").is_none());
        assert!(!store.revoke_api_key("k").expect("checked"));
    }

    #[test]
    fn a_deeply_nested_record_reads_back() {
        let (_dir, store) = store();
        let run = run_id();
        let mut deep = serde_json::json!(1);
        for _ in 0..126 {
            deep = serde_json::json!([deep]);
        }
        let started = event_record(0, Event::Started { input: deep.clone(), start_ms: 0, seed: 0, trigger: None });
        store.append_event(&run, &started).expect("written");
        let events = store.events(&run).expect("read back past serde_json's usual limit");
        assert!(matches!(&events[0].event, Event::Started { input, .. } if *input == deep));
    }
}
