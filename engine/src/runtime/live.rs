//! Which runs have a driver (an instance running or parked hot) right now, and how to
//! wake them. This is what makes "a call arrived" and "the run gave up waiting" race-free:
//! both sides decide under the same lock.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Default)]
pub struct LiveRuns {
    runs: Mutex<HashMap<String, Arc<Notify>>>,
    hot: AtomicUsize,
    /// Runs asked to stop; their drivers end them as `cancelled`.
    cancelled: Mutex<HashSet<String>>,
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
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        // A panic while holding this lock leaves the map consistent (single inserts and
        // removes), so a poisoned lock is still safe to use.
        self.runs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wakes the run's driver if it has one and returns false; otherwise registers the
    /// caller as its driver and returns true: the caller must then drive the run.
    pub fn claim_or_notify(&self, run_id: &str) -> bool {
        let mut runs = self.lock();
        match runs.get(run_id) {
            Some(notify) => {
                notify.notify_one();
                false
            }
            None => {
                runs.insert(run_id.to_string(), Arc::new(Notify::new()));
                true
            }
        }
    }

    /// The signal a parked instance of this run waits on.
    pub fn notifier(&self, run_id: &str) -> Arc<Notify> {
        self.lock().entry(run_id.to_string()).or_default().clone()
    }

    /// Ends the run's driver unconditionally (the run finished).
    pub fn release(&self, run_id: &str) {
        self.lock().remove(run_id);
    }

    /// Ends the run's driver unless `still_needed` says otherwise, deciding under the
    /// lock so that a concurrent `claim_or_notify` either wakes us or starts a new driver.
    pub fn release_unless(&self, run_id: &str, still_needed: impl FnOnce() -> bool) -> bool {
        let mut runs = self.lock();
        if still_needed() {
            return false;
        }
        runs.remove(run_id);
        true
    }

    /// Asks the run's driver to end it as cancelled (a new driver does so at once).
    pub fn cancel(&self, run_id: &str) {
        let mut cancelled = self.cancelled.lock().unwrap_or_else(|p| p.into_inner());
        if cancelled.insert(run_id.to_string()) {
            self.cancelling.fetch_add(1, Ordering::SeqCst);
        }
        drop(cancelled);
        self.cancellations.notify_waiters();
    }

    /// Resolves once the run is cancelled (for host calls that wait outside wasm).
    pub async fn until_cancelled(&self, run_id: &str) {
        loop {
            let signalled = self.cancellations.notified();
            if self.is_cancelled(run_id) {
                return;
            }
            signalled.await;
        }
    }

    pub fn is_cancelled(&self, run_id: &str) -> bool {
        self.cancelling.load(Ordering::SeqCst) > 0
            && self.cancelled.lock().unwrap_or_else(|p| p.into_inner()).contains(run_id)
    }

    /// Forgets a cancellation once the run has ended.
    pub fn cancel_done(&self, run_id: &str) {
        if self.cancelled.lock().unwrap_or_else(|p| p.into_inner()).remove(run_id) {
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
        let live = LiveRuns::default();
        assert!(live.claim_or_notify("a"));
        assert!(!live.claim_or_notify("a"));
        live.release("a");
        assert!(live.claim_or_notify("a"));
    }

    #[test]
    fn release_unless_keeps_a_needed_driver() {
        let live = LiveRuns::default();
        assert!(live.claim_or_notify("a"));
        assert!(!live.release_unless("a", || true));
        assert!(!live.claim_or_notify("a"));
        assert!(live.release_unless("a", || false));
        assert!(live.claim_or_notify("a"));
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
