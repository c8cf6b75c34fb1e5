//! Run lifecycle: uploading modules, starting runs, delivering calls, driving runs
//! (through the runtime) until they complete, fail or suspend, timers, and recovery
//! after a restart.

mod inbound;
mod timers;

pub use inbound::{Answer, Execution, Incoming, MESSAGE_WINDOW, query_object};

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::auth::callers::{AuthError, Refusal};
use crate::clock::now_ms;
use crate::json::JsonError;
use crate::runtime::{Outcome, Runtime, RuntimeError, Shared};
use crate::store::records::{
    Event, Failure, Method, ModuleRecord, ModuleVersion, NotTakenReason, RequestRecord, RunRecord, RunStatus,
    WaitTarget, WebhookInfo,
};
use crate::store::{StoreError, event_record};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("module name `{0}` must be 1 to 64 characters of a-z 0-9 - _")]
    BadModuleName(String),
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

pub struct Executor {
    runtime: Runtime,
    shared: Arc<Shared>,
    /// Uploads read, extend and write a module's record: one at a time.
    uploads: tokio::sync::Mutex<()>,
}

/// Releases a run's driver slot however the driver ends, panics included, so the run can
/// be driven again.
struct DriverGuard<'a> {
    shared: &'a Shared,
    run_id: &'a str,
    armed: bool,
}

impl Drop for DriverGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.live.release(self.run_id);
        }
    }
}

fn check_module_name(name: &str) -> Result<(), ExecError> {
    let legal = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    if name.is_empty() || name.len() > 64 || !name.chars().all(legal) {
        return Err(ExecError::BadModuleName(name.to_string()));
    }
    Ok(())
}

