//! Which runs have a driver (an instance running or parked hot) right now, and how to
//! wake them. This is what makes "a call arrived" and "the run gave up waiting" race-free:
//! both sides decide under the same lock.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::ids::RunId;

/// A run's driver, as wakers see it.
#[derive(Default)]
struct Driver {
    notify: Arc<Notify>,
    /// Set by a waker, cleared by the driver before it looks at the store: a wake-up that
    /// comes after the driver last looked keeps it from letting go.
    pending: bool,
}

#[derive(Default)]
pub struct LiveRuns {
    runs: Mutex<HashMap<RunId, Driver>>,
    hot: AtomicUsize,
    /// Runs asked to stop; their drivers end them as `cancelled`.
    cancelled: Mutex<HashSet<RunId>>,
    /// How many are in `cancelled`: the CPU-budget check asks every tick, mostly for none.
    cancelling: AtomicUsize,
    /// Signalled at every cancellation, for host calls that wait outside wasm.
    cancellations: Notify,
}

/// A held slot for a hot-parked instance; dropping it frees the slot.
pub struct HotSlot<'a>(&'a AtomicUsize);

impl Drop for HotSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl LiveRuns {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, Driver>> {
        // A panic while holding this lock leaves the map consistent (single inserts and
        // removes), so a poisoned lock is still safe to use.
        self.runs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wakes the run's driver if it has one and returns false; otherwise registers the
    /// caller as its driver and returns true: the caller must then drive the run.
    pub fn claim_or_notify(&self, run: RunId) -> bool {
        let mut runs = self.lock();
        match runs.get_mut(&run) {
            Some(driver) => {
                driver.pending = true;
                driver.notify.notify_one();
                false
            }
            None => {
                runs.insert(run, Driver::default());
                true
            }
        }
    }

    /// Registers the caller as the run's driver if it has none; false (and nobody woken)
    /// if it has one.
    pub fn try_claim(&self, run: RunId) -> bool {
        let mut runs = self.lock();
        if runs.contains_key(&run) {
            return false;
        }
        runs.insert(run, Driver::default());
        true
    }

    /// The signal a parked instance of this run waits on.
    pub fn notifier(&self, run: RunId) -> Arc<Notify> {
        self.lock().entry(run).or_default().notify.clone()
    }

    /// Called by the driver before it looks at the store for what woke it.
    pub fn clear_pending(&self, run: RunId) {
        if let Some(driver) = self.lock().get_mut(&run) {
            driver.pending = false;
        }
    }

    /// Ends the run's driver unconditionally (the run finished).
    pub fn release(&self, run: RunId) {
        self.lock().remove(&run);
    }

    /// Ends the run's driver unless it was woken since it last cleared its pending mark:
    /// then a concurrent waker either woke this driver or finds none and starts a new one.
    pub fn release_unless_pending(&self, run: RunId) -> bool {
        let mut runs = self.lock();
        if runs.get(&run).is_some_and(|driver| driver.pending) {
            return false;
        }
        runs.remove(&run);
        true
    }

    /// Asks the run's driver to end it as cancelled (a new driver does so at once).
    pub fn cancel(&self, run: RunId) {
        let mut cancelled = self.cancelled.lock().unwrap_or_else(|p| p.into_inner());
        if cancelled.insert(run) {
            self.cancelling.fetch_add(1, Ordering::SeqCst);
        }
        drop(cancelled);
        self.cancellations.notify_waiters();
    }

    /// Resolves once the run is cancelled (for host calls that wait outside wasm).
    pub async fn until_cancelled(&self, run: RunId) {
        loop {
            let signalled = self.cancellations.notified();
            if self.is_cancelled(run) {
                return;
            }
            signalled.await;
        }
    }

    pub fn is_cancelled(&self, run: RunId) -> bool {
        self.cancelling.load(Ordering::SeqCst) > 0
            && self.cancelled.lock().unwrap_or_else(|p| p.into_inner()).contains(&run)
    }

    /// Forgets a cancellation once the run has ended.
    pub fn cancel_done(&self, run: RunId) {
        if self.cancelled.lock().unwrap_or_else(|p| p.into_inner()).remove(&run) {
            self.cancelling.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Takes a hot-parking slot if fewer than `limit` are taken.
    pub fn try_hot(&self, limit: usize) -> Option<HotSlot<'_>> {
        let taken = self.hot.fetch_add(1, Ordering::Relaxed);
        let slot = HotSlot(&self.hot);
        (taken < limit).then_some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_driver_per_run() {
        let (live, run) = (LiveRuns::default(), RunId::new());
        assert!(live.claim_or_notify(run));
        assert!(!live.claim_or_notify(run));
        live.release(run);
        assert!(live.claim_or_notify(run));
    }

    #[test]
    fn a_wake_up_after_the_driver_looked_keeps_it() {
        let (live, run) = (LiveRuns::default(), RunId::new());
        assert!(live.claim_or_notify(run));
        live.clear_pending(run);
        assert!(!live.claim_or_notify(run), "woken, not a second driver");
        assert!(!live.release_unless_pending(run), "it must look again");
        live.clear_pending(run);
        assert!(live.release_unless_pending(run));
        assert!(live.claim_or_notify(run), "a later waker starts a new driver");
    }

    #[test]
    fn hot_slots_are_bounded_and_returned() {
        let live = LiveRuns::default();
        let first = live.try_hot(1);
        assert!(first.is_some());
        assert!(live.try_hot(1).is_none());
        drop(first);
        assert!(live.try_hot(1).is_some());
    }
}
