//! The WASI view of time and randomness a guest gets: a function of its `started` event
//! and of its own calls, so a replay sees exactly what the first run saw. Real time and
//! fresh randomness come through `context.now-ms` and `context.random`, which are recorded.

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

/// Starts at the run's start time and moves one microsecond per reading.
struct LogicalWallClock {
    start: Duration,
    ticks: std::sync::atomic::AtomicU64,
}

impl HostWallClock for LogicalWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_micros(1)
    }

    fn now(&self) -> Duration {
        let tick = self.ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.start + Duration::from_micros(tick)
    }
}

/// Moves one microsecond (in nanoseconds) per reading.
#[derive(Default)]
struct LogicalMonotonicClock {
    ticks: std::sync::atomic::AtomicU64,
}

impl HostMonotonicClock for LogicalMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000
    }

    fn now(&self) -> u64 {
        self.ticks.fetch_add(1_000, std::sync::atomic::Ordering::Relaxed)
    }
}

/// A WASI context with no ambient authority: no files, sockets, environment or args;
/// stderr goes to `stderr` so a guest's panic message can be reported.
pub fn wasi_context(start_ms: u64, seed: u64, stderr: wasmtime_wasi::p2::pipe::MemoryOutputPipe) -> WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    builder
        .wall_clock(LogicalWallClock { start: Duration::from_millis(start_ms), ticks: Default::default() })
        .monotonic_clock(LogicalMonotonicClock::default())
        .secure_random(StdRng::seed_from_u64(seed))
        .insecure_random(StdRng::seed_from_u64(seed.rotate_left(32)))
        .insecure_random_seed(u128::from(seed))
        .stdout(wasmtime_wasi::p2::pipe::SinkOutputStream)
        .stderr(stderr);
    builder.build()
}
