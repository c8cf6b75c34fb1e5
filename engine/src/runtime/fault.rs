//! Why a host call stopped the guest. A fault travels through wasmtime as a trap and is
//! turned back into a run outcome by `Runtime::execute`.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum HostFault {
    /// The run paused on a wait and its instance was dropped; it resumes by replay.
    #[error("run suspended")]
    Suspend,
    /// The guest took another path than the one its log recorded.
    #[error("{0}")]
    Nondeterminism(String),
    /// The guest called the host in a way the contract forbids.
    #[error("{0}")]
    Misuse(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl HostFault {
    /// The failure code a run that ends on this fault gets.
    pub fn code(&self) -> &'static str {
        match self {
            HostFault::Suspend => "suspended",
            HostFault::Nondeterminism(_) => "nondeterminism",
            HostFault::Misuse(_) => "host-call-misuse",
            HostFault::Store(_) => "storage",
        }
    }
}
