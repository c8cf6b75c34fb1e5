//! The one writer of a run's state: its status, what it waits on, its timer and its places
//! at named triggers. The runtime reports a run's waits here (`runtime::RunState`); the
//! executor's lifecycle (start, end, recovery) writes the rest, in `Executor`.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::Notify;

use crate::clock::SharedClock;
use crate::runtime::{RunState, Wait};
use crate::store::records::{RunRecord, RunStatus};
use crate::store::{Inbox, RunLog, Store, StoreError, Timers};

pub struct RunStateWriter {
    store: Store,
    clock: SharedClock,
    /// Signalled when a timer is set, so that the scheduler can wake earlier.
    timers_changed: Arc<Notify>,
}

impl RunStateWriter {
    pub fn new(store: Store, clock: SharedClock) -> RunStateWriter {
        RunStateWriter { store, clock, timers_changed: Arc::new(Notify::new()) }
    }

    /// Signalled when a timer is set.
    pub fn timers_changed(&self) -> Arc<Notify> {
        self.timers_changed.clone()
    }

    /// Shows a run parked at `wait`: its record, its timer, its places at named triggers
    /// (visible to `any` and `all` callers once its status says where it waits). A place
    /// already held (a replayed wait) keeps its time, and so its place in the queue.
    pub async fn park(&self, run: &RunRecord, wait: &Wait) -> Result<RunRecord, StoreError> {
        let mut run = run.clone();
        run.status = RunStatus::Waiting;
        run.waiting_on = wait.on.clone();
        run.wake_at_ms = wait.wake_at_ms;
        run.updated_at_ms = self.clock.now_ms();
        if let Some(at) = wait.wake_at_ms {
            self.store.add_timer(at, run.id).await?;
            self.timers_changed.notify_one();
        }
        self.store.put_run(&run).await?;
        for name in wait.triggers() {
            self.store.add_trigger_waiter(&run.module, name, run.id, run.updated_at_ms).await?;
        }
        Ok(run)
    }

    /// Shows a run running again after its wait, whose timer and places it no longer needs.
    pub async fn unpark(&self, run: &RunRecord, wait: &Wait) -> Result<RunRecord, StoreError> {
        self.clear_wait(run, wait).await?;
        let mut run = run.clone();
        run.status = RunStatus::Running;
        run.waiting_on.clear();
        run.wake_at_ms = None;
        run.updated_at_ms = self.clock.now_ms();
        self.store.put_run(&run).await?;
        Ok(run)
    }

    /// Takes away a wait's timer and places at named triggers; the caller writes the
    /// run's record (an ending run writes it once, with its end).
    pub async fn clear_wait(&self, run: &RunRecord, wait: &Wait) -> Result<(), StoreError> {
        if let Some(at) = run.wake_at_ms.or(wait.wake_at_ms) {
            self.store.remove_timer(at, run.id).await?;
        }
        for name in wait.triggers() {
            self.store.remove_trigger_waiter(&run.module, name, run.id).await?;
        }
        Ok(())
    }
}

impl RunState for RunStateWriter {
    fn parked<'a>(&'a self, run: &'a RunRecord, wait: &'a Wait) -> BoxFuture<'a, Result<RunRecord, StoreError>> {
        Box::pin(self.park(run, wait))
    }

    fn resumed<'a>(&'a self, run: &'a RunRecord, wait: &'a Wait) -> BoxFuture<'a, Result<RunRecord, StoreError>> {
        Box::pin(self.unpark(run, wait))
    }
}
