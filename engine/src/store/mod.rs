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
use records::{
    ApiKeyRecord, Event, EventRecord, HookRecord, HookState, ModuleRecord, RequestRecord, RunRecord, RunStatus,
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
    /// API keys by the sha256 of the key; `key_names` maps a name to that digest.
    api_keys: sled::Tree,
    key_names: sled::Tree,
    secrets: sled::Tree,
    /// Ids of signed messages already accepted, with when they may be forgotten.
    seen_messages: sled::Tree,
    /// Calls to named triggers, per run, until the run takes them.
    trigger_inbox: sled::Tree,
    /// Runs waiting at a module's named trigger; the value is when the wait began.
    trigger_waiters: sled::Tree,
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

fn not_a_run_id() -> StoreError {
    StoreError::Codec(serde::de::Error::custom("run id is not a uuid"))
}

fn abort(e: impl Into<StoreError>) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e.into())
}

impl Store {
    /// Opens (or creates) the store in `dir`, with sled's page cache bounded to
    /// `cache_bytes`: past it, records are read back from disk.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store> {
        let db = sled::Config::new().path(dir.join("sled")).cache_capacity(cache_bytes).open()?;
        Ok(Store {
            meta: db.open_tree("meta")?,
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
            seen_messages: db.open_tree("seen_messages")?,
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

    // --- API keys and secrets -----------------------------------------------------------

    /// Stores a new API key; a name already in use is refused.
    pub fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        let digest = key.key_sha256.as_bytes();
        if self.key_names.compare_and_swap(key.name.as_bytes(), None as Option<&[u8]>, Some(digest))?.is_err() {
            return Err(StoreError::NameTaken);
        }
        self.api_keys.insert(digest, encode(key)?)?;
        Ok(())
    }

    pub fn api_key(&self, key_sha256: &str) -> Result<Option<ApiKeyRecord>> {
        self.api_keys.get(key_sha256.as_bytes())?.map(|v| decode(&v)).transpose()
    }

    pub fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        self.api_keys.iter().values().map(|v| decode(&v?)).collect()
    }