impl Executor {
    pub fn new(runtime: Runtime) -> Arc<Executor> {
        let shared = runtime.shared().clone();
        Arc::new(Executor { runtime, shared, uploads: tokio::sync::Mutex::new(()) })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stores a module version (idempotent for identical bytes). Returns the version and
    /// whether it is new.
    pub async fn upload(&self, name: &str, bytes: &[u8]) -> Result<(ModuleVersion, bool), ExecError> {
        check_module_name(name)?;
        let _one_at_a_time = self.uploads.lock().await;
        let store = &self.shared.store;
        let version = hex::encode(Sha256::digest(bytes));
        let mut module =
            store.module(name)?.unwrap_or_else(|| ModuleRecord { name: name.to_string(), versions: Vec::new() });
        if let Some(latest) = module.latest().filter(|v| v.version == version) {
            return Ok((latest.clone(), false));
        }
        let info = self.runtime.prepare(&version, bytes).await?;
        let entry =
            ModuleVersion { version: version.clone(), size: bytes.len() as u64, uploaded_at_ms: now_ms(), info };
        store.put_blob(&version, bytes)?;
        module.versions.push(entry.clone());
        store.put_module(&module)?;
        store.flush().await?;
        Ok((entry, true))
    }

    /// Creates a run on the module's latest version, durably, and starts driving it.
    pub async fn start_run(self: &Arc<Self>, module_name: &str, input: Value) -> Result<RunRecord, ExecError> {
        self.start_run_as(module_name, uuid::Uuid::now_v7().to_string(), input, None).await
    }

    /// Creates run `run_id` as `start_run` does, from a call to one of the module's
    /// triggers when `trigger` is given (the run's start is that request).
    async fn start_run_as(
        self: &Arc<Self>,
        module_name: &str,
        run_id: String,
        input: Value,
        trigger: Option<RequestRecord>,
    ) -> Result<RunRecord, ExecError> {
        self.admit_work()?;
        let store = &self.shared.store;
        let module = store.module(module_name)?.ok_or_else(|| ExecError::UnknownModule(module_name.to_string()))?;
        let version = module.latest().ok_or_else(|| ExecError::UnknownModule(module_name.to_string()))?;
        let now = now_ms();
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
        let started = event_record(0, Event::Started { input, start_ms: now, seed: rand::random(), trigger });
        store.create_run(&run, &started)?;
        store.flush().await?;
        self.wake(&run.id);
        Ok(run)
    }

    /// The runs waiting at a module's named trigger now, longest waiting first, with when
    /// each began to. Entries left behind by a crash (the run moved on) are dropped here.
    pub fn trigger_waiters(&self, module: &str, name: &str) -> Result<Vec<(RunRecord, u64)>, ExecError> {
        let store = &self.shared.store;
        let mut waiting = Vec::new();
        for (run_id, since) in store.trigger_waiters(module, name)? {
            match store.run(&run_id)? {
                Some(run) if !run.status.is_terminal() => {
                    // Registered only once its status says it waits here; a run between
                    // two waits is passed over, not forgotten.
                    let waits_here = run.waiting_on.iter().any(|w| w.strip_prefix("trigger:") == Some(name));
                    if run.status == RunStatus::Waiting && waits_here {
                        waiting.push((run, since));
                    }
                }
                _ => store.remove_trigger_waiter(module, name, &run_id)?,
            }
        }
        Ok(waiting)
    }

    /// Refuses new work from outside while too many runs wait to execute.
    fn admit_work(&self) -> Result<(), ExecError> {
        if self.shared.activations.has_room() { Ok(()) } else { Err(ExecError::Overloaded) }
    }

    /// Makes sure the run makes progress: wakes its driver, or starts one.
    pub fn wake(self: &Arc<Self>, run_id: &str) {
        if self.shared.live.claim_or_notify(run_id) {
            let executor = self.clone();
            let run_id = run_id.to_string();
            tokio::spawn(async move { executor.drive(&run_id).await });
        }
    }

    /// Executes the run until it completes, fails or suspends. The caller holds the
    /// run's driver slot.
    async fn drive(&self, run_id: &str) {
        let mut guard = DriverGuard { shared: &self.shared, run_id, armed: true };
        // Past the cap of runs executing at once, it waits its turn here.
        let _slot = self.shared.activations.slot().await;
        let store = &self.shared.store;
        let run = match store.run(run_id) {
            Ok(Some(run)) if !run.status.is_terminal() => run,
            Ok(_) => return,
            Err(e) => {
                tracing::error!(run = run_id, "cannot load run: {e}");
                return;
            }
        };
        let events = match store.events_with_size(run_id) {
            Ok(events) => events,
            Err(e) => {
                // It can never be driven: it fails, instead of staying `running` for ever.
                tracing::error!(run = run_id, "cannot read the run's log: {e}");
                let failure = Failure::new("unreadable-log", format!("the run's log cannot be read: {e}"));
                self.finish(run, End::Failed(failure)).await;
                return;
            }
        };
        let end = match self.runtime.execute(run.clone(), events).await {
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
        let store = &self.shared.store;
        let run = store.run(run_id)?.ok_or_else(|| ExecError::UnknownRun(run_id.to_string()))?;
        if run.status.is_terminal() {
            return Err(ExecError::Ended(run.id, status_name(run.status)));
        }
        // Durable before the answer: a restart carries the cancellation out.
        store.request_cancel(run_id)?;
        store.flush().await?;
        self.shared.live.cancel(run_id);
        self.wake(run_id);
        let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
        loop {
            let run = store.run(run_id)?.ok_or_else(|| ExecError::UnknownRun(run_id.to_string()))?;
            if run.status.is_terminal() {
                // It may have ended on its own before the request reached it.
                self.shared.live.cancel_done(run_id);
                store.clear_cancel(run_id)?;
            }
            if run.status.is_terminal() || tokio::time::Instant::now() >= deadline {
                // Whatever the driver wrote is durable before the answer.
                store.flush().await?;
                return Ok(run);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Closes a run's webhooks, then writes its end durably. In that order, no call is
    /// accepted for a run that has ended; a crash in between is repaired by recovery,
    /// which finds the end in the log and comes here again.
    async fn finish(&self, mut run: RunRecord, end: End) {
        let store = &self.shared.store;
        match end {
            End::Completed(output) => {
                run.status = RunStatus::Completed;
                run.output = Some(output);
            }
            End::Failed(failure) => {
                tracing::warn!(run = %run.id, code = %failure.code, "run failed: {}", failure.message);
                run.status = RunStatus::Failed;
                run.error = Some(failure);
            }
            End::Cancelled => run.status = RunStatus::Cancelled,
        }
        // The record passed in may be older than the one the run's waits wrote.
        let stored = store.run(&run.id).ok().flatten();
        let pending_timer = stored.as_ref().and_then(|r| r.wake_at_ms);
        let waited_triggers: Vec<String> = stored
            .map(|r| r.waiting_on.iter().filter_map(|w| w.strip_prefix("trigger:").map(str::to_string)).collect())
            .unwrap_or_default();
        run.waiting_on.clear();
        run.wake_at_ms = None;
        run.updated_at_ms = now_ms();
        // Each step is tried whatever became of the others: a run whose log cannot be read
        // still ends.
        let cleared = [
            self.refuse_leftovers(&run.id),
            pending_timer.map_or(Ok(()), |at| store.remove_timer(at, &run.id)),
            waited_triggers.iter().try_for_each(|t| store.remove_trigger_waiter(&run.module, t, &run.id)),
            store.clear_cancel(&run.id),
        ];
        for failed in cleared.into_iter().filter_map(Result::err) {
            tracing::error!(run = %run.id, "cannot clear what the run left: {failed}");
        }
        let written = store.put_run(&run);
        self.shared.live.cancel_done(&run.id);
        // A call that reached a named trigger while the run was ending finds it ended now.
        match store.refuse_trigger_calls(&run.id, NotTakenReason::RunEnded) {
            Ok(late) => {
                inbound::held(late).for_each(|request| self.shared.holds.refused(&request.id, NotTakenReason::RunEnded))
            }
            Err(e) => tracing::error!(run = %run.id, "cannot refuse calls that came late: {e}"),
        }
        let flushed = match written {
            Ok(()) => store.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = flushed {
            tracing::error!(run = %run.id, "cannot record the run's end: {e}");
        }
    }

    /// Closes a run's webhooks as it ends. What it did not take stays listed as not taken;
    /// callers still held (on many-call webhooks, at named triggers) are told.
    fn refuse_leftovers(&self, run_id: &str) -> Result<(), StoreError> {
        let store = &self.shared.store;
        let mut left = store.refuse_trigger_calls(run_id, NotTakenReason::RunEnded)?;
        for (token, number) in store.webhooks_of(run_id)? {
            left.extend(store.close_hook(&token, run_id, number, NotTakenReason::RunEnded)?);
        }
        for request in inbound::held(left) {
            self.shared.holds.refused(&request.id, NotTakenReason::RunEnded);
        }
        Ok(())
    }

    /// After a start: drives every run that has something to do. That is a run that
    /// was running; and a waiting run with an acknowledged call it had not taken, or
    /// whose log shows its wait already ended (its status was not written before the
    /// crash). Runs parked on a wait are left alone: their calls and timers wake them.
    pub fn recover(self: &Arc<Self>) -> Result<usize, ExecError> {
        let store = &self.shared.store;
        let orphaned = store.refuse_orphaned_calls()?;
        if orphaned > 0 {
            tracing::info!(orphaned, "calls whose callers were held when the server stopped were not delivered");
        }
        let mut resumed = 0;
        // An unreadable run record is reported by the listing and skipped: it stops no other.
        let (runs, _unreadable) = store.runs(None)?;
        for run in runs.into_iter().filter(|run| !run.status.is_terminal()) {
            // A run whose records cannot be read is driven too: it fails, alone.
            let due = self.recover_run(&run).unwrap_or_else(|e| {
                tracing::error!(run = %run.id, "cannot recover the run: {e}");
                true
            });
            if due {
                self.wake(&run.id);
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// Whether a run must be driven after a start; a parked one is shown waiting again.
    fn recover_run(&self, run: &RunRecord) -> Result<bool, ExecError> {
        let store = &self.shared.store;
        if store.cancel_requested(&run.id)? {
            self.shared.live.cancel(&run.id);
            return Ok(true);
        }
        match store.last_event(&run.id)?.map(|e| e.event) {
            // Parked per its log: woken by its calls and timers.
            Some(Event::WaitStarted { on }) => {
                self.restore_parked(run.clone(), &on)?;
                Ok(store.has_any_request(&run.id)?)
            }
            _ => Ok(true),
        }
    }

    /// Writes again what a run parked at a wait is known by (its status, what it waits on,
    /// its timer, its place at named triggers), from its log: a crash may have come before
    /// those writes were durable. Setting them again is harmless.
    fn restore_parked(&self, mut run: RunRecord, on: &[WaitTarget]) -> Result<(), ExecError> {
        let store = &self.shared.store;
        let created: Vec<WebhookInfo> = store
            .events(&run.id)?
            .into_iter()
            .filter_map(|record| match record.event {
                Event::WebhookCreated { webhook: Ok(webhook) } => Some(webhook),
                _ => None,
            })
            .collect();
        let mut wake_at_ms: Option<u64> = None;
        let mut waiting_on = Vec::new();
        for target in on {
            let at = match target {
                WaitTarget::Webhook { id } => {
                    waiting_on.push(id.clone());
                    let token = created.iter().find(|w| w.id == *id).map(|w| w.token.as_str());
                    let hook = token.map(|token| store.hook(token)).transpose()?.flatten();
                    hook.and_then(|hook| hook.expires_at_ms)
                }
                WaitTarget::Trigger { name } => {
                    waiting_on.push(format!("trigger:{name}"));
                    store.add_trigger_waiter(&run.module, name, &run.id, run.updated_at_ms)?;
                    None
                }
                WaitTarget::Timer { at_ms } => Some(*at_ms),
            };
            wake_at_ms = match (wake_at_ms, at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        if let Some(at) = wake_at_ms {
            store.add_timer(at, &run.id)?;
        }
        if run.status != RunStatus::Waiting || run.waiting_on != waiting_on || run.wake_at_ms != wake_at_ms {
            run.status = RunStatus::Waiting;
            run.waiting_on = waiting_on;
            run.wake_at_ms = wake_at_ms;
            store.put_run(&run)?;
        }
        Ok(())
    }

    /// Starts the timer scheduler, the sweep of senders' message ids past their window, and
    /// the sweep of runs past their retention (without them both would pile up for ever).
    pub fn spawn_timers(self: &Arc<Self>) {
        tokio::spawn(timers::schedule(self.clone()));
        tokio::spawn(timers::forget_expired_messages(self.shared().clone()));
        tokio::spawn(timers::forget_finished_runs(self.shared().clone()));
    }
}
