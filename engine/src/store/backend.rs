//! The store the engine holds: one of the backends, chosen when the server starts (sled by
//! default, PostgreSQL with `--database-url`). Every call is passed to the backend.

use std::path::Path;

use super::records::{
    ApiKeyRecord, EventRecord, HookRecord, IdempotencyRecord, InboxEntry, ModuleRecord, NotTakenReason, NotTakenRecord,
    RequestRecord, RunRecord,
};
use super::{
    Channel, Claimed, CommitLatency, Delivery, DueTimers, Inbox, PgStore, Registry, Result, RunLog, RunPage, RunQuery,
    SledStore, Timers, Unreadable, Written,
};
use crate::ids::{KeyName, ModuleName, RunId, Token, TriggerName, WebhookId};

#[derive(Clone)]
pub enum Store {
    Sled(SledStore),
    Postgres(PgStore),
}

impl Store {
    /// The embedded store in `dir` (see `SledStore::open`).
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store> {
        SledStore::open(dir, cache_bytes).map(Store::Sled)
    }

    /// The database at `url` (see `PgStore::connect`).
    pub async fn connect(url: &str) -> Result<Store> {
        PgStore::connect(url).await.map(Store::Postgres)
    }

    /// How long the backend's durable commits take.
    pub fn commit_latency(&self) -> &CommitLatency {
        match self {
            Store::Sled(store) => store.commit_latency(),
            Store::Postgres(store) => store.commit_latency(),
        }
    }
}

/// Each method passed to the backend's own.
macro_rules! delegate {
    ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(
            async fn $name(&self $(, $arg: $ty)*) -> $ret {
                match self {
                    Store::Sled(store) => store.$name($($arg),*).await,
                    Store::Postgres(store) => store.$name($($arg),*).await,
                }
            }
        )*
    };
}

impl RunLog for Store {
    delegate! {
        fn create_run(&self, run: &RunRecord, started: &EventRecord) -> Result<()>;
        fn run(&self, id: RunId) -> Result<Option<RunRecord>>;
        fn put_run(&self, run: &RunRecord) -> Result<()>;
        fn runs(&self) -> Result<(Vec<RunRecord>, Vec<Unreadable>)>;
        fn run_page(&self, query: &RunQuery) -> Result<RunPage>;
        fn events(&self, id: RunId) -> Result<(Vec<EventRecord>, u64)>;
        fn readable_events(&self, id: RunId) -> Result<(Vec<EventRecord>, Vec<Unreadable>)>;
        fn append(&self, id: RunId, events: &[EventRecord]) -> Result<()>;
        fn webhooks_of(&self, id: RunId) -> Result<Vec<(Token, WebhookId)>>;
        fn finished_before(&self, before_ms: u64) -> Result<Vec<RunId>>;
        fn delete_run(&self, id: RunId) -> Result<()>;
        fn request_cancel(&self, id: RunId) -> Result<()>;
        fn cancel_requested(&self, id: RunId) -> Result<bool>;
        fn clear_cancel(&self, id: RunId) -> Result<()>;
    }
}

