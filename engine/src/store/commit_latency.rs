//! How long durable commits take: the time from asking for a write's durability until it
//! was (sled's shared fsync, PostgreSQL's synchronous commit). Exported with the engine's
//! metrics as `latch_store_commit_seconds`.

use std::time::Instant;

use prometheus_client::metrics::histogram::Histogram;

/// A histogram every clone of a store adds to.
#[derive(Clone)]
pub struct CommitLatency(Histogram);

impl Default for CommitLatency {
    fn default() -> Self {
        // From a tenth of a millisecond (PostgreSQL on fast disks) to seconds (a stalled disk).
        CommitLatency(Histogram::new([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0, 10.0]))
    }
}

impl CommitLatency {
    /// Awaits `commit`, counting how long it took.
    pub async fn time<T>(&self, commit: impl Future<Output = T>) -> T {
        let began = Instant::now();
        let done = commit.await;
        self.0.observe(began.elapsed().as_secs_f64());
        done
    }

    /// The histogram, to register with the engine's metrics.
    pub fn histogram(&self) -> Histogram {
        self.0.clone()
    }
}
