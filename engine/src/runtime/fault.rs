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
    /// An operator cancelled the run.
    #[error("the run was cancelled")]
    Cancelled,
    /// The guest ran longer than its CPU budget in one activation.
    #[error("the run used more than its CPU budget of {} ms in one activation", .0.as_millis())]
    CpuLimit(std::time::Duration),
    /// The guest tried to grow its memory past the ceiling.
    #[error("the run tried to grow its memory to {desired} bytes, over the limit of {limit} bytes")]
    MemoryLimit { limit: usize, desired: usize },
    /// The run went past one of its quotas.
    #[error("{0}")]
    Quota(String),
    /// A checked replay (an upgrade's dry run) reached the end of the log: the code would
    /// go on live from here.
    #[error("the replay reached the end of the run's log")]
    ReplayEnd,
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
            HostFault::Cancelled => "cancelled",
            HostFault::CpuLimit(_) => "cpu-limit",
            HostFault::MemoryLimit { .. } => "memory-limit",
            HostFault::Quota(_) => "quota-exceeded",
            HostFault::ReplayEnd => "replay-end",
            HostFault::Store(_) => "storage",
        }
    }
}
