//! One scheduler for every durable timer: timers sit in the store ordered by due time; the
//! scheduler sleeps until the earliest and wakes its run. A timer is removed by the run
//! when its wait ends, so a crash between firing and handling fires it again.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::Executor;
use crate::ids::RunId;
use crate::runtime::Shared;
use crate::store::{Registry, RunLog, StoreError, Timers};

/// Past this many remembered firings, forget those whose timers are gone.
const PRUNE_FIRED_AT: usize = 4096;

/// Wakes the runs whose timers are due; `changed` is signalled when a timer is set.
pub async fn schedule(executor: Arc<Executor>, changed: Arc<Notify>) {
    let shared = executor.shared().clone();
    let mut fired = Fired::default();
    loop {
        let now = shared.clock.now_ms();
        let sleep = match fired.fire_due(&shared.store, now, |run| executor.wake(run)).await {
            Ok(next_ms) => next_ms.map(|at| Duration::from_millis(at.saturating_sub(now))),
            Err(e) => {
                tracing::error!("timer scan failed: {e}");
                Some(Duration::from_secs(1))
            }
        };
        match sleep {
            Some(duration) => {
                let _ = tokio::time::timeout(duration, changed.notified()).await;
            }
            None => changed.notified().await,
        }
    }
}

/// The timers fired and not yet removed by their runs: each wakes its run once.
#[derive(Default)]
struct Fired(HashSet<(u64, RunId)>);

impl Fired {
    /// Wakes the runs of timers due at `now_ms` and not fired yet; returns when the next
    /// timer is due.
    async fn fire_due<S: Timers + RunLog>(
        &mut self,
        store: &S,
        now_ms: u64,
        wake: impl Fn(RunId),
    ) -> Result<Option<u64>, StoreError> {
        let timers = store.due_timers(now_ms).await?;
        for timer in timers.due {
            if self.0.contains(&timer) {
                continue;
            }
            let (at, run) = timer;
            // A timer outlived by its run (ended, say, by a call that beat it) has nothing
            // left to wake.
            let live = store.run(run).await.ok().flatten().is_some_and(|r| !r.status.is_terminal());
            if live {
                wake(run);
                self.0.insert(timer);
            } else if let Err(e) = store.remove_timer(at, run).await {
                tracing::error!("cannot drop a stale timer: {e}");
            }
        }
        if self.0.len() > PRUNE_FIRED_AT {
            let mut kept = HashSet::new();
            for (at, run) in self.0.drain() {
                if store.has_timer(at, run).await.unwrap_or(true) {
                    kept.insert((at, run));
                }
            }
            self.0 = kept;
        }
        Ok(timers.next_ms)
    }
}

/// How often senders' message ids past their window are swept from the store.
const MESSAGE_SWEEP_EVERY: Duration = Duration::from_secs(60);

pub async fn forget_expired_messages(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(MESSAGE_SWEEP_EVERY);
    loop {
        every.tick().await;
        let now = shared.clock.now_ms();
        let keep_after = now.saturating_sub(super::inbound::MESSAGE_WINDOW_MIN.as_millis() as u64);
        match shared.store.forget_expired_messages(now, super::inbound::MESSAGES_KEPT, keep_after).await {
            Ok(0) => {}
            Ok(forgotten) => tracing::debug!(forgotten, "forgot expired signed message ids"),
            Err(e) => tracing::error!("cannot sweep signed message ids: {e}"),
        }
    }
}

/// Deletes runs that ended more than the retention time ago, with everything they own.
pub async fn forget_finished_runs(shared: Arc<Shared>) {
    let retain = shared.settings.retain;
    // Often enough that a run outlives its retention by a fraction of it at most.
    let mut every = tokio::time::interval((retain / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600)));
    loop {
        every.tick().await;
        match delete_finished(&shared.store, shared.clock.now_ms(), retain).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted runs past their retention"),
            Err(e) => tracing::error!("cannot delete runs past their retention: {e}"),
        }
    }
}

