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

    async fn patched(&mut self, id: String) -> wasmtime::Result<bool> {
        match self.journal.next_recorded()? {
            Some(Event::Patched { id: recorded }) if *recorded == id => {
                self.journal.replay("patched")?;
                Ok(true)
            }
            // The log was recorded before the change: the old path, and nothing consumed.
            Some(_) => Ok(false),
            None => {
                self.journal.record(Event::Patched { id })?;
                Ok(true)
            }
        }
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
