//! Wasmtime: compiling and caching components, the linker, the host side of each WIT
//! interface (one file each), determinism and replay.

pub mod activations;
mod bindings;
mod context;
mod determinism;
mod egress;
mod fault;
pub mod holds;
mod journal;
mod limits;
pub mod live;
pub mod outbound;
mod redact;
mod responses;
mod sleeps;
mod steps;
mod triggers;
mod waits;
mod webhooks;

pub use egress::AllowedHosts;
pub use journal::Divergence;
pub use limits::{GuestLimits, RunQuotas};
pub use outbound::OutboundHttp;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::auth::UrlKeys;
use crate::clock::SharedClock;
use crate::ids::{ModuleName, RunId, TriggerName};
use crate::store::records::{Event, EventRecord, Failure, ModuleInfo, RunRecord, RunStatus, WaitTarget, Waiting};
use crate::store::{Claimed, Inbox, Registry, RunLog, Store, StoreError};
use bindings::{Start, Workflow, WorkflowPre};
use fault::HostFault;
use holds::Holds;
use journal::Journal;
use live::LiveRuns;
use redact::Redactor;

/// Operator settings the host calls need.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base of every URL handed out, such as `https://latch.example.com`.
    pub public_url: String,
    /// How long a waiting run keeps its instance in memory before it is dropped.
    pub hot_hold: Duration,
    /// At most this many instances are kept parked in memory at once.
    pub max_hot_runs: usize,
    pub limits: GuestLimits,
    /// Hosts a run may call with `outbound.send`, and the bounds of those calls.
    pub allow_http: AllowedHosts,
    pub outbound: outbound::OutboundLimits,
    /// How long a held caller waits for its run to take its call before the call is
    /// withdrawn and the caller answered 503.
    pub take_timeout: Duration,
    /// Runs executing at once (instances in memory), and runs that may queue for a slot.
    pub max_active_runs: usize,
    pub max_queued_runs: usize,
    /// Outside callers held at once for their runs (past it, 429).
    pub max_held_calls: usize,
    /// How long an ended run is kept before it is deleted with everything it owns.
    pub retain: Duration,
    pub quotas: RunQuotas,
}

/// What a paused run waits for: calls on these webhooks and named triggers, and to be
/// woken at `wake_at_ms` (its earliest timer or webhook expiry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    pub on: Vec<Waiting>,
    pub wake_at_ms: Option<u64>,
}

impl Wait {
    /// What a run waiting on `targets` is shown waiting on, and when it must be looked at
    /// again without a call: its earliest timer, or webhook expiry (`expiries`).
    pub fn of(targets: &[WaitTarget], expiries: impl IntoIterator<Item = Option<u64>>) -> Wait {
        let earliest = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut wake_at_ms = expiries.into_iter().fold(None, earliest);
        let mut on = Vec::new();
        for target in targets {
            match target {
                WaitTarget::Webhook { id } => on.push(Waiting::Webhook(*id)),
                WaitTarget::Trigger { name } => on.push(Waiting::Trigger(name.clone())),
                WaitTarget::Timer { at_ms } => wake_at_ms = earliest(wake_at_ms, Some(*at_ms)),
            }
        }
        Wait { on, wake_at_ms }
    }

    pub fn triggers(&self) -> impl Iterator<Item = &TriggerName> {
        self.on.iter().filter_map(|w| match w {
            Waiting::Trigger(name) => Some(name),
            Waiting::Webhook(_) => None,
        })
    }
}

/// The one writer of a run's state (its status, what it waits on, its timer, its places
/// at named triggers): the executor. The runtime reports its runs' waits here.
pub trait RunState: Send + Sync {
    /// The run is parked at `wait`; returns its record as written.
    fn parked<'a>(
        &'a self,
        run: &'a RunRecord,
        wait: &'a Wait,
    ) -> futures::future::BoxFuture<'a, Result<RunRecord, StoreError>>;
    /// The run's wait ended: it runs again; returns its record as written.
    fn resumed<'a>(
        &'a self,
        run: &'a RunRecord,
        wait: &'a Wait,
    ) -> futures::future::BoxFuture<'a, Result<RunRecord, StoreError>>;
}

/// What the engine's parts share with every host call.
pub struct Shared {
    pub store: Store,
    pub clock: SharedClock,
    pub run_state: Arc<dyn RunState>,
    pub outbound: OutboundHttp,
    pub live: LiveRuns,
    pub activations: activations::Activations,
    pub holds: Arc<Holds>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub url_keys: UrlKeys,
    pub settings: Settings,
}

