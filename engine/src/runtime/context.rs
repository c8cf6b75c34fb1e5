//! `latch:workflow/context`: what a run knows about itself, recorded where it could vary.

use super::HostState;
use super::bindings::context::{Host, Level};
use super::webhooks::diverged_unless;
use crate::store::records::Event;

impl Host for HostState {
    async fn run_id(&mut self) -> wasmtime::Result<String> {
        Ok(self.run.id.to_string())
    }

    async fn module_name(&mut self) -> wasmtime::Result<String> {
        Ok(self.run.module.to_string())
    }

    async fn now_ms(&mut self) -> wasmtime::Result<u64> {
        if let Some(Event::Now { ms }) = self.journal.replay("now")? {
            return Ok(ms);
        }
        let ms = self.shared.clock.now_ms();
        self.journal.record(Event::Now { ms })?;
        Ok(ms)
    }

    /// The first answer for an id holds for the rest of the run: a replay finds the first
    /// call at the same place in the log, and decides the same way.
    async fn patched(&mut self, id: String) -> wasmtime::Result<bool> {
        if let Some(answer) = self.patches.get(&id) {
            return Ok(*answer);
        }
        let answer = match self.journal.next_recorded()? {
            Some(Event::Patched { id: recorded }) if *recorded == id => {
                self.journal.replay("patched")?;
                true
            }
            // The log was recorded before the change: the old path, and nothing consumed.
            Some(_) => false,
            None => {
                self.journal.record(Event::Patched { id: id.clone() })?;
                true
            }
        };
        self.patches.insert(id, answer);
        Ok(answer)
    }

    async fn random(&mut self) -> wasmtime::Result<u64> {
        if let Some(Event::Random { value }) = self.journal.replay("random")? {
            return Ok(value);
        }
        let value = rand::random();
        self.journal.record(Event::Random { value })?;
        Ok(value)
    }

    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        // Compared and printed as written: a URL key is a placeholder.
        let written = self.journal.redactor().text(&message);
        if let Some(Event::Log { message: recorded, .. }) = self.journal.replay("log")? {
            return diverged_unless(recorded == written, || {
                format!("the run logs `{written}` where its log has `{recorded}`")
            });
        }
        let level = match level {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        tracing::info!(run = %self.run.id, level, "{written}");
        // The journal writes it as `written`.
        self.journal.record(Event::Log { level: level.to_string(), message })?;
        Ok(())
    }
}
