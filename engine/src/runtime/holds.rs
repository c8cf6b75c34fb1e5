//! HTTP callers held while their call is with a run: until the run takes the call into
//! its log, refuses it (its webhook closed, it ended), or answers it (manual response).
//! The run's side reports what became of each call; a caller waits for what it needs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::store::records::{HttpResponse, NotTakenReason};

/// Where a held call stands.
#[derive(Debug, Clone, PartialEq)]
pub enum CallState {
    /// In the run's inbox, not taken yet.
    Queued,
    /// In the run's log, durably.
    Taken,
    /// The run will never take it.
    Refused(NotTakenReason),
    /// The run answered it (it was taken first); durable before it is reported.
    Answered(HttpResponse),
    /// The run took it and ended without answering it.
    Unanswered,
}

impl CallState {
    /// Whether the call is in the run's log.
    pub fn is_taken(&self) -> bool {
        matches!(self, CallState::Taken | CallState::Answered(_) | CallState::Unanswered)
    }
}

pub struct Holds {
    calls: Mutex<HashMap<String, watch::Sender<CallState>>>,
    /// At most this many callers are held at once (each holds a connection).
    max_held: usize,
}

impl Default for Holds {
    fn default() -> Self {
        Holds::new(usize::MAX)
    }
}

/// A caller's hold on a call; the registration ends with the last hold on it.
pub struct Hold {
    holds: Arc<Holds>,
    request_id: String,
    state: watch::Receiver<CallState>,
}

impl Holds {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<CallState>>> {
        // Single inserts and removes: a poisoned lock still holds a consistent map.
        self.calls.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn new(max_held: usize) -> Holds {
        Holds { calls: Mutex::default(), max_held }
    }

    /// Holds an outside caller for `request_id` (before the call is handed to its run,
    /// which may take or answer it at once); `None` when too many are held already.
    pub fn hold_caller(self: &Arc<Self>, request_id: &str) -> Option<Hold> {
        let held = self.lock().len();
        (held < self.max_held).then(|| self.hold(request_id))
    }

    /// Watches what becomes of `request_id` (or of anything named so).
    pub fn hold(self: &Arc<Self>, request_id: &str) -> Hold {
        let mut calls = self.lock();
        let state = match calls.get(request_id) {
            Some(sender) => sender.subscribe(),
            None => {
                let (sender, receiver) = watch::channel(CallState::Queued);
                calls.insert(request_id.to_string(), sender);
                receiver
            }
        };
        Hold { holds: self.clone(), request_id: request_id.to_string(), state }
    }

    /// Joins the callers already held for `request_id` (a sender's retry), if any.
    pub fn join(self: &Arc<Self>, request_id: &str) -> Option<Hold> {
        let state = self.lock().get(request_id)?.subscribe();
        Some(Hold { holds: self.clone(), request_id: request_id.to_string(), state })
    }

    /// Whether a caller waits on what becomes of `request_id`.
    pub fn is_held(&self, request_id: &str) -> bool {
        self.lock().contains_key(request_id)
    }

    fn report(&self, request_id: &str, update: impl FnOnce(&mut CallState) -> bool) {
        if let Some(sender) = self.lock().get(request_id) {
            sender.send_if_modified(update);
        }
    }

    /// The run took the call, durably.
    pub fn taken(&self, request_id: &str) {
        self.report(request_id, |state| match state {
            CallState::Queued => {
                *state = CallState::Taken;
                true
            }
            _ => false,
        });
    }

    /// The run will never take the call.
    pub fn refused(&self, request_id: &str, reason: NotTakenReason) {
        self.report(request_id, |state| match state {
            CallState::Queued => {
                *state = CallState::Refused(reason);
                true
            }
            _ => false,
        });
    }

    /// The run took the call and ended without answering it.
    pub fn unanswered(&self, request_id: &str) {
        self.report(request_id, |state| match state {
            CallState::Queued | CallState::Taken => {
                *state = CallState::Unanswered;
                true
            }
            _ => false,
        });
    }

    /// The run answered the call, durably.
    pub fn answer(&self, request_id: &str, response: HttpResponse) {
        self.report(request_id, |state| {
            *state = CallState::Answered(response);
            true
        });
    }
}

impl Hold {
    pub fn state(&self) -> CallState {
        self.state.borrow().clone()
    }

    /// Waits until `done` accepts the call's state, or until `deadline`; returns the state
    /// it saw last.
    pub async fn until(&mut self, deadline: tokio::time::Instant, done: impl Fn(&CallState) -> bool) -> CallState {
        let reached = match tokio::time::timeout_at(deadline, self.state.wait_for(|state| done(state))).await {
            Ok(Ok(state)) => Some(state.clone()),
            _ => None,
        };
        reached.unwrap_or_else(|| self.state())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut calls = self.holds.lock();
        // This hold's receiver still counts: it is the last when the count is one.
        if calls.get(&self.request_id).is_some_and(|sender| sender.receiver_count() <= 1) {
            calls.remove(&self.request_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn soon() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_millis(200)
    }

    #[tokio::test]
    async fn a_held_caller_sees_its_call_taken_then_answered() {
        let holds = Arc::new(Holds::default());
        let mut hold = holds.hold("rq-1");
        holds.taken("rq-1");
        assert_eq!(hold.until(soon(), CallState::is_taken).await, CallState::Taken);
        let response = HttpResponse { status: 200, headers: Vec::new(), body: "ok".into() };
        holds.answer("rq-1", response.clone());
        // A late `taken` does not hide the answer.
        holds.taken("rq-1");
        assert_eq!(hold.state(), CallState::Answered(response));
    }

    #[tokio::test]
    async fn a_refusal_after_a_take_is_ignored_and_unheld_calls_are_not_tracked() {
        let holds = Arc::new(Holds::default());
        holds.taken("nobody-holds-this");
        assert!(holds.join("nobody-holds-this").is_none());
        let hold = holds.hold("rq-2");
        holds.taken("rq-2");
        holds.refused("rq-2", NotTakenReason::RunEnded);
        assert_eq!(hold.state(), CallState::Taken);
    }

    #[tokio::test]
    async fn the_registration_ends_with_the_last_hold() {
        let holds = Arc::new(Holds::default());
        let first = holds.hold("rq-3");
        let retry = holds.join("rq-3").expect("joined");
        drop(first);
        assert!(holds.join("rq-3").is_some(), "the retry still holds it");
        drop(retry);
        assert!(holds.join("rq-3").is_none());
        let mut waiting = holds.hold("rq-4");
        assert_eq!(waiting.until(soon(), |s| *s != CallState::Queued).await, CallState::Queued, "timed out");
    }
}