impl Shared {
    pub async fn new(
        store: Store,
        clock: SharedClock,
        run_state: Arc<dyn RunState>,
        settings: Settings,
    ) -> Result<Arc<Shared>, StoreError> {
        let metrics = Arc::new(crate::metrics::Metrics::new(store.commit_latency().histogram()));
        Ok(Arc::new(Shared {
            url_keys: UrlKeys::open(&store).await?,
            metrics,
            store,
            clock,
            run_state,
            outbound: OutboundHttp::new(settings.allow_http.clone(), settings.outbound),
            live: LiveRuns::default(),
            activations: activations::Activations::new(settings.max_active_runs, settings.max_queued_runs),
            holds: Arc::new(Holds::new(settings.max_held_calls)),
            settings,
        }))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("the upload is not WebAssembly (it does not start with `\\0asm`)")]
    NotWasm,
    #[error(
        "the upload is a core WebAssembly module; Latch runs components (build for wasm32-wasip2 or run `wasm-tools component new`)"
    )]
    CoreModule,
    #[error("the component does not compile: {0}")]
    Invalid(String),
    #[error("the component does not implement the world latch:workflow/workflow@0.1.0: {0}")]
    WorldMismatch(String),
    #[error("the component's describe() failed: {0}")]
    DescribeFailed(String),
    #[error("trigger `{name}`: {problem}")]
    BadTrigger { name: String, problem: String },
    #[error("module version {0} is not stored")]
    MissingVersion(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("compiled-code cache: {0}")]
    Cache(#[from] std::io::Error),
    #[error("wasmtime: {0}")]
    Wasmtime(String),
}

fn wasmtime_error(e: wasmtime::Error) -> RuntimeError {
    RuntimeError::Wasmtime(format!("{e:#}"))
}

/// How an activation of a run ended.
#[derive(Debug)]
pub enum Outcome {
    Completed(Value),
    Failed(Failure),
    Cancelled,
    /// The run waits; its instance is gone and its log holds everything.
    Suspended,
}

/// What replaying a run's log on other code showed (an upgrade's dry run).
#[derive(Debug)]
pub enum ReplayCheck {
    /// The code made exactly the calls the log records, up to its end.
    Compatible,
    /// Where it first did otherwise.
    Diverges(Divergence),
}

pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    compiled_dir: PathBuf,
    compat: String,
    loaded: Mutex<HashMap<String, WorkflowPre<HostState>>>,
    /// The named triggers each loaded version declares.
    declared: Mutex<HashMap<String, Arc<Vec<TriggerName>>>>,
    shared: Arc<Shared>,
}

/// The state of one instance: WASI, and the run it executes with its log.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    shared: Arc<Shared>,
    run: RunRecord,
    journal: Journal,
    /// Webhooks the run created, by number (`wh-N` is entry N-1); `None` for a refused create.
    webhooks: Vec<Option<crate::store::records::WebhookInfo>>,
    delivered: HashSet<String>,
    responded: HashSet<String>,
    /// Calls claimed from the inbox whose `wait-ended` events are not written yet: their
    /// takes finish, and their held callers hear of it, at the next commit.
    claimed: Vec<Claimed>,
    /// The named triggers the run's module version declares: the only ones it may wait at.
    declared_triggers: Arc<Vec<TriggerName>>,
    /// What `patched` answered for each change id: its first answer holds.
    patches: HashMap<String, bool>,
    /// Timers the run has set so far, replayed ones included (see `RunQuotas::timers`).
    timers_set: usize,
    cpu: limits::CpuClock,
    memory: limits::MemoryCeiling,
    determinism: determinism::Determinism,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl bindings::types::Host for HostState {}

impl HostState {
    /// Writes what the run recorded, durably, before anything of it leaves the run (an
    /// outbound call, an answer, the run seen waiting, its end); then finishes the takes
    /// whose events are now written and tells their held callers.
    async fn commit(&mut self) -> Result<(), HostFault> {
        let events = self.journal.take_outbox();
        if !events.is_empty()
            && let Err(e) = self.shared.store.append(self.run.id, &events).await
        {
            // The events that took these calls may not be in the log: a later commit (the
            // run's failure) must not finish their takes, nor the run's end tell their
            // callers they were taken. They are settled as the run ends (`settle_takes`).
            for claimed in self.claimed.drain(..) {
                self.delivered.remove(&claimed.entry.request.id);
            }
            return Err(e.into());
        }
        for claimed in std::mem::take(&mut self.claimed) {
            self.shared.store.taken(self.run.id, &claimed).await?;
            self.shared.holds.taken(&claimed.entry.request.id);
        }
        Ok(())
    }
}

