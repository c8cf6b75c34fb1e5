//! `wasi:clocks/monotonic-clock`, with sleeps that the run's limits reach: a guest blocked
//! in WASI `poll` (sleeping through WASI clocks, as language runtimes' timers do) runs no
//! wasm, so the epoch checks that enforce cancellation and the CPU budget cannot fire.
//! Here such a sleep ends when the run is cancelled or its CPU budget (which the sleep
//! uses up: the budget is wall time in an activation) runs out; back in wasm, the guest
//! traps at its next epoch check. Readings of the clock are the recorded, logical ones.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::Resource;
use wasmtime_wasi::clocks::WasiClocksView as _;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock::{self, Duration as WasiDuration, Instant};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

use super::{HostState, Shared};
use crate::ids::RunId;

/// A WASI sleep that also ends at the end of the run's CPU budget or at its cancellation.
struct GuardedSleep {
    until: tokio::time::Instant,
    shared: Arc<Shared>,
    run: RunId,
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuardedSleep {
    async fn ready(&mut self) {
        tokio::select! {
            () = tokio::time::sleep_until(self.until) => {}
            () = self.shared.live.until_cancelled(self.run) => {}
        }
    }
}

impl monotonic_clock::Host for HostState {
    fn now(&mut self) -> wasmtime::Result<Instant> {
        monotonic_clock::Host::now(&mut self.clocks())
    }

    fn resolution(&mut self) -> wasmtime::Result<Instant> {
        monotonic_clock::Host::resolution(&mut self.clocks())
    }

    fn subscribe_instant(&mut self, when: Instant) -> wasmtime::Result<Resource<DynPollable>> {
        // One reading, as upstream takes.
        let now = monotonic_clock::Host::now(&mut self.clocks())?;
        self.guarded_sleep(when.saturating_sub(now))
    }

    fn subscribe_duration(&mut self, nanos: WasiDuration) -> wasmtime::Result<Resource<DynPollable>> {
        self.guarded_sleep(nanos)
    }
}

impl HostState {
    fn guarded_sleep(&mut self, nanos: u64) -> wasmtime::Result<Resource<DynPollable>> {
        if nanos == 0 {
            // Upstream's pollable yields once: a guest polling without a timeout must not
            // starve the runtime.
            return monotonic_clock::Host::subscribe_duration(&mut self.clocks(), 0);
        }
        let left = self.cpu.remaining(self.shared.settings.limits.cpu_per_activation);
        let until = tokio::time::Instant::now() + Duration::from_nanos(nanos).min(left);
        let sleep = GuardedSleep { until, shared: self.shared.clone(), run: self.run.id };
        let sleep = self.table.push(sleep)?;
        subscribe(&mut self.table, sleep)
    }
}
