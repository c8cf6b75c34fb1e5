//! The WASI view of time and randomness a guest gets: a function of its `started` event
//! and of its own calls, so a replay sees exactly what the first run saw. Real time and
//! fresh randomness come through `context.now-ms` and `context.random`, which are recorded.
//!
//! A replay skips the body of a step that already ran, and with it the clock readings and
//! random bytes the body took. So at the end of every step, live or replayed, both are
//! moved to a state that depends only on the run's seed and the step's place in the log.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_core::{Rng, TryRng};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

/// Readings one stretch of the log may take before its clocks could overlap the next.
const TICKS_PER_EVENT: u64 = 1 << 20;

/// Counts readings; each reading moves the clocks one microsecond.
#[derive(Default)]
struct Ticks {
    base: AtomicU64,
    count: AtomicU64,
}

impl Ticks {
    fn next(&self) -> u64 {
        self.base.load(Ordering::Relaxed) + self.count.fetch_add(1, Ordering::Relaxed)
    }
}

/// Starts at the run's start time and moves one microsecond per reading.
struct LogicalWallClock {
    start: Duration,
    ticks: Arc<Ticks>,
}

impl HostWallClock for LogicalWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_micros(1)
    }

    fn now(&self) -> Duration {
        self.start + Duration::from_micros(self.ticks.next())
    }
}

/// Moves one microsecond (in nanoseconds) per reading.
struct LogicalMonotonicClock {
    ticks: Arc<Ticks>,
}

impl HostMonotonicClock for LogicalMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000
    }

    fn now(&self) -> u64 {
        self.ticks.next().saturating_mul(1_000)
    }
}

/// A seeded generator the host can reseed while the guest holds it.
#[derive(Clone)]
struct SharedRng(Arc<Mutex<StdRng>>);

impl SharedRng {
    fn new(seed: u64) -> Self {
        SharedRng(Arc::new(Mutex::new(StdRng::seed_from_u64(seed))))
    }

    fn with<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    fn reseed(&self, seed: u64) {
        self.with(|rng| *rng = StdRng::seed_from_u64(seed));
    }
}

impl TryRng for SharedRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.with(|rng| rng.next_u32()))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.with(|rng| rng.next_u64()))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.with(|rng| rng.fill_bytes(dst));
        Ok(())
    }
}

/// The host's hold on a guest's clocks and randomness.
pub struct Determinism {
    seed: u64,
    ticks: Arc<Ticks>,
    secure: SharedRng,
    insecure: SharedRng,
}

impl Determinism {
    /// Moves clocks and randomness to the state for log position `position`: the same
    /// whether what came before it ran or was replayed.
    pub fn realign(&self, position: u64) {
        self.ticks.base.store(position.saturating_mul(TICKS_PER_EVENT), Ordering::Relaxed);
        self.ticks.count.store(0, Ordering::Relaxed);
        let mixed = self.seed ^ position.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.secure.reseed(mixed);
        self.insecure.reseed(mixed.rotate_left(32));
    }
}

/// A WASI context with no ambient authority: no files, sockets, environment or args;
/// stderr goes to `stderr` so a guest's panic message can be reported.
pub fn wasi_context(
    start_ms: u64,
    seed: u64,
    stderr: wasmtime_wasi::p2::pipe::MemoryOutputPipe,
) -> (WasiCtx, Determinism) {
    let ticks = Arc::new(Ticks::default());
    let (secure, insecure) = (SharedRng::new(seed), SharedRng::new(seed.rotate_left(32)));
    let mut builder = WasiCtxBuilder::new();
    builder
        .wall_clock(LogicalWallClock { start: Duration::from_millis(start_ms), ticks: ticks.clone() })
        .monotonic_clock(LogicalMonotonicClock { ticks: ticks.clone() })
        .secure_random(secure.clone())
        .insecure_random(insecure.clone())
        .insecure_random_seed(u128::from(seed))
        .stdout(wasmtime_wasi::p2::pipe::SinkOutputStream)
        .stderr(stderr);
    (builder.build(), Determinism { seed, ticks, secure, insecure })
}