const WASM_MAGIC: &[u8] = b"\0asm";
const CORE_MODULE_VERSION: &[u8] = &[1, 0, 0, 0];

impl Runtime {
    pub fn new(shared: Arc<Shared>, data_dir: &std::path::Path) -> Result<Runtime, RuntimeError> {
        let settings = &shared.settings;
        let scanned = limits::memories_reset_by_scan();
        tracing::info!(
            "guest memories are reset {}",
            if scanned { "with PAGEMAP_SCAN" } else { "without PAGEMAP_SCAN (needs Linux 6.7+ and no swap)" }
        );
        let mut config = Config::new();
        config.epoch_interruption(true);
        let pool = limits::pool(settings.max_active_runs, settings.limits, scanned);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(wasmtime_error)?;
        limits::start_epoch_ticker(&engine)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(wasmtime_error)?;
        // WASI sleeps that cancellation and the CPU budget reach (see `sleeps`).
        linker.allow_shadowing(true);
        wasmtime_wasi::p2::bindings::clocks::monotonic_clock::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |state| state,
        )
        .map_err(wasmtime_error)?;
        linker.allow_shadowing(false);
        Workflow::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state).map_err(wasmtime_error)?;
        let compiled_dir = data_dir.join("compiled");
        std::fs::create_dir_all(&compiled_dir)?;
        let compat = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut hasher);
            format!("{:016x}", hasher.finish())
        };
        Ok(Runtime {
            engine,
            linker,
            compiled_dir,
            compat,
            loaded: Mutex::default(),
            declared: Mutex::default(),
            shared,
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Checks an upload, compiles it into the on-disk cache and asks it to describe itself.
    pub async fn prepare(&self, version: &str, bytes: &[u8]) -> Result<ModuleInfo, RuntimeError> {
        if !bytes.starts_with(WASM_MAGIC) {
            return Err(RuntimeError::NotWasm);
        }
        if bytes.get(4..8) == Some(CORE_MODULE_VERSION) {
            return Err(RuntimeError::CoreModule);
        }
        let pre = self.compile(version, bytes.to_vec()).await?;
        let info = self.describe(&pre).await?;
        self.cache(version, pre);
        Ok(info)
    }

    /// Compiles (once per version, in the background pool) and links a component.
    async fn compile(&self, version: &str, bytes: Vec<u8>) -> Result<WorkflowPre<HostState>, RuntimeError> {
        let path = self.compiled_dir.join(format!("{version}-{}.cwasm", self.compat));
        let version = version.to_string();
        let engine = self.engine.clone();
        let component = tokio::task::spawn_blocking(move || -> Result<Component, RuntimeError> {
            if path.exists() {
                // SAFETY: the file was written by `precompile_component` of an engine with
                // the same compatibility hash (it is in the file name), in our data dir.
                match unsafe { Component::deserialize_file(&engine, &path) } {
                    Ok(component) => return Ok(component),
                    Err(e) => tracing::warn!(%version, "cached compiled code does not load, recompiling: {e:#}"),
                }
            }
            tracing::info!(%version, "compiling module version");
            let compiled = engine.precompile_component(&bytes).map_err(|e| RuntimeError::Invalid(format!("{e:#}")))?;
            // A name of its own, so that concurrent compiles never write the same file.
            let partial = path.with_extension(format!("partial-{}", crate::auth::random_token()));
            std::fs::write(&partial, &compiled)?;
            std::fs::rename(&partial, &path)?;
            // Loaded from the file, as a restart loads it: its memory images are mapped
            // from the page cache, shared by every instance, where in-memory bytes would be
            // copied into sealed memfds (whose sealing the kernel may refuse while busy).
            // SAFETY: the file was just written from `precompile_component` above.
            unsafe { Component::deserialize_file(&engine, &path) }.map_err(wasmtime_error)
        })
        .await
        .map_err(|e| RuntimeError::Wasmtime(e.to_string()))??;
        let instance_pre =
            self.linker.instantiate_pre(&component).map_err(|e| RuntimeError::WorldMismatch(format!("{e:#}")))?;
        WorkflowPre::new(instance_pre).map_err(|e| RuntimeError::WorldMismatch(format!("{e:#}")))
    }

    fn cache(&self, version: &str, pre: WorkflowPre<HostState>) {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner()).insert(version.to_string(), pre);
    }

    /// The linked component of a module version: from memory, the disk cache, or compiled.
    async fn instance_pre(&self, version: &str) -> Result<WorkflowPre<HostState>, RuntimeError> {
        if let Some(pre) = self.loaded.lock().unwrap_or_else(|p| p.into_inner()).get(version) {
            return Ok(pre.clone());
        }
        let bytes =
            self.shared.store.blob(version).await?.ok_or_else(|| RuntimeError::MissingVersion(version.to_string()))?;
        let pre = self.compile(version, bytes).await?;
        self.cache(version, pre.clone());
        Ok(pre)
    }

    /// Instantiates a stored version afresh and asks it to describe itself: the cost of
    /// one instantiation plus a trivial call.
    pub async fn describe_version(&self, version: &str) -> Result<ModuleInfo, RuntimeError> {
        let pre = self.instance_pre(version).await?;
        self.describe(&pre).await
    }

    async fn describe(&self, pre: &WorkflowPre<HostState>) -> Result<ModuleInfo, RuntimeError> {
        let probe = RunRecord {
            id: RunId::from_bytes([0; 16]),
            module: ModuleName::parse("probe").map_err(|e| RuntimeError::DescribeFailed(e.to_string()))?,
            version: String::new(),
            status: RunStatus::Running,
            input: Value::Null,
            output: None,
            error: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            waiting_on: Vec::new(),
            wake_at_ms: None,
        };
        let journal = Journal::probe(self.redactor(""), self.shared.clock.clone());
        let (mut store, _) = self.new_store(probe, journal, Arc::default(), 0, 0);
        let instance =
            pre.instantiate_async(&mut store).await.map_err(|e| RuntimeError::DescribeFailed(format!("{e:#}")))?;
        let info =
            instance.call_describe(&mut store).await.map_err(|e| RuntimeError::DescribeFailed(format!("{e:#}")))?;
        let module = ModuleInfo {
            description: info.description,
            triggers: info.triggers.into_iter().map(triggers::trigger_from_wit).collect::<Result<Vec<_>, _>>()?,
            named_triggers: info
                .named_triggers
                .into_iter()
                .map(triggers::named_trigger_from_wit)
                .collect::<Result<Vec<_>, _>>()?,
        };
        triggers::check_distinct(&module.triggers)?;
        Ok(module)
    }

    fn redactor(&self, run_id: &str) -> Redactor {
        Redactor::new(run_id.to_string(), self.shared.url_keys.clone())
    }

    fn new_store(
        &self,
        run: RunRecord,
        journal: Journal,
        declared_triggers: Arc<Vec<TriggerName>>,
        start_ms: u64,
        seed: u64,
    ) -> (wasmtime::Store<HostState>, MemoryOutputPipe) {
        let stderr = MemoryOutputPipe::new(256 * 1024);
        let (wasi, determinism) = determinism::wasi_context(start_ms, seed, stderr.clone());
        let state = HostState {
            wasi,
            determinism,
            table: ResourceTable::new(),
            shared: self.shared.clone(),
            run,
            journal,
            webhooks: Vec::new(),
            delivered: HashSet::new(),
            responded: HashSet::new(),
            claimed: Vec::new(),
            declared_triggers,
            patches: HashMap::new(),
            timers_set: 0,
            cpu: limits::CpuClock::default(),
            memory: limits::MemoryCeiling::new(self.shared.settings.limits.memory_bytes),
        };
        let mut store = wasmtime::Store::new(&self.engine, state);
        limits::apply(&mut store, self.shared.settings.limits);
        store.data_mut().cpu.resume();
        (store, stderr)
    }

    /// Runs (replaying, then live) a run until it completes, fails or suspends, in an
    /// activation `slot`. A completion or failure is appended to the log before it is
    /// returned; the instance and the slot are given up before that write. It returns with
    /// the run's record as its waits last wrote it, so that its end needs no read.
    pub async fn execute(
        &self,
        run: RunRecord,
        (events, bytes): (Vec<EventRecord>, u64),
        slot: activations::Slot,
    ) -> (Outcome, RunRecord) {
        let Some(Event::Started { input, start_ms, seed, trigger }) = events.first().map(|e| e.event.clone()) else {
            return (Outcome::Failed(Failure::new("corrupt-log", "the run's log does not begin with `started`")), run);
        };
        let pre = match self.instance_pre(&run.version).await {
            Ok(pre) => pre,
            Err(e) => return (Outcome::Failed(Failure::new("module-unavailable", e.to_string())), run),
        };
        let declared_triggers = match self.declared_triggers(&run).await {
            Ok(names) => names,
            Err(e) => return (Outcome::Failed(Failure::new("storage", e.to_string())), run),
        };
        let quotas = self.shared.settings.quotas;
        let redactor = self.redactor(&run.id.to_string());
        let journal = Journal::new((events, bytes), redactor, self.shared.clock.clone(), quotas);
        let (mut store, stderr) = self.new_store(run, journal, declared_triggers, start_ms, seed);
        if let Some(terminal) = store.data().journal.terminal() {
            let outcome = match terminal.clone() {
                Event::Completed { output } => Outcome::Completed(output),
                Event::Failed { error } => Outcome::Failed(error),
                _ => Outcome::Cancelled,
            };
            return (outcome, store.into_data().run);
        }
        // Cancelled while it had no instance: it ends without running again.
        let outcome = if self.shared.live.is_cancelled(store.data().run.id) {
            Outcome::Cancelled
        } else {
            let start = match trigger {
                Some(request) => {
                    // The start request may be answered by the run, like any delivered call.
                    store.data_mut().delivered.insert(request.id.clone());
                    Start::Trigger(waits::request_to_wit(*request))
                }
                None => Start::Api(input.to_string()),
            };
            self.activate(&pre, &mut store, start, &stderr).await
        };
        let terminal = match &outcome {
            Outcome::Completed(output) => Event::Completed { output: output.clone() },
            Outcome::Failed(error) => Event::Failed { error: error.clone() },
            Outcome::Cancelled => Event::Cancelled,
            Outcome::Suspended => return (outcome, store.into_data().run),
        };
        // Another run may execute while this one's end is written.
        let mut state = store.into_data();
        drop(slot);
        // The outcome leaves as it was written: with URL keys replaced by placeholders.
        let ended = match state.journal.record_end(terminal) {
            Ok(Event::Completed { output }) => Outcome::Completed(output),
            Ok(Event::Failed { error }) => Outcome::Failed(error),
            Ok(_) => Outcome::Cancelled,
            Err(e) => Outcome::Failed(Failure::new(e.code(), e.to_string())),
        };
        if let Err(e) = state.commit().await {
            let failure = Failure::new(e.code(), format!("the run's end could not be written: {e}"));
            return (Outcome::Failed(failure), state.run);
        }
        // Callers still held for an answer the run will never give are told.
        for request_id in state.delivered.difference(&state.responded) {
            self.shared.holds.unanswered(request_id);
        }
        (ended, state.run)
    }

    /// Replays the run's log on the code of `version` (another version of its module)
    /// without letting anything go live: nothing is recorded, sent or answered, and the
    /// activation stops where the log ends. A run that waits is compatible when the new
    /// code reaches the same wait making the same calls on the way.
    pub async fn check_replay(
        &self,
        run: &RunRecord,
        version: &str,
        (events, bytes): (Vec<EventRecord>, u64),
    ) -> Result<ReplayCheck, RuntimeError> {
        let Some(Event::Started { input, start_ms, seed, trigger }) = events.first().map(|e| e.event.clone()) else {
            let recorded = events.first().map_or("nothing", |e| e.event.kind()).to_string();
            let asked = "a log that begins with `started`".to_string();
            return Ok(ReplayCheck::Diverges(Divergence { seq: 0, recorded, asked }));
        };
        let pre = self.instance_pre(version).await?;
        let run = RunRecord { version: version.to_string(), ..run.clone() };
        let declared_triggers = self.declared_triggers(&run).await?;
        let redactor = self.redactor(&run.id.to_string());
        let quotas = self.shared.settings.quotas;
        let journal = Journal::new((events, bytes), redactor, self.shared.clock.clone(), quotas).checking();
        let (mut store, stderr) = self.new_store(run, journal, declared_triggers, start_ms, seed);
        let start = match trigger {
            Some(request) => Start::Trigger(waits::request_to_wit(*request)),
            None => Start::Api(input.to_string()),
        };
        let slot = self.shared.activations.slot().await;
        let outcome = self.activate(&pre, &mut store, start, &stderr).await;
        drop(slot);
        let journal = &store.data().journal;
        let at = |seq: u64, asked: String| {
            let recorded = journal.recorded_kind(seq).to_string();
            ReplayCheck::Diverges(Divergence { seq, recorded, asked })
        };
        Ok(match outcome {
            Outcome::Failed(failure) if failure.code == HostFault::ReplayEnd.code() => ReplayCheck::Compatible,
            // A call of the same kind with other arguments: the event just replayed.
            Outcome::Failed(failure) if failure.code == "nondeterminism" => match journal.divergence() {
                Some(divergence) => ReplayCheck::Diverges(divergence.clone()),
                None => at(journal.next_replayed_seq().saturating_sub(1), failure.message),
            },
            Outcome::Completed(_) => at(journal.next_replayed_seq(), "to complete the run".into()),
            Outcome::Failed(failure) => {
                at(journal.next_replayed_seq(), format!("to fail the run: {} ({})", failure.message, failure.code))
            }
            Outcome::Cancelled | Outcome::Suspended => at(journal.next_replayed_seq(), "to stop".into()),
        })
    }

    /// A record of the run's as its callers see it: URL keys back in place of placeholders.
    pub fn expand_keys<T: serde::Serialize + serde::de::DeserializeOwned>(&self, run: RunId, record: T) -> T {
        self.redactor(&run.to_string()).expand_value(record)
    }

    /// The names of the named triggers the run's module version declares; a version never
    /// changes, so they are read once.
    async fn declared_triggers(&self, run: &RunRecord) -> Result<Arc<Vec<TriggerName>>, StoreError> {
        if let Some(names) = self.declared.lock().unwrap_or_else(|p| p.into_inner()).get(&run.version) {
            return Ok(names.clone());
        }
        let module = self.shared.store.module(&run.module).await?;
        let version = module.as_ref().and_then(|m| m.versions.iter().find(|v| v.version == run.version));
        let Some(version) = version else { return Ok(Arc::default()) };
        let names: Arc<Vec<TriggerName>> =
            Arc::new(version.info.named_triggers.iter().map(|t| t.name.clone()).collect());
        self.declared.lock().unwrap_or_else(|p| p.into_inner()).insert(run.version.clone(), names.clone());
        Ok(names)
    }

    /// Instantiates the component and calls its `run`, replaying then live.
    async fn activate(
        &self,
        pre: &WorkflowPre<HostState>,
        store: &mut wasmtime::Store<HostState>,
        start: Start,
        stderr: &MemoryOutputPipe,
    ) -> Outcome {
        self.shared.metrics.activated();
        let result = match pre.instantiate_async(&mut *store).await {
            Ok(instance) => instance.call_run(&mut *store, &start).await,
            Err(e) => Err(e),
        };
        outcome_of(result, store.data(), stderr)
    }
}

