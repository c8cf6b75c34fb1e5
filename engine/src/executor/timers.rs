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
    let mut fired: HashSet<(u64, RunId)> = HashSet::new();
    loop {
        let sleep = match fire_due(&executor, &shared, &mut fired).await {
            Ok(next_ms) => next_ms.map(|at| Duration::from_millis(at.saturating_sub(shared.clock.now_ms()))),
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

/// Wakes the runs of due timers not fired yet; returns when the next timer is due.
async fn fire_due(
    executor: &Arc<Executor>,
    shared: &Shared,
    fired: &mut HashSet<(u64, RunId)>,
) -> Result<Option<u64>, StoreError> {
    let timers = shared.store.due_timers(shared.clock.now_ms()).await?;
    for timer in timers.due {
        if fired.contains(&timer) {
            continue;
        }
        let (at, run) = timer;
        // A timer outlived by its run (ended, say, by a call that beat it) has nothing
        // left to wake.
        let live = shared.store.run(run).await.ok().flatten().is_some_and(|r| !r.status.is_terminal());
        if live {
            executor.wake(run);
            fired.insert(timer);
        } else if let Err(e) = shared.store.remove_timer(at, run).await {
            tracing::error!("cannot drop a stale timer: {e}");
        }
    }
    if fired.len() > PRUNE_FIRED_AT {
        let mut kept = HashSet::new();
        for (at, run) in fired.drain() {
            if shared.store.has_timer(at, run).await.unwrap_or(true) {
                kept.insert((at, run));
            }
        }
        *fired = kept;
    }
    Ok(timers.next_ms)
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
        match delete_finished(&shared).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted runs past their retention"),
            Err(e) => tracing::error!("cannot delete runs past their retention: {e}"),
        }
    }
}

async fn delete_finished(shared: &Shared) -> Result<usize, StoreError> {
    let before = shared.clock.now_ms().saturating_sub(shared.settings.retain.as_millis() as u64);
    let ended = shared.store.finished_before(before).await?;
    for run in &ended {
        shared.store.delete_run(*run).await?;
    }
    Ok(ended.len())
}
