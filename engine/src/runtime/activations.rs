//! How many runs execute at once. A run holds an activation slot from instantiation until
//! its instance is dropped; past `max_active` the rest queue for a slot, and past
//! `max_queued` waiting, new work (a call that would wake a run, a new run) is refused
//! with 429 until the queue drains. A hot-parked instance gives its slot up as soon as
//! another run waits for one, so guest memory stays within `max_active` instances.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

pub struct Activations {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_queued: usize,
    /// Signalled when a run starts to wait for a slot: hot-parked instances give theirs up.
    wanted: Notify,
}

/// A run's activation slot; dropping it frees the slot.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Activations {
    pub fn new(max_active: usize, max_queued: usize) -> Activations {
        let slots = Arc::new(Semaphore::new(max_active.max(1)));
        Activations { slots, waiting: AtomicUsize::new(0), max_queued, wanted: Notify::new() }
    }

    /// Whether new work may queue for a slot.
    pub fn has_room(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) < self.max_queued
    }

    /// Whether some run waits for a slot.
    pub fn contended(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }

    /// Resolves when a run starts to wait for a slot.
    pub async fn wanted(&self) {
        self.wanted.notified().await;
    }

    /// Waits for a slot, first come first served.
    pub async fn slot(&self) -> Slot {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Slot { _permit: permit };
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        // One hot-parked instance gives its slot up for each run that waits (a permit is
        // kept if none is parked right now).
        self.wanted.notify_one();
        let permit = self.slots.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        match permit {
            Ok(permit) => Slot { _permit: permit },
            Err(_) => unreachable!("the slots' semaphore is never closed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_past_the_cap_queue_and_past_the_queue_new_work_is_refused() {
        let activations = Arc::new(Activations::new(1, 1));
        let first = activations.slot().await;
        assert!(activations.has_room() && !activations.contended());
        let queued = tokio::spawn({
            let activations = activations.clone();
            async move { activations.slot().await }
        });
        while !activations.contended() {
            tokio::task::yield_now().await;
        }
        assert!(!activations.has_room(), "the queue of one is full");
        drop(first);
        let _second = queued.await.expect("the queued run got the slot");
        assert!(activations.has_room());
    }
}
