//! A workflow built to misbehave, so the tests can show that the engine contains it.
//!
//! Input: `{"do": "spin" | "hoard-memory" | "panic"}`.
//! - `spin` loops forever (stopped by the CPU budget: `cpu-limit`);
//! - `hoard-memory` keeps allocating and touching memory (stopped at the ceiling:
//!   `memory-limit`);
//! - `panic` panics with a message (the run fails as `trap` with that message).

use latch_sdk::{Error, ModuleInfo, Result, Start, Workflow};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Input {
    #[serde(rename = "do")]
    action: String,
}

struct Misbehave;

impl Workflow for Misbehave {
    fn describe() -> ModuleInfo {
        ModuleInfo::new("Misbehaves on purpose: spins, hoards memory or panics")
    }

    fn run(start: Start) -> Result<Value> {
        let input: Input = start.input()?;
        match input.action.as_str() {
            "spin" => spin(),
            "hoard-memory" => hoard_memory(),
            "panic" => panic!("the workflow gave up on purpose"),
            other => Err(Error::new("bad-input", format!("unknown action `{other}`"))),
        }
    }
}

fn spin() -> Result<Value> {
    let mut n: u64 = 0;
    loop {
        // black_box keeps the optimiser from proving the loop useless.
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn hoard_memory() -> Result<Value> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 8 << 20]);
        std::hint::black_box(&hoard);
    }
}

latch_sdk::workflow!(Misbehave);
