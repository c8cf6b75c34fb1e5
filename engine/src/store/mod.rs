//! Durable state in sled: typed records in, typed records out. This is the only code that
//! knows tree names, key layouts and encodings.

mod group_commit;
mod keys;
pub mod records;

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use group_commit::GroupCommit;
use records::{Event, EventRecord, HookRecord, HookState, ModuleRecord, RequestRecord, RunRecord, RunStatus};

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

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    commit: GroupCommit,
    meta: sled::Tree,
    modules: sled::Tree,
    blobs: sled::Tree,
    runs: sled::Tree,
    events: sled::Tree,
    hooks: sled::Tree,
    inbox: sled::Tree,
    timers: sled::Tree,
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(value)?)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    Ok(serde_json::from_slice(bytes)?)
}

/// Turns a transaction's outcome back into our error type.
fn untx<T>(result: std::result::Result<T, TransactionError<StoreError>>) -> Result<T> {
    result.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    })
}

fn abort(e: impl Into<StoreError>) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e.into())
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store> {
        let db = sled::Config::new().path(dir.join("sled")).open()?;
        Ok(Store {
            meta: db.open_tree("meta")?,
            modules: db.open_tree("modules")?,
            blobs: db.open_tree("blobs")?,
            runs: db.open_tree("runs")?,
            events: db.open_tree("events")?,
            hooks: db.open_tree("hooks")?,
            inbox: db.open_tree("inbox")?,
            timers: db.open_tree("timers")?,
            commit: GroupCommit::start(db.clone())?,
            db,
        })
    }

    /// Makes every write so far durable. Concurrent callers share one fsync.
    pub async fn flush(&self) -> Result<()> {
        self.commit.flush().await.map_err(StoreError::Flush)
    }

    /// A process-wide unique, increasing number (ids of requests, arrival order).
    pub fn next_id(&self) -> Result<u64> {
        Ok(self.db.generate_id()?)
    }

    // --- meta -----------------------------------------------------------------------

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self.meta.get(key)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.meta.insert(key, value.as_bytes())?;
        Ok(())
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
        let Some(run_key) = keys::run(&run.id) else {
            return Err(StoreError::Codec(serde::de::Error::custom("run id is not a uuid")));
        };
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

    /// Every run, oldest first, optionally only those with one status.
    pub fn runs(&self, status: Option<RunStatus>) -> Result<Vec<RunRecord>> {
        let mut out = Vec::new();
        for item in self.runs.iter() {
            let (_, bytes) = item?;
            let run: RunRecord = decode(&bytes)?;
            if status.is_none_or(|s| s == run.status) {
                out.push(run);
            }
        }
        Ok(out)
    }

    // --- events ---------------------------------------------------------------------

    pub fn events(&self, run_id: &str) -> Result<Vec<EventRecord>> {
        let Some(run_key) = keys::run(run_id) else { return Ok(Vec::new()) };
        self.events.scan_prefix(run_key).values().map(|v| decode(&v?)).collect()
    }

    pub fn append_event(&self, run_id: &str, record: &EventRecord) -> Result<()> {
        if let Some(run_key) = keys::run(run_id) {
            self.events.insert(keys::event(&run_key, record.seq), encode(record)?)?;
        }
        Ok(())
    }

    // --- hooks ----------------------------------------------------------------------

    /// Registers a webhook under its token; a token already live is refused.
    pub fn insert_hook(&self, hook: &HookRecord) -> Result<()> {
        let bytes = encode(hook)?;
        let previous = self.hooks.get(hook.token.as_bytes())?;
        if let Some(previous) = &previous {
            let previous: HookRecord = decode(previous)?;
            if previous.state == HookState::Open {
                return Err(StoreError::TokenTaken);
            }
        }
        self.hooks.compare_and_swap(hook.token.as_bytes(), previous, Some(bytes))?.map_err(|_| StoreError::TokenTaken)
    }

    pub fn hook(&self, token: &str) -> Result<Option<HookRecord>> {
        self.hooks.get(token.as_bytes())?.map(|v| decode(&v)).transpose()
    }

    /// Closes a webhook and drops the calls it had not delivered yet.
    pub fn close_hook(&self, token: &str) -> Result<()> {
        let Some(mut hook) = self.hook(token)? else { return Ok(()) };
        if hook.state != HookState::Closed {
            hook.state = HookState::Closed;
            self.hooks.insert(token.as_bytes(), encode(&hook)?)?;
        }
        if let Some(run_key) = keys::run(&hook.run_id) {
            for key in self.inbox.scan_prefix(keys::inbox_prefix(&run_key, hook.number)).keys() {
                self.inbox.remove(key?)?;
            }
        }
        Ok(())
    }

    // --- inbox ----------------------------------------------------------------------

    /// Puts a call in its run's inbox, if the hook still takes calls; a single-use hook
    /// is marked used in the same transaction, so only one of two racing calls wins.
    pub fn deliver(&self, token: &str, request: &RequestRecord) -> Result<Delivery> {
        let Some(hook) = self.hook(token)? else { return Ok(Delivery::Gone) };
        let Some(run_key) = keys::run(&hook.run_id) else { return Ok(Delivery::Gone) };
        let inbox_key = keys::inbox(&run_key, hook.number, self.next_id()?);
        let request_bytes = encode(request)?;
        untx((&self.hooks, &self.inbox).transaction(|(hooks, inbox)| {
            let Some(current) = hooks.get(token.as_bytes())? else { return Ok(Delivery::Gone) };
            let mut current: HookRecord = decode(&current).map_err(abort)?;
            if current.state != HookState::Open {
                return Ok(Delivery::Gone);
            }
            if current.single_use {
                current.state = HookState::Used;
                hooks.insert(token.as_bytes(), encode(&current).map_err(abort)?)?;
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

    /// Whether any call waits for the run, on any of its webhooks.
    pub fn has_any_request(&self, run_id: &str) -> Result<bool> {
        let Some(run_key) = keys::run(run_id) else { return Ok(false) };
        Ok(self.inbox.scan_prefix(run_key).next().transpose()?.is_some())
    }

    /// Takes the oldest call on a run's webhook and records its delivery as the event
    /// `make_event` builds, in one transaction: a call is either in the inbox or in the log.
    pub fn take_request(
        &self,
        run_id: &str,
        number: u32,
        make_event: impl FnOnce(RequestRecord) -> EventRecord,
    ) -> Result<Option<EventRecord>> {
        let Some(run_key) = keys::run(run_id) else { return Ok(None) };
        let Some(first) = self.inbox.scan_prefix(keys::inbox_prefix(&run_key, number)).next() else {
            return Ok(None);
        };
        let (inbox_key, bytes) = first?;
        let record = make_event(decode(&bytes)?);
        let event_key = keys::event(&run_key, record.seq);
        let event_bytes = encode(&record)?;
        untx((&self.inbox, &self.events).transaction(|(inbox, events)| {
            inbox.remove(&inbox_key)?;
            events.insert(event_key.as_slice(), event_bytes.as_slice())?;
            Ok(())
        }))?;
        Ok(Some(record))
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

/// Builds an event record stamped with the current time.
pub fn event_record(seq: u64, event: Event) -> EventRecord {
    EventRecord { seq, at_ms: crate::clock::now_ms(), event }
}
