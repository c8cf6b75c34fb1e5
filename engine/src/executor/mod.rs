//! Run lifecycle: uploading modules, starting runs, delivering calls, driving runs
//! (through the runtime) until they complete, fail or suspend, timers, and recovery
//! after a restart.

mod admin;
mod inbound;
mod run_state;
mod timers;
mod upgrade;

pub use admin::{RunView, WaitingView};
pub use inbound::{Answer, Execution, Incoming, MESSAGE_WINDOW, query_object};
pub use run_state::RunStateWriter;
pub use upgrade::{RunUpgrade, Selection, UpgradeResult};

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::auth::callers::{AuthError, Refusal};
use crate::ids::{BadName, ModuleName, RunId, TriggerName};
use crate::json::JsonError;
use crate::runtime::{Outcome, Runtime, RuntimeError, Shared, Wait};
use crate::store::records::{
    Event, Failure, InboxEntry, Method, ModuleRecord, ModuleVersion, NotTakenReason, RequestRecord, RunRecord,
    RunStatus, WaitTarget, Waiting,
};
use crate::store::{Inbox, Registry, RunLog, StoreError, event_record};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A name that is not one (the message says which and why).
    #[error(transparent)]
    BadName(#[from] BadName),
    #[error(transparent)]
    BadModuleName(BadName),
    #[error("{0}")]
    NameTaken(String),
    #[error("no key is named `{0}`")]
    UnknownKey(String),
    #[error("no secret is named `{0}`")]
    UnknownSecret(String),
    #[error("no module named `{0}`")]
    UnknownModule(String),
    #[error("no webhook has this token")]
    UnknownWebhook,
    #[error("{0}")]
    UnknownTrigger(String),
    #[error("{0}")]
    Gone(String),
    #[error("no run with id `{0}`")]
    UnknownRun(String),
    #[error("no live run `{0}` of this module")]
    UnknownExecution(String),
    #[error("no run of `{0}` waits at trigger `{1}`")]
    NothingWaiting(String, String),
    #[error("run `{0}` has already ended ({1})")]
    Ended(String, &'static str),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("this webhook takes callers with its own credential, at its URL")]
    AuthMismatch,
    #[error("this URL does not take that method")]
    MethodNotAllowed(Vec<Method>),
    #[error(transparent)]
    Json(#[from] JsonError),
    #[error("{what}: {}", failures.join("; "))]
    SchemaMismatch { what: String, failures: Vec<String> },
    #[error("{}; the call was not delivered", .0.describe())]
    NotTaken(NotTakenReason),
    #[error("the run did not respond within {0} ms; the call was delivered")]
    ResponseTimeout(u32),
    #[error("the run ended without answering; the call was delivered")]
    NoAnswer,
    #[error("this message id was used before for a different call")]
    MessageReused,
    #[error("the server is busy: too many runs wait to execute; retry later")]
    Overloaded,
    #[error("the run took the call, but it could not be confirmed on disk")]
    Undurable,
    #[error("{0}; retry later")]
    InboxFull(String),
    #[error("`{0}` is no version of module `{1}`")]
    UnknownVersion(String, String),
    #[error("version `{0}` belongs to module `{1}`: a run moves only between versions of its own module")]
    VersionOfAnotherModule(String, String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<AuthError> for ExecError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Refused(refusal) => ExecError::Refused(refusal),
            AuthError::Store(e) => ExecError::Store(e),
        }
    }
}

/// How long `cancel` waits for the run's driver to end it before answering.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// How a run ended.
enum End {
    Completed(Value),
    Failed(Failure),
    Cancelled,
}

pub fn status_name(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Running => "running",
        RunStatus::Waiting => "waiting",
        RunStatus::Completed => "completed",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
    }
}

/// The pauses before a run's end tries again to close what it left; the last one repeats.
const CLOSE_RETRY_PAUSES: [Duration; 4] =
    [Duration::from_millis(100), Duration::from_millis(400), Duration::from_millis(1600), Duration::from_secs(5)];

pub struct Executor {
    runtime: Runtime,
    shared: Arc<Shared>,
    run_state: Arc<RunStateWriter>,
    /// Uploads read, extend and write a module's record: one at a time.
    uploads: tokio::sync::Mutex<()>,
}

