//! The shared process harness, pointed at the `latch` binary cargo built for these tests.

pub use latch_testkit::{ADMIN_KEY, Latch, error_code, plugin, send};

/// A fresh `latch serve` with default settings.
pub async fn start() -> Latch {
    start_with(&[]).await
}

/// A fresh `latch serve` with extra arguments.
pub async fn start_with(args: &[&str]) -> Latch {
    Latch::start(env!("CARGO_BIN_EXE_latch").as_ref(), args).await
}
