//! HTTP callers held until their run answers them (manual response mode).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::store::records::HttpResponse;

#[derive(Default)]
pub struct PendingResponses {
    waiting: Mutex<HashMap<String, oneshot::Sender<HttpResponse>>>,
}

impl PendingResponses {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<HttpResponse>>> {
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a caller waiting for the answer to `request_id`.
    pub fn hold(&self, request_id: &str) -> oneshot::Receiver<HttpResponse> {
        let (sender, receiver) = oneshot::channel();
        self.lock().insert(request_id.to_string(), sender);
        receiver
    }

    /// Hands the answer to the caller, if it is still there.
    pub fn answer(&self, request_id: &str, response: HttpResponse) {
        if let Some(sender) = self.lock().remove(request_id) {
            // The caller may have hung up; the response is recorded either way.
            let _ = sender.send(response);
        }
    }

    /// Forgets a caller whose deadline passed.
    pub fn forget(&self, request_id: &str) {
        self.lock().remove(request_id);
    }
}
