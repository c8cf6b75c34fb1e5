//! The shared process harness, pointed at the `latch` binary cargo built for these tests.

pub use latch_testkit::{ADMIN_KEY, Latch, error_code, plugin, send};

/// Whether this test binary runs the suite on PostgreSQL (the `e2e_postgres` target, built
/// from the same files) instead of the embedded sled store.
pub fn on_postgres() -> bool {
    env!("CARGO_CRATE_NAME") == "e2e_postgres"
}

/// For the few tests that write into or measure sled's files: true (and said) on the
/// PostgreSQL target, where they have nothing to look at.
pub fn reads_sled_files() -> bool {
    if on_postgres() {
        eprintln!("this test reads sled's files; on PostgreSQL it has none to read");
    }
    on_postgres()
}

/// The arguments that put a server on this binary's backend: a fresh database each.
pub async fn backend_args() -> Vec<String> {
    match on_postgres() {
        true => vec!["--database-url".into(), latch_testkit::postgres_database().await],
        false => Vec::new(),
    }
}

/// A fresh `latch serve` with default settings.
pub async fn start() -> Latch {
    start_with(&[]).await
}

/// A fresh `latch serve` with extra arguments.
pub async fn start_with(args: &[&str]) -> Latch {
    let backend = backend_args().await;
    let args: Vec<&str> = args.iter().copied().chain(backend.iter().map(String::as_str)).collect();
    Latch::start_checking_answers(env!("CARGO_BIN_EXE_latch").as_ref(), &args).await
}
