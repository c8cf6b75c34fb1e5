//! One scheduler for every durable timer: timers sit in sled ordered by due time; the
//! scheduler sleeps until the earliest and wakes its run. A timer is removed by the run
//! when its wait ends, so a crash between firing and handling fires it again.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::Executor;
use crate::clock::now_ms;

/// Past this many remembered firings, forget those whose timers are gone.
const PRUNE_FIRED_AT: usize = 4096;

pub async fn schedule(executor: Arc<Executor>) {
    let shared = executor.shared().clone();
    let mut fired: HashSet<(u64, String)> = HashSet::new();
    loop {
        let sleep = match shared.store.due_timers(now_ms()) {
            Ok(timers) => {
                for timer in timers.due {
                    if fired.contains(&timer) {
                        continue;
                    }
                    // A timer outlived by its run (ended, say, by a call that beat it) has
                    // nothing left to wake.
                    let live = shared.store.run(&timer.1).ok().flatten().is_some_and(|r| !r.status.is_terminal());
                    if live {
                        executor.wake(&timer.1);
                        fired.insert(timer);
                    } else if let Err(e) = shared.store.remove_timer(timer.0, &timer.1) {
                        tracing::error!("cannot drop a stale timer: {e}");
                    }
                }
                if fired.len() > PRUNE_FIRED_AT {
                    fired.retain(|(at, run)| shared.store.has_timer(*at, run).unwrap_or(true));
                }
                timers.next_ms.map(|at| Duration::from_millis(at.saturating_sub(now_ms())))
            }
            Err(e) => {
                tracing::error!("timer scan failed: {e}");
                Some(Duration::from_secs(1))
            }
        };
        match sleep {
            Some(duration) => {
                let _ = tokio::time::timeout(duration, shared.timers_changed.notified()).await;
            }
            None => shared.timers_changed.notified().await,
        }
    }
}

/// How often senders' message ids past their window are swept from the store.
const MESSAGE_SWEEP_EVERY: Duration = Duration::from_secs(60);

pub async fn forget_expired_messages(shared: Arc<crate::runtime::Shared>) {
    let mut every = tokio::time::interval(MESSAGE_SWEEP_EVERY);
    loop {
        every.tick().await;
        let swept = shared.clone();
        let sweep = move || {
            let now = now_ms();
            let keep_after = now.saturating_sub(super::inbound::MESSAGE_WINDOW_MIN.as_millis() as u64);
            swept.store.forget_expired_messages(now, super::inbound::MESSAGES_KEPT, keep_after)
        };
        match tokio::task::spawn_blocking(sweep).await {
            Ok(Ok(0)) => {}
            Ok(Ok(forgotten)) => tracing::debug!(forgotten, "forgot expired signed message ids"),
            Ok(Err(e)) => tracing::error!("cannot sweep signed message ids: {e}"),
            Err(e) => tracing::error!("the message id sweep stopped: {e}"),
        }
    }
}

/// Deletes runs that ended more than the retention time ago, with everything they own.
pub async fn forget_finished_runs(shared: Arc<crate::runtime::Shared>) {
    let retain = shared.settings.retain;
    // Often enough that a run outlives its retention by a fraction of it at most.
    let mut every = tokio::time::interval((retain / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600)));
    loop {
        every.tick().await;
        let swept = shared.clone();
        let sweep = move || -> Result<usize, crate::store::StoreError> {
            let before = now_ms().saturating_sub(retain.as_millis() as u64);
            let ended = swept.store.finished_before(before)?;
            for run_id in &ended {
                swept.store.delete_run(run_id)?;
            }
            Ok(ended.len())
        };
        match tokio::task::spawn_blocking(sweep).await {
            Ok(Ok(0)) => {}
            Ok(Ok(deleted)) => tracing::info!(deleted, "deleted runs past their retention"),
            Ok(Err(e)) => tracing::error!("cannot delete runs past their retention: {e}"),
            Err(e) => tracing::error!("the retention sweep stopped: {e}"),
        }
    }
}