/// Releases a run's driver slot however the driver ends, panics included, so the run can
/// be driven again.
struct DriverGuard<'a> {
    shared: &'a Shared,
    run: RunId,
    armed: bool,
}

impl Drop for DriverGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.live.release(self.run);
        }
    }
}

impl Executor {
    pub fn new(runtime: Runtime, run_state: Arc<RunStateWriter>) -> Arc<Executor> {
        let shared = runtime.shared().clone();
        Arc::new(Executor { runtime, shared, run_state, uploads: tokio::sync::Mutex::new(()) })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.shared.metrics
    }

    fn now_ms(&self) -> u64 {
        self.shared.clock.now_ms()
    }

    /// Stores a module version (idempotent for identical bytes). Returns the version and
    /// whether it is new.
    pub async fn upload(&self, name: &str, bytes: &[u8]) -> Result<(ModuleVersion, bool), ExecError> {
        let name = ModuleName::parse(name).map_err(ExecError::BadModuleName)?;
        let _one_at_a_time = self.uploads.lock().await;
        let store = &self.shared.store;
        let version = hex::encode(Sha256::digest(bytes));
        let mut module =
            store.module(&name).await?.unwrap_or_else(|| ModuleRecord { name: name.clone(), versions: Vec::new() });
        if let Some(latest) = module.latest().filter(|v| v.version == version) {
            return Ok((latest.clone(), false));
        }
        let info = self.runtime.prepare(&version, bytes).await?;
        let uploaded_at_ms = self.now_ms();
        let entry = ModuleVersion { version: version.clone(), size: bytes.len() as u64, uploaded_at_ms, info };
        // The bytes before the record that names them.
        store.put_blob(&version, bytes).await?;
        module.versions.push(entry.clone());
        store.put_module(&module).await?;
        Ok((entry, true))
    }

    /// Creates a run on the latest version of `module` (as `module()` read it), durably,
    /// and starts driving it.
    pub async fn start_run(self: &Arc<Self>, module: &ModuleRecord, input: Value) -> Result<RunRecord, ExecError> {
        self.create_run(module, RunId::new(), input, None).await
    }

    /// Creates run `run_id` from a call to one of the module's triggers (the run's start is
    /// that request).
    async fn start_run_as(
        self: &Arc<Self>,
        module_name: &ModuleName,
        run_id: RunId,
        input: Value,
        trigger: RequestRecord,
    ) -> Result<RunRecord, ExecError> {
        let unknown = || ExecError::UnknownModule(module_name.to_string());
        let module = self.shared.store.module(module_name).await?.ok_or_else(unknown)?;
        self.create_run(&module, run_id, input, Some(trigger)).await
    }

    async fn create_run(
        self: &Arc<Self>,
        module: &ModuleRecord,
        run_id: RunId,
        input: Value,
        trigger: Option<RequestRecord>,
    ) -> Result<RunRecord, ExecError> {
        self.admit_work()?;
        let store = &self.shared.store;
        let version = module.latest().ok_or_else(|| ExecError::UnknownModule(module.name.to_string()))?;
        let now = self.now_ms();
        let run = RunRecord {
            id: run_id,
            module: module.name.clone(),
            version: version.version.clone(),
            status: RunStatus::Running,
            input: input.clone(),
            output: None,
            error: None,
            created_at_ms: now,
            updated_at_ms: now,
            waiting_on: Vec::new(),
            wake_at_ms: None,
        };
        let trigger = trigger.map(Box::new);
        let started = event_record(0, now, Event::Started { input, start_ms: now, seed: rand::random(), trigger });
        store.create_run(&run, &started).await?;
        self.shared.metrics.run_started();
        self.wake(run.id);
        Ok(run)
    }