impl Inbox for Store {
    delegate! {
        fn create_hook(&self, hook: &HookRecord, now_ms: u64) -> Result<()>;
        fn hook(&self, token: &Token) -> Result<Option<HookRecord>>;
        fn close_hook(&self, token: &Token, run: RunId, webhook: WebhookId, reason: NotTakenReason, now_ms: u64) -> Result<Vec<InboxEntry>>;
        fn settle_takes(&self, run: RunId) -> Result<Vec<String>>;
        fn deliver(&self, hook: &HookRecord, request: &RequestRecord, held: bool, now_ms: u64, written: &Written<'_>) -> Result<Delivery>;
        fn deliver_to_trigger(&self, run: RunId, name: &TriggerName, request: &RequestRecord) -> Result<()>;
        fn first_arrival(&self, run: RunId, channels: &[Channel]) -> Result<Option<Channel>>;
        fn claim(&self, run: RunId, channel: &Channel) -> Result<Option<Claimed>>;
        fn taken(&self, run: RunId, claimed: &Claimed) -> Result<()>;
        fn withdraw(&self, run: RunId, channel: &Channel, request: &RequestRecord, now_ms: u64) -> Result<bool>;
        fn queued(&self, run: RunId) -> Result<Vec<InboxEntry>>;
        fn queued_load(&self, run: RunId) -> Result<(usize, u64)>;
        fn has_any_request(&self, run: RunId) -> Result<bool>;
        fn not_taken(&self, run: RunId) -> Result<Vec<NotTakenRecord>>;
        fn refuse_trigger_calls(&self, run: RunId, reason: NotTakenReason, now_ms: u64) -> Result<Vec<InboxEntry>>;
        fn repair_inbox(&self, now_ms: u64) -> Result<usize>;
        fn add_trigger_waiter(&self, module: &ModuleName, name: &TriggerName, run: RunId, since: u64) -> Result<()>;
        fn remove_trigger_waiter(&self, module: &ModuleName, name: &TriggerName, run: RunId) -> Result<()>;
        fn trigger_waiters(&self, module: &ModuleName, name: &TriggerName) -> Result<Vec<(RunId, u64)>>;
        fn claim_trigger_waiter(&self, module: &ModuleName, name: &TriggerName, run: RunId) -> Result<bool>;
    }
}

impl Timers for Store {
    delegate! {
        fn add_timer(&self, due_ms: u64, run: RunId) -> Result<()>;
        fn remove_timer(&self, due_ms: u64, run: RunId) -> Result<()>;
        fn due_timers(&self, now_ms: u64) -> Result<DueTimers>;
        fn has_timer(&self, due_ms: u64, run: RunId) -> Result<bool>;
    }
}

impl Registry for Store {
    delegate! {
        fn meta(&self, key: &str) -> Result<Option<String>>;
        fn set_meta(&self, key: &str, value: &str) -> Result<()>;
        fn next_id(&self) -> Result<u64>;
        fn close(&self) -> Result<()>;
        fn module(&self, name: &ModuleName) -> Result<Option<ModuleRecord>>;
        fn modules(&self) -> Result<Vec<ModuleRecord>>;
        fn put_module(&self, module: &ModuleRecord) -> Result<()>;
        fn blob(&self, version: &str) -> Result<Option<Vec<u8>>>;
        fn put_blob(&self, version: &str, bytes: &[u8]) -> Result<()>;
        fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()>;
        fn api_key(&self, key_sha256: &str) -> Result<Option<ApiKeyRecord>>;
        fn api_keys(&self) -> Result<Vec<ApiKeyRecord>>;
        fn revoke_api_key(&self, name: &KeyName) -> Result<bool>;
        fn put_secret(&self, name: &KeyName, value: &str) -> Result<bool>;
        fn secret(&self, name: &KeyName) -> Result<Option<String>>;
        fn secret_names(&self) -> Result<Vec<String>>;
        fn delete_secret(&self, name: &KeyName) -> Result<bool>;
        fn listen_for_sample(&self, module: &ModuleName, trigger: &str) -> Result<()>;
        fn take_listening(&self, module: &ModuleName, trigger: &str) -> Result<bool>;
        fn put_sample(&self, module: &ModuleName, trigger: &str, sample: &serde_json::Value) -> Result<()>;
        fn sample(&self, module: &ModuleName, trigger: &str) -> Result<Option<serde_json::Value>>;
        fn begin_message(&self, key: &str, record: &IdempotencyRecord, now_ms: u64) -> Result<Option<IdempotencyRecord>>;
        fn message(&self, key: &str) -> Result<Option<IdempotencyRecord>>;
        fn put_message(&self, key: &str, record: &IdempotencyRecord) -> Result<()>;
        fn forget_message(&self, key: &str) -> Result<()>;
        fn forget_expired_messages(&self, now_ms: u64, max_kept: usize, keep_after_ms: u64) -> Result<usize>;
    }
}
