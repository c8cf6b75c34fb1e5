//! Guest limits: a CPU budget per activation and a memory ceiling, so that one guest that
//! loops or hoards memory fails alone while the engine serves every other run.
//!
//! CPU is watched with epoch interruption: a ticker thread advances the engine's epoch
//! every `EPOCH_TICK`, and at each tick a running guest yields to tokio (no worker is
//! held by one guest) and has its CPU time checked. Time parked in a wait does not count.
//! The same tick stops a running guest whose run was cancelled.

use std::time::{Duration, Instant};

use wasmtime::{Engine, ResourceLimiter, UpdateDeadline};

use super::HostState;
use super::fault::HostFault;

const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// How often a running guest is checked (and yields).
const EPOCH_TICK: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy)]
pub struct GuestLimits {
    /// Guest CPU time one activation (from instantiation to its end or suspension) may use.
    pub cpu_per_activation: Duration,
    /// Largest linear memory a guest may grow to, in bytes.
    pub memory_bytes: usize,
}

/// What one run may hold: past a quota the run fails as `quota-exceeded` (its log, its
/// webhooks), or a call to it is refused with 429 (its inbox).
#[derive(Debug, Clone, Copy)]
pub struct RunQuotas {
    pub webhooks: usize,
    /// Timers it may set over its life (each `sleep`, and each wait with a deadline, sets one).
    pub timers: usize,
    /// Events in its log (every wait, and so every timer, is one).
    pub events: usize,
    /// Bytes of its log.
    pub log_bytes: u64,
    /// Calls waiting in its inbox, and their bytes.
    pub queued_calls: usize,
    pub queued_bytes: u64,
}

/// The guest's running time in this activation; waits are excluded.
#[derive(Debug, Default)]
pub struct CpuClock {
    used: Duration,
    running_since: Option<Instant>,
}

impl CpuClock {
    pub fn resume(&mut self) {
        self.running_since.get_or_insert_with(Instant::now);
    }

    /// Starts a new activation's budget.
    pub fn restart(&mut self) {
        self.used = Duration::ZERO;
        self.running_since = Some(Instant::now());
    }

    pub fn pause(&mut self) {
        if let Some(since) = self.running_since.take() {
            self.used += since.elapsed();
        }
    }