    /// The runs waiting at a module's named trigger now, longest waiting first, with when
    /// each began to. Entries left behind by a crash (the run moved on) are dropped here.
    pub async fn trigger_waiters(
        &self,
        module: &ModuleName,
        name: &TriggerName,
    ) -> Result<Vec<(RunRecord, u64)>, ExecError> {
        let store = &self.shared.store;
        let mut waiting = Vec::new();
        for (run_id, since) in store.trigger_waiters(module, name).await? {
            let run = match store.run(run_id).await {
                Ok(run) => run,
                // An unreadable run is passed over: it holds up no other run waiting here.
                Err(e @ StoreError::Codec(_)) => {
                    tracing::error!(run = %run_id, "a run waiting at a trigger cannot be read: {e}");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            match run {
                Some(run) if !run.status.is_terminal() => {
                    // Registered only once its status says it waits here; a run between
                    // two waits is passed over, not forgotten.
                    let waits_here = run.waiting_on.iter().any(|w| *w == Waiting::Trigger(name.clone()));
                    if run.status == RunStatus::Waiting && waits_here {
                        waiting.push((run, since));
                    }
                }
                _ => store.remove_trigger_waiter(module, name, run_id).await?,
            }
        }
        Ok(waiting)
    }

    /// Refuses new work from outside while too many runs wait to execute.
    fn admit_work(&self) -> Result<(), ExecError> {
        if self.shared.activations.has_room() { Ok(()) } else { Err(ExecError::Overloaded) }
    }

    /// Makes sure the run makes progress: wakes its driver, or starts one.
    pub fn wake(self: &Arc<Self>, run: RunId) {
        if self.shared.live.claim_or_notify(run) {
            let executor = self.clone();
            tokio::spawn(async move { executor.drive(run).await });
        }
    }

    /// Executes the run until it completes, fails or suspends. The caller holds the
    /// run's driver slot.
    // Only the run's id is recorded: a span is made for every activation.
    #[tracing::instrument(name = "run", skip_all, fields(run = %run_id))]
    async fn drive(&self, run_id: RunId) {
        let mut guard = DriverGuard { shared: &self.shared, run: run_id, armed: true };
        // Past the cap of runs executing at once, it waits its turn here.
        let slot = self.shared.activations.slot().await;
        let store = &self.shared.store;
        let run = match store.run(run_id).await {
            Ok(Some(run)) if !run.status.is_terminal() => run,
            Ok(_) => return,
            Err(e) => {
                tracing::error!(run = %run_id, "cannot load run: {e}");
                return;
            }
        };
        let events = match store.events(run_id).await {
            Ok(events) => events,
            Err(e) => {
                // It can never be driven: it fails, instead of staying `running` for ever.
                tracing::error!(run = %run_id, "cannot read the run's log: {e}");
                let failure = Failure::new("unreadable-log", format!("the run's log cannot be read: {e}"));
                // Its end may take retries: it holds no slot meanwhile.
                drop(slot);
                self.finish(run, End::Failed(failure)).await;
                return;
            }
        };
        let (outcome, run) = self.runtime.execute(run, events, slot).await;
        let end = match outcome {
            // The wait that suspended already handed the driver slot back.
            Outcome::Suspended => {
                guard.armed = false;
                return;
            }
            Outcome::Completed(output) => End::Completed(output),
            Outcome::Failed(failure) => End::Failed(failure),
            Outcome::Cancelled => End::Cancelled,
        };
        self.finish(run, end).await;
    }

    /// Ends a run: a cancellation that arrives while it has no instance is carried out by
    /// a driver started for it, which stops before running any guest code. A running or
    /// parked driver stops at its next tick or wake-up.
    pub async fn cancel(self: &Arc<Self>, run_id: &str) -> Result<RunRecord, ExecError> {
        let id = RunId::parse(run_id).map_err(|_| ExecError::UnknownRun(run_id.to_string()))?;
        let store = &self.shared.store;
        let run = store.run(id).await?.ok_or_else(|| ExecError::UnknownRun(run_id.to_string()))?;
        if run.status.is_terminal() {
            return Err(ExecError::Ended(run.id.to_string(), status_name(run.status)));
        }
        // Durable before the answer: a restart carries the cancellation out.
        store.request_cancel(id).await?;
        self.shared.live.cancel(id);
        self.wake(id);
        let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
        loop {
            let run = store.run(id).await?.ok_or_else(|| ExecError::UnknownRun(run_id.to_string()))?;
            if run.status.is_terminal() {
                // It may have ended on its own before the request reached it.
                self.shared.live.cancel_done(id);
                store.clear_cancel(id).await?;
            }
            // The end is durable once written: the run's log has its terminal event.
            if run.status.is_terminal() || tokio::time::Instant::now() >= deadline {
                return Ok(run);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Records a run's end in its record and clears what it left: its webhooks close, its
    /// timer and places at named triggers go. Its log already ends (durably) with its
    /// terminal event, so a crash half-way is repaired by recovery, which comes here again.
    async fn finish(&self, mut run: RunRecord, end: End) {
        let store = &self.shared.store;
        match end {
            End::Completed(output) => {
                run.status = RunStatus::Completed;
                run.output = Some(output);
            }
            End::Failed(failure) => {
                tracing::warn!(run = %run.id, code = %failure.code, "run failed: {}", failure.message);
                self.shared.metrics.run_failed(&failure.code);
                run.status = RunStatus::Failed;
                run.error = Some(failure);
            }
            End::Cancelled => run.status = RunStatus::Cancelled,
        }
        // The record is the one the run's waits wrote last: what it still waits on goes.
        let wait = Wait { on: std::mem::take(&mut run.waiting_on), wake_at_ms: run.wake_at_ms.take() };
        run.updated_at_ms = self.now_ms();
        // Its timer and places at named triggers go first: no call is handed to it while
        // its webhooks close (which may take retries). Each step is tried whatever became of
        // the others.
        if let Err(e) = self.run_state.clear_wait(&run, &wait).await {
            tracing::error!(run = %run.id, "cannot clear the run's wait: {e}");
        }
        // Its webhooks close before its end is recorded: an ended run has none open (a crash
        // in between is repaired by recovery, which comes here again).
        self.close_leftovers(run.id).await;
        if let Err(e) = store.clear_cancel(run.id).await {
            tracing::error!(run = %run.id, "cannot clear the run's cancellation: {e}");
        }
        if let Err(e) = store.put_run(&run).await {
            tracing::error!(run = %run.id, "cannot record the run's end: {e}");
        }
        self.shared.live.cancel_done(run.id);
        self.shared.metrics.run_ended(status_name(run.status));
        // A call that reached a named trigger while the run was ending finds it ended now.
        match store.refuse_trigger_calls(run.id, NotTakenReason::RunEnded, self.now_ms()).await {
            Ok(late) => {
                inbound::held(late).for_each(|request| self.shared.holds.refused(&request.id, NotTakenReason::RunEnded))
            }
            Err(e) => tracing::error!(run = %run.id, "cannot refuse calls that came late: {e}"),
        }
    }

    /// Closes what a run left as it ends, trying again for as long as the store fails in a
    /// way that may pass (a lost connection, a lock timeout): a webhook left open would
    /// take calls for a run that will never take them, and recovery does not come back to
    /// an ended run. Meanwhile the run is not shown ended, and its driver stays: a call
    /// that wakes it starts no other.
    async fn close_leftovers(&self, run: RunId) {
        let mut attempt = 0;
        loop {
            let failed = match self.refuse_leftovers(run).await {
                Ok(()) => return,
                Err(e) => e,
            };
            // A record that cannot be read cannot take calls either: nothing to wait for.
            if !matches!(failed, StoreError::Unavailable(_)) {
                tracing::error!(run = %run, "cannot close what the run left: {failed}");
                return;
            }
            let pause = CLOSE_RETRY_PAUSES[attempt.min(CLOSE_RETRY_PAUSES.len() - 1)];
            attempt += 1;
            tracing::warn!(run = %run, attempt, "closing what the run left failed, trying again: {failed}");
            tokio::time::sleep(pause).await;
        }
    }

    /// Closes a run's webhooks as it ends. What it did not take stays listed as not taken;
    /// callers still held (on many-call webhooks, at named triggers) are told.
    async fn refuse_leftovers(&self, run: RunId) -> Result<(), StoreError> {
        let store = &self.shared.store;
        let now = self.now_ms();
        // Each is closed whatever became of the others: one left open would take calls
        // for a run that will never take them.
        let mut failed = None;
        // A take its last commit left unfinished is settled first: its call, if not in the
        // log, is closed with the rest.
        match store.settle_takes(run).await {
            // In the run's log, and the run ends: their held callers hear so.
            Ok(taken) => taken.iter().for_each(|id| self.shared.holds.unanswered(id)),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
        let mut left = Vec::new();
        let mut keep = |closed: Result<Vec<InboxEntry>, StoreError>| match closed {
            Ok(refused) => left.extend(refused),
            Err(e) => {
                failed.get_or_insert(e);
            }
        };
        keep(store.refuse_trigger_calls(run, NotTakenReason::RunEnded, now).await);
        match store.webhooks_of(run).await {
            Ok(webhooks) => {
                for (token, webhook) in webhooks {
                    keep(store.close_hook(&token, run, webhook, NotTakenReason::RunEnded, now).await);
                }
            }
            // The callers refused above are still told.
            Err(e) => keep(Err(e)),
        }
        for request in inbound::held(left) {
            self.shared.holds.refused(&request.id, NotTakenReason::RunEnded);
        }
        failed.map_or(Ok(()), Err)
    }

    /// After a start: repairs the inbox (takes a crash cut short, held calls whose callers
    /// are gone), then drives every run that has something to do: a run that was running,
    /// and a parked one with a call it had not taken. A run parked per its log is shown
    /// waiting again; its calls and timers wake it.
    pub async fn recover(self: &Arc<Self>) -> Result<usize, ExecError> {
        let store = &self.shared.store;
        let orphaned = store.repair_inbox(self.now_ms()).await?;
        if orphaned > 0 {
            tracing::info!(orphaned, "calls whose callers were held when the server stopped were not delivered");
        }
        let mut resumed = 0;
        // An unreadable run record is reported by the listing and skipped: it stops no other.
        let (runs, _unreadable) = store.runs().await?;
        for run in runs.into_iter().filter(|run| !run.status.is_terminal()) {
            // A run whose records cannot be read is driven too: it fails, alone.
            let due = self.recover_run(&run).await.unwrap_or_else(|e| {
                tracing::error!(run = %run.id, "cannot recover the run: {e}");
                true
            });
            if due {
                self.wake(run.id);
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// Whether a run must be driven after a start; a parked one is shown waiting again.
    async fn recover_run(&self, run: &RunRecord) -> Result<bool, ExecError> {
        let store = &self.shared.store;
        if store.cancel_requested(run.id).await? {
            self.shared.live.cancel(run.id);
            return Ok(true);
        }
        // The whole log is read, not its last event: a run whose log cannot be read is
        // driven now, and fails alone, rather than when a call finds it.
        let Ok((events, _)) = store.events(run.id).await else { return Ok(true) };
        let events: Vec<Event> = events.into_iter().map(|e| e.event).collect();
        let run = &self.finish_interrupted_move(run.clone(), &events).await?;
        // Notes (an `upgraded`) say nothing of where the run stands.
        match events.into_iter().rev().find(|e| !e.is_note()) {
            // Parked per its log: woken by its calls and timers.
            Some(Event::WaitStarted { on }) => {
                self.restore_parked(run, &on).await?;
                Ok(store.has_any_request(run.id).await?)
            }
            _ => Ok(true),
        }
    }

    /// Writes again what a run parked at a wait is known by (its status, what it waits on,
    /// its timer, its places at named triggers), from its log: those writes are staged,
    /// and a crash may have come before they were durable. Writing them again is harmless.
    async fn restore_parked(&self, run: &RunRecord, on: &[WaitTarget]) -> Result<(), ExecError> {
        let store = &self.shared.store;
        let created = store.webhooks_of(run.id).await?;
        let mut expiries = Vec::new();
        for target in on {
            if let WaitTarget::Webhook { id } = target
                && let Some((token, _)) = created.iter().find(|(_, webhook)| webhook == id)
            {
                expiries.push(store.hook(token).await?.and_then(|hook| hook.expires_at_ms));
            }
        }
        self.run_state.park(run, &Wait::of(on, expiries)).await?;
        Ok(())
    }

    /// Starts the timer scheduler, the sweep of senders' message ids past their window, and
    /// the sweep of runs past their retention (without them both would pile up for ever).
    pub fn spawn_timers(self: &Arc<Self>) {
        tokio::spawn(timers::schedule(self.clone(), self.run_state.timers_changed()));
        tokio::spawn(timers::forget_expired_messages(self.shared().clone()));
        tokio::spawn(timers::forget_finished_runs(self.shared().clone()));
    }
}