    /// Revokes the key with this name; false if there is none.
    pub fn revoke_api_key(&self, name: &str) -> Result<bool> {
        let Some(digest) = self.key_names.remove(name.as_bytes())? else { return Ok(false) };
        self.api_keys.remove(digest)?;
        Ok(true)
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

    /// Remembers a signed message's id until `forget_at_ms`; false if it was seen already
    /// (and not yet forgotten): a replay.
    pub fn first_sighting(&self, id: &str, now_ms: u64, forget_at_ms: u64) -> Result<bool> {
        let previous = self.seen_messages.get(id.as_bytes())?;
        if let Some(until) = &previous
            && until.len() == 8
            && u64::from_be_bytes(until.as_ref().try_into().unwrap_or_default()) > now_ms
        {
            return Ok(false);
        }
        let swapped =
            self.seen_messages.compare_and_swap(id.as_bytes(), previous, Some(&forget_at_ms.to_be_bytes()[..]))?;
        Ok(swapped.is_ok())
    }

    /// Forgets the signed message ids whose replay window has passed; returns how many.
    pub fn forget_expired_messages(&self, now_ms: u64) -> Result<usize> {
        let mut forgotten = 0;
        for entry in self.seen_messages.iter() {
            let (id, until) = entry?;
            let expired = until.as_ref().try_into().map(u64::from_be_bytes).map_or(true, |at| at <= now_ms);
            // Only if unchanged: a concurrent sighting may have just renewed it.
            if expired && self.seen_messages.compare_and_swap(&id, Some(until), None::<&[u8]>)?.is_ok() {
                forgotten += 1;
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

    /// The run's newest event.
    pub fn last_event(&self, run_id: &str) -> Result<Option<EventRecord>> {
        let Some(run_key) = keys::run(run_id) else { return Ok(None) };
        self.events.scan_prefix(run_key).values().next_back().transpose()?.map(|v| decode(&v)).transpose()
    }

    pub fn append_event(&self, run_id: &str, record: &EventRecord) -> Result<()> {
        if let Some(run_key) = keys::run(run_id) {
            self.events.insert(keys::event(&run_key, record.seq), encode(record)?)?;
        }
        Ok(())
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

    /// Closes a run's webhook and drops the calls it had not delivered yet. A token that
    /// has since passed to another run's webhook is left alone.
    pub fn close_hook(&self, token: &str, run_id: &str, number: u32) -> Result<()> {
        let Some(mut hook) = self.hook(token)? else { return Ok(()) };
        if !hook.is(run_id, number) {
            return Ok(());
        }
        if hook.state != HookState::Closed {
            hook.state = HookState::Closed;
            self.hooks.insert(token.as_bytes(), encode(&hook)?)?;
        }
        if let Some(run_key) = keys::run(run_id) {
            for key in self.inbox.scan_prefix(keys::inbox_prefix(&run_key, number)).keys() {
                self.inbox.remove(key?)?;
            }
        }
        Ok(())
    }

    // --- inbox ----------------------------------------------------------------------

    /// Puts a call in the inbox of the webhook `hook` names, if that webhook still holds
    /// the token and takes calls; a single-use hook is marked used in the same
    /// transaction, so only one of two racing calls wins.
    pub fn deliver(&self, hook: &HookRecord, request: &RequestRecord, now_ms: u64) -> Result<Delivery> {
        let Some(run_key) = keys::run(&hook.run_id) else { return Ok(Delivery::Gone) };
        let inbox_key = keys::inbox(&run_key, hook.number, self.next_id()?);
        let request_bytes = encode(request)?;
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

    /// Calls accepted for a run that it has not taken yet, in arrival order per webhook.
    pub fn queued_requests(&self, run_id: &str) -> Result<Vec<RequestRecord>> {
        let Some(run_key) = keys::run(run_id) else { return Ok(Vec::new()) };
        self.inbox.scan_prefix(run_key).values().map(|v| decode(&v?)).collect()
    }

    /// Whether any call waits for the run, on any of its webhooks or named triggers.
    pub fn has_any_request(&self, run_id: &str) -> Result<bool> {
        let Some(run_key) = keys::run(run_id) else { return Ok(false) };
        Ok(self.inbox.scan_prefix(run_key).next().transpose()?.is_some()
            || self.trigger_inbox.scan_prefix(run_key).next().transpose()?.is_some())
    }

    // --- named triggers -----------------------------------------------------------------

    /// Keeps a call to a named trigger for a run (durable once flushed).
    pub fn deliver_to_trigger(&self, run_id: &str, name: &str, request: &RequestRecord) -> Result<()> {
        let run_key = keys::run(run_id).ok_or_else(not_a_run_id)?;
        self.trigger_inbox.insert(keys::trigger_inbox(&run_key, name, self.next_id()?), encode(request)?)?;
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
        make_event: impl FnOnce(RequestRecord) -> EventRecord,
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

    /// The runs waiting at a module's named trigger, longest waiting first.
    pub fn trigger_waiters(&self, module: &str, name: &str) -> Result<Vec<String>> {
        let mut waiters = Vec::new();
        for item in self.trigger_waiters.scan_prefix(keys::trigger_waiters_prefix(module, name)) {
            let (key, since) = item?;
            let since = since.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX);
            if let Some(run) = keys::trigger_waiter_run(&key) {
                waiters.push((since, run));
            }
        }
        waiters.sort();
        Ok(waiters.into_iter().map(|(_, run)| run).collect())
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
        self.take_oldest(&self.inbox, &run_key, keys::inbox_prefix(&run_key, number), make_event)
    }

    /// Moves the oldest call under `prefix` of an inbox tree into the run's log.
    fn take_oldest(
        &self,
        inbox: &sled::Tree,
        run_key: &keys::RunKey,
        prefix: Vec<u8>,
        make_event: impl FnOnce(RequestRecord) -> EventRecord,
    ) -> Result<Option<EventRecord>> {
        let Some(first) = inbox.scan_prefix(prefix).next() else { return Ok(None) };
        let (inbox_key, bytes) = first?;
        let record = make_event(decode(&bytes)?);
        let event_key = keys::event(run_key, record.seq);
        let event_bytes = encode(&record)?;
        untx((inbox, &self.events).transaction(|(inbox, events)| {
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

#[cfg(test)]
mod tests {
    use super::records::{Caller, Method, ResponseMode, WebhookInfo};
    use super::*;

    #[test]
    fn expired_message_ids_are_forgotten_and_live_ones_kept() {
        let (_dir, store) = store();
        assert!(store.first_sighting("msg-old", 1_000, 2_000).expect("noted"));
        assert!(store.first_sighting("msg-new", 1_000, 9_000).expect("noted"));
        assert_eq!(store.forget_expired_messages(5_000).expect("swept"), 1);
        assert!(!store.first_sighting("msg-new", 5_000, 9_000).expect("checked"), "still a replay");
        assert!(store.first_sighting("msg-old", 5_000, 9_000).expect("checked"), "forgotten, so new again");
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
        }
    }

    fn created(token: &str) -> EventRecord {
        let info = WebhookInfo { id: "wh-1".into(), token: token.into(), url: String::new() };
        event_record(1, Event::WebhookCreated { webhook: Ok(info) })
    }

    fn request() -> RequestRecord {
        RequestRecord {
            id: "rq-1".into(),
            webhook: "wh-1".into(),
            method: Method::Post,
            path: "/hooks/t".into(),
            query: vec![],
            headers: vec![],
            data: serde_json::json!({}),
            caller: Caller::Anonymous,
            received_at_ms: 0,
        }
    }

    fn run_id() -> String {
        uuid::Uuid::now_v7().to_string()
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

        assert!(matches!(store.deliver(&first_hook, &request(), 0), Ok(Delivery::Accepted)));
        // Used, so the token is free for the second run.
        store.create_hook(&hook(&second, "order-1"), &created("order-1")).expect("token reused");

        // The first run ends late: the second run's webhook stays open.
        store.close_hook("order-1", &first, 1).expect("close");
        let current = store.hook("order-1").expect("read").expect("hook");
        assert_eq!((current.run_id.as_str(), current.state), (second.as_str(), HookState::Open));
        // A caller authenticated against the first run's hook is not delivered to the second.
        assert!(matches!(store.deliver(&first_hook, &request(), 0), Ok(Delivery::Gone)));
        assert!(!store.has_request(&second, 1).expect("inbox"));
    }

    #[test]
    fn an_expired_hook_takes_no_call() {
        let (_dir, store) = store();
        let mut expiring = hook(&run_id(), "soon");
        expiring.expires_at_ms = Some(100);
        store.create_hook(&expiring, &created("soon")).expect("created");
        assert!(matches!(store.deliver(&expiring, &request(), 100), Ok(Delivery::Gone)));
        assert!(matches!(store.deliver(&expiring, &request(), 99), Ok(Delivery::Accepted)));
    }

    #[test]
    fn a_hook_and_its_event_are_written_together() {
        let (_dir, store) = store();
        let run = run_id();
        store.create_hook(&hook(&run, "t"), &created("t")).expect("created");
        let last = store.last_event(&run).expect("read").expect("an event");
        assert_eq!(last.event.kind(), "webhook-created");
    }
}
