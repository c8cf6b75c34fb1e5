//! Run lifecycle: uploading modules, starting runs, delivering calls, driving runs
//! (through the runtime) until they complete, fail or suspend, timers, and recovery
//! after a restart.

mod timers;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::clock::now_ms;
use crate::runtime::{Outcome, Runtime, RuntimeError, Shared};
use crate::store::records::{
    Event, Failure, HookRecord, ModuleRecord, ModuleVersion, RequestRecord, RunRecord, RunStatus,
};
use crate::store::{Delivery, StoreError, event_record};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("module name `{0}` must be 1 to 64 characters of a-z 0-9 - _")]
    BadModuleName(String),
    #[error("no module named `{0}`")]
    UnknownModule(String),
    #[error("the webhook no longer takes calls")]
    Gone,
    #[error("no run with id `{0}`")]
    UnknownRun(String),
    #[error("no live run `{0}` of this module")]
    UnknownExecution(String),
    #[error("run `{0}` has already ended ({1})")]
    Ended(String, &'static str),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Store(#[from] StoreError),
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
        self.start_run_from(module_name, input, None).await
    }

    /// Creates a run as `start_run` does, from a call to one of the module's triggers
    /// when `trigger` is given (the run's start is that request).
    pub async fn start_run_from(
        self: &Arc<Self>,
        module_name: &str,
        input: Value,
        trigger: Option<RequestRecord>,
    ) -> Result<RunRecord, ExecError> {
        let store = &self.shared.store;
        let module = store.module(module_name)?.ok_or_else(|| ExecError::UnknownModule(module_name.to_string()))?;
        let version = module.latest().ok_or_else(|| ExecError::UnknownModule(module_name.to_string()))?;
        let now = now_ms();
        let run = RunRecord {
            id: uuid::Uuid::now_v7().to_string(),
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

    /// Puts a call in its run's inbox, durably (flushed before this returns), and wakes
    /// the run.
    pub async fn accept_call(self: &Arc<Self>, hook: &HookRecord, request: &RequestRecord) -> Result<(), ExecError> {
        let store = &self.shared.store;
        match store.deliver(hook, request, now_ms())? {
            Delivery::Accepted => {}
            Delivery::Gone => return Err(ExecError::Gone),
        }
        let flushed = store.flush().await;
        // Even when the flush failed the call is in the inbox: the run must see it.
        self.wake(&hook.run_id);
        Ok(flushed?)
    }

    /// Keeps a call to a module's named trigger for one run, durably, and wakes it. The
    /// run must be a live run of that module; it takes the call when it waits there
    /// (at once if it does already).
    pub async fn accept_trigger_call(
        self: &Arc<Self>,
        module: &str,
        name: &str,
        run_id: &str,
        request: &RequestRecord,
    ) -> Result<(), ExecError> {
        let store = &self.shared.store;
        let run = store.run(run_id)?.filter(|r| r.module == module && !r.status.is_terminal());
        if run.is_none() {
            return Err(ExecError::UnknownExecution(run_id.to_string()));
        }
        store.deliver_to_trigger(run_id, name, request)?;
        let flushed = store.flush().await;
        self.wake(run_id);
        Ok(flushed?)
    }

    /// The runs waiting at a module's named trigger now, longest waiting first. Entries
    /// left behind by a crash (the run moved on) are dropped here.
    pub fn trigger_waiters(&self, module: &str, name: &str) -> Result<Vec<String>, ExecError> {
        let store = &self.shared.store;
        let mut waiting = Vec::new();
        for run_id in store.trigger_waiters(module, name)? {
            match store.run(&run_id)? {
                Some(run) if !run.status.is_terminal() => {
                    // Registered only once its status says it waits here; a run between
                    // two waits is passed over, not forgotten.
                    let waits_here = run.waiting_on.iter().any(|w| w.strip_prefix("trigger:") == Some(name));
                    if run.status == RunStatus::Waiting && waits_here {
                        waiting.push(run_id);
                    }
                }
                _ => store.remove_trigger_waiter(module, name, &run_id)?,
            }
        }
        Ok(waiting)
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
        let store = &self.shared.store;
        let loaded = store.run(run_id).and_then(|run| Ok((run, store.events(run_id)?)));
        let (run, events) = match loaded {
            Ok((Some(run), events)) if !run.status.is_terminal() => (run, events),
            Ok(_) => return,
            Err(e) => {
                tracing::error!(run = run_id, "cannot load run: {e}");
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
        let written = self
            .close_webhooks(&run.id)
            .and_then(|()| pending_timer.map_or(Ok(()), |at| store.remove_timer(at, &run.id)))
            .and_then(|()| {
                waited_triggers.iter().try_for_each(|t| store.remove_trigger_waiter(&run.module, t, &run.id))
            })
            .and_then(|()| store.clear_cancel(&run.id))
            .and_then(|()| store.put_run(&run));
        self.shared.live.cancel_done(&run.id);
        let flushed = match written {
            Ok(()) => store.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = flushed {
            tracing::error!(run = %run.id, "cannot record the run's end: {e}");
        }
    }

    fn close_webhooks(&self, run_id: &str) -> Result<(), StoreError> {
        let store = &self.shared.store;
        for record in store.events(run_id)? {
            if let Event::WebhookCreated { webhook: Ok(webhook) } = record.event
                && let Some(number) = webhook.number()
            {
                store.close_hook(&webhook.token, run_id, number)?;
            }
        }
        Ok(())
    }

    /// After a start: drives every run that has something to do. That is a run that
    /// was running; and a waiting run with an acknowledged call it had not taken, or
    /// whose log shows its wait already ended (its status was not written before the
    /// crash). Runs parked on a wait are left alone: their calls and timers wake them.
    pub fn recover(self: &Arc<Self>) -> Result<usize, ExecError> {
        let store = &self.shared.store;
        let mut resumed = 0;
        for run in store.runs(None)? {
            if !run.status.is_terminal() && store.cancel_requested(&run.id)? {
                self.shared.live.cancel(&run.id);
            }
            let due = self.shared.live.is_cancelled(&run.id)
                || match run.status {
                    RunStatus::Running => true,
                    RunStatus::Waiting => {
                        let parked = matches!(store.last_event(&run.id)?, Some(e) if e.event.kind() == "wait-started");
                        !parked || store.has_any_request(&run.id)?
                    }
                    RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled => false,
                };
            if due {
                self.wake(&run.id);
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// Starts the timer scheduler, and the sweep of signed message ids past their replay
    /// window (without it they would pile up for ever).
    pub fn spawn_timers(self: &Arc<Self>) {
        tokio::spawn(timers::schedule(self.clone()));
        tokio::spawn(timers::forget_expired_messages(self.shared().clone()));
    }
}
