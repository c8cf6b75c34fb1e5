//! A workflow built to misbehave, so the tests can show that the engine contains it.
//!
//! Input: `{"do": "spin" | "hoard-memory" | "hold-memory" | "wasi-sleep" | "panic", "mib"?: n}`.
//! - `spin` loops forever (stopped by the CPU budget: `cpu-limit`);
//! - `hold-memory` takes `mib` MiB (default 64), touches it, then spins;
//! - `wasi-sleep` sleeps an hour through WASI's clocks, not the engine's durable sleep
//!   (stopped by the CPU budget, or by a cancellation);
//! - `many-webhooks` creates webhooks without end, `many-timers` sleeps 1 ms without end,
//!   `log-spam` logs 64 KiB lines without end, `huge-log` logs one line of `mib` MiB
//!   (each stopped by the run's quotas: `quota-exceeded`);
//! - `hoard-memory` keeps allocating and touching memory (stopped at the ceiling:
//!   `memory-limit`);
//! - `panic` panics with a message (the run fails as `trap` with that message).

use latch_sdk::{Error, ModuleInfo, Result, Start, Webhook, WebhookOptions, Workflow, log, sleep};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Input {
    #[serde(rename = "do")]
    action: String,
    #[serde(default = "sixty_four")]
    mib: usize,
}

fn sixty_four() -> usize {
    64
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
            "hold-memory" => {
                let held = vec![1u8; input.mib << 20];
                std::hint::black_box(&held);
                spin()
            }
            "many-webhooks" => loop {
                Webhook::create(WebhookOptions::new())?;
            },
            "many-timers" => loop {
                sleep(1);
            },
            "huge-log" => {
                log::info("x".repeat(input.mib << 20));
                Ok(Value::Null)
            }
            "log-spam" => {
                let line = "x".repeat(64 << 10);
                loop {
                    log::info(&line);
                }
            }
            "wasi-sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Ok(Value::Null)
            }
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