/// Deletes the runs that ended more than `retain` before `now_ms`; returns how many.
async fn delete_finished<S: RunLog>(store: &S, now_ms: u64, retain: Duration) -> Result<usize, StoreError> {
    let before = now_ms.saturating_sub(retain.as_millis() as u64);
    let ended = store.finished_before(before).await?;
    for run in &ended {
        store.delete_run(*run).await?;
    }
    Ok(ended.len())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::json;

    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::ids::ModuleName;
    use crate::store::records::{Event, RunRecord, RunStatus};
    use crate::store::{Store, event_record};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(dir.path(), 8 << 20).expect("the store opens");
        (dir, store)
    }

    async fn new_run(store: &Store, now_ms: u64) -> RunRecord {
        let run = RunRecord {
            id: RunId::new(),
            module: ModuleName::parse("orders").expect("a name"),
            version: "v1".into(),
            status: RunStatus::Waiting,
            input: json!({}),
            output: None,
            error: None,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            waiting_on: Vec::new(),
            wake_at_ms: None,
        };
        let started = Event::Started { input: json!({}), start_ms: now_ms, seed: 1, trigger: None };
        store.create_run(&run, &event_record(0, now_ms, started)).await.expect("created");
        run
    }

    #[tokio::test]
    async fn a_timer_wakes_its_run_once_when_its_time_comes_and_not_before() {
        let (_dir, store) = store();
        let clock = ManualClock::at(10_000);
        let run = new_run(&store, clock.now_ms()).await;
        store.add_timer(10_500, run.id).await.expect("timer set");
        let woken = Mutex::new(Vec::new());
        let mut fired = Fired::default();

        let next = fired.fire_due(&store, clock.now_ms(), |id| woken.lock().unwrap().push(id)).await.unwrap();
        assert_eq!(next, Some(10_500));
        assert!(woken.lock().unwrap().is_empty());

        clock.advance(500);
        fired.fire_due(&store, clock.now_ms(), |id| woken.lock().unwrap().push(id)).await.unwrap();
        // The run has not removed its timer yet: a second scan does not wake it again.
        fired.fire_due(&store, clock.now_ms(), |id| woken.lock().unwrap().push(id)).await.unwrap();
        assert_eq!(*woken.lock().unwrap(), vec![run.id]);
    }

    #[tokio::test]
    async fn a_timer_whose_run_ended_wakes_nothing_and_is_dropped() {
        let (_dir, store) = store();
        let clock = ManualClock::at(10_000);
        let mut run = new_run(&store, clock.now_ms()).await;
        store.add_timer(10_100, run.id).await.expect("timer set");
        run.status = RunStatus::Completed;
        store.put_run(&run).await.expect("ended");

        clock.advance(1_000);
        let woken = Mutex::new(Vec::new());
        let next = Fired::default().fire_due(&store, clock.now_ms(), |id| woken.lock().unwrap().push(id)).await;
        assert_eq!(next.unwrap(), None);
        assert!(woken.lock().unwrap().is_empty());
        assert!(!store.has_timer(10_100, run.id).await.unwrap());
    }

    #[tokio::test]
    async fn retention_deletes_only_runs_that_ended_longer_ago_than_it_keeps() {
        let (_dir, store) = store();
        let clock = ManualClock::at(1_000_000);
        let retain = Duration::from_secs(60);
        let mut old = new_run(&store, clock.now_ms()).await;
        old.status = RunStatus::Completed;
        store.put_run(&old).await.unwrap();
        clock.advance(30_000);
        let mut recent = new_run(&store, clock.now_ms()).await;
        recent.status = RunStatus::Failed;
        store.put_run(&recent).await.unwrap();
        let waiting = new_run(&store, clock.now_ms()).await;

        clock.advance(31_000);
        assert_eq!(delete_finished(&store, clock.now_ms(), retain).await.unwrap(), 1);
        assert!(store.run(old.id).await.unwrap().is_none());
        assert!(store.run(recent.id).await.unwrap().is_some());

        clock.advance(10 * 60_000);
        assert_eq!(delete_finished(&store, clock.now_ms(), retain).await.unwrap(), 1);
        assert!(store.run(recent.id).await.unwrap().is_none());
        assert!(store.run(waiting.id).await.unwrap().is_some(), "a waiting run is never deleted");
    }
}