    fn used(&self) -> Duration {
        self.used + self.running_since.map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// What is left of `budget` in this activation.
    pub fn remaining(&self, budget: Duration) -> Duration {
        budget.saturating_sub(self.used())
    }
}

/// Refuses (with a `memory-limit` fault, which traps the guest) any growth past the ceiling.
pub struct MemoryCeiling {
    bytes: usize,
}

impl MemoryCeiling {
    pub fn new(bytes: usize) -> Self {
        MemoryCeiling { bytes }
    }
}

impl ResourceLimiter for MemoryCeiling {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.bytes {
            return Err(HostFault::MemoryLimit { limit: self.bytes, desired }.into());
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Tables hold function references, a few per function: a million is far past any
        // real guest, and refusing more keeps one guest from exhausting the host.
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// Instances alive at once beyond the runs executing: an upload's `describe()` (uploads
/// go one at a time) and one to spare.
const INSTANCES_BESIDE_RUNS: u32 = 2;
/// What one component instance may use of the pool: its core modules (a guest, its libc,
/// the WASI adapter...), their memories and tables. Python and JavaScript components use
/// a handful of each.
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;
const MEMORIES_PER_COMPONENT: u32 = 4;
const TABLES_PER_COMPONENT: u32 = 16;
/// How much of a memory and of a table slot is reset in place (a memset) rather than
/// given back with madvise, whose TLB flush interrupts every core and whose pages the next
/// instance faults back in. Without Linux's PAGEMAP_SCAN the lowest addresses are reset
/// whether touched or not, so little is kept: more would cost memsets every activation
/// pays. With it, only the pages an instance touched are reset, wherever they lie (a Rust
/// guest's stack fills its first MiB): 1 MiB measured ~30% more runs a second than 64 KiB
/// (latch-bench --hot-path-only), 4 MiB no more.
const MEMORY_KEPT_RESIDENT: usize = 64 << 10;
const MEMORY_KEPT_RESIDENT_SCANNED: usize = 1 << 20;
const TABLE_KEPT_RESIDENT: usize = 16 << 10;

/// Whether guest memories are reset with Linux's PAGEMAP_SCAN (6.7 and later): only where
/// the host has no swap. The scan sees only pages that are present: one written and then
/// swapped out would keep its contents for the slot's next instance (wasmtime issue
/// #14357), a leak from one run to another. Without the scan, memories are reset as before.
pub fn memories_reset_by_scan() -> bool {
    wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() && !swap_configured()
}

/// Whether `/proc/swaps` lists a swap device (zram included); unreadable counts as yes.
fn swap_configured() -> bool {
    std::fs::read_to_string("/proc/swaps").map_or(true, |swaps| lists_swap(&swaps))
}

/// Whether the text of `/proc/swaps` lists a device below its header line.
fn lists_swap(swaps: &str) -> bool {
    swaps.lines().skip(1).any(|line| !line.trim().is_empty())
}

/// The pooling allocator, sized so that it never runs out: every live instance belongs to
/// an executing run (at most `executing` at once) or to an upload's `describe()`. Its
/// slots, fiber stacks included, are reused from one activation to the next: no mapping
/// and unmapping per activation, nor the TLB shootdowns that unmapping costs. `scanned`:
/// reset memories with PAGEMAP_SCAN (see `memories_reset_by_scan`).
pub fn pool(executing: usize, limits: GuestLimits, scanned: bool) -> wasmtime::PoolingAllocationConfig {
    let instances = u32::try_from(executing).unwrap_or(u32::MAX / 64).saturating_add(INSTANCES_BESIDE_RUNS);
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .total_memories(instances.saturating_mul(MEMORIES_PER_COMPONENT))
        .total_tables(instances.saturating_mul(TABLES_PER_COMPONENT))
        .total_stacks(instances)
        .max_memory_size(limits.memory_bytes)
        .table_elements(MAX_TABLE_ELEMENTS)
        .table_keep_resident(TABLE_KEPT_RESIDENT);
    if scanned {
        pool.pagemap_scan(wasmtime::Enabled::Yes).linear_memory_keep_resident(MEMORY_KEPT_RESIDENT_SCANNED);
    } else {
        pool.linear_memory_keep_resident(MEMORY_KEPT_RESIDENT);
    }
    pool
}

/// Advances the engine's epoch every tick, for as long as the engine exists.
pub fn start_epoch_ticker(engine: &Engine) -> std::io::Result<()> {
    let engine = engine.weak();
    std::thread::Builder::new().name("latch-epoch".into()).spawn(move || {
        while let Some(engine) = engine.upgrade() {
            engine.increment_epoch();
            drop(engine);
            std::thread::sleep(EPOCH_TICK);
        }
    })?;
    Ok(())
}

/// Puts a store under the limits.
pub fn apply(store: &mut wasmtime::Store<HostState>, limits: GuestLimits) {
    store.limiter(|state| &mut state.memory);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |context| {
        let state = context.data();
        if state.shared.live.is_cancelled(state.run.id) {
            return Err(HostFault::Cancelled.into());
        }
        if state.cpu.used() > limits.cpu_per_activation {
            return Err(HostFault::CpuLimit(limits.cpu_per_activation).into());
        }
        Ok(UpdateDeadline::Yield(1))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(scanned: bool) -> wasmtime::Result<wasmtime::Engine> {
        let limits = GuestLimits { cpu_per_activation: Duration::from_secs(1), memory_bytes: 64 << 20 };
        let mut config = wasmtime::Config::new();
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool(4, limits, scanned)));
        wasmtime::Engine::new(&config)
    }

    /// The pool without PAGEMAP_SCAN builds everywhere; with it, exactly where the kernel
    /// has the scan.
    #[test]
    fn the_pool_builds_with_the_scan_where_the_kernel_has_it_and_always_without() {
        engine(false).expect("the pool without the scan");
        assert_eq!(engine(true).is_ok(), wasmtime::PoolingAllocationConfig::is_pagemap_scan_available());
    }

    #[test]
    fn a_swap_device_listed_in_proc_swaps_is_seen() {
        let header = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";
        assert!(!lists_swap(header), "the header alone");
        assert!(!lists_swap(""));
        assert!(lists_swap(&format!("{header}/dev/zram0 partition\t8388604\t0\t100\n")));
        assert!(lists_swap(&format!("{header}/swapfile file\t1048572\t0\t-2\n")));
    }
}