/// Reads a finished call to the guest's `run` as a run outcome.
fn outcome_of(
    result: wasmtime::Result<Result<String, bindings::types::Error>>,
    state: &HostState,
    stderr: &MemoryOutputPipe,
) -> Outcome {
    match result {
        Ok(returned) => {
            if let Some(event) = state.journal.unreplayed() {
                return Outcome::Failed(Failure::new(
                    "nondeterminism",
                    format!("the run returned where its log has `{}` next", event.kind()),
                ));
            }
            match returned {
                Ok(text) => match serde_json::from_str(&text) {
                    Ok(output) => Outcome::Completed(output),
                    Err(e) => Outcome::Failed(Failure::new("bad-output", format!("run returned invalid JSON: {e}"))),
                },
                Err(e) => Outcome::Failed(Failure::new(e.code, e.message)),
            }
        }
        Err(error) => match error.downcast_ref::<HostFault>() {
            Some(HostFault::Suspend) => Outcome::Suspended,
            Some(HostFault::Cancelled) => Outcome::Cancelled,
            Some(fault) => Outcome::Failed(Failure::new(fault.code(), fault.to_string())),
            None => {
                let printed = String::from_utf8_lossy(&stderr.contents()).trim().to_string();
                let message = if printed.is_empty() { format!("{error:#}") } else { format!("{printed}\n{error:#}") };
                Outcome::Failed(Failure::new("trap", message))
            }
        },
    }
}
