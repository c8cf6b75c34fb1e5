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

/// A fresh `latch serve` with extra arguments and variables in its environment.
pub async fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Latch {
    let backend = backend_args().await;
    let args: Vec<&str> = args.iter().copied().chain(backend.iter().map(String::as_str)).collect();
    Latch::start_with_env(env!("CARGO_BIN_EXE_latch").as_ref(), &args, env).await
}

/// A stored record of a run that no reader can decode, as a bug or a disk could leave it.
pub enum Broken {
    /// The run's own record.
    Run,
    /// The first event of its log.
    FirstEvent,
    /// A call queued on its first webhook at `arrival` (a single-use webhook's slot is 0).
    QueuedCall { arrival: u64 },
}

/// Overwrites a record of run `id` with bytes that are not one, in a stopped server's
/// store: sled's files, or its PostgreSQL database.
pub async fn break_record(latch: &Latch, id: &str, broken: Broken) {
    let id = uuid::Uuid::parse_str(id).expect("a uuid");
    let garbage: &[u8] = b"{\"not a record\": [";
    if let Some(url) = latch.flag("--database-url") {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connects");
        tokio::spawn(connection);
        let statement = match broken {
            Broken::Run => "UPDATE runs SET record = $2 WHERE id = $1".to_string(),
            Broken::FirstEvent => "UPDATE events SET record = $2 WHERE run = $1 AND seq = 0".to_string(),
            Broken::QueuedCall { arrival } => format!(
                "INSERT INTO inbox (run, kind, channel, arrival, request) VALUES ($1, 0, '0000000001', {arrival}, $2) \
                 ON CONFLICT (run, kind, channel, arrival) DO UPDATE SET request = $2, mark = NULL"
            ),
        };
        let updated = client.execute(&statement, &[&id.as_bytes().as_slice(), &garbage]).await;
        let updated = updated.expect("updated");
        assert_eq!(updated, 1, "the record is there to break");
        return;
    }
    let db = sled::open(latch.data_dir().join("sled")).expect("the stopped server's store opens");
    match broken {
        Broken::Run => db.open_tree("runs").expect("runs").insert(id.as_bytes(), garbage),
        Broken::FirstEvent => {
            let first_event = [id.as_bytes().as_slice(), &0u64.to_be_bytes()].concat();
            db.open_tree("events").expect("events").insert(first_event, garbage)
        }
        Broken::QueuedCall { arrival } => {
            let call = [id.as_bytes().as_slice(), &1u32.to_be_bytes(), &arrival.to_be_bytes()].concat();
            db.open_tree("inbox").expect("inbox").insert(call, garbage)
        }
    }
    .expect("written");
    db.flush().expect("flushed");
}

/// Where a stopped server's store holds `needle`, if anywhere: a file of its data dir, or
/// a row of its PostgreSQL database (text, or bytes shown as hex).
pub async fn stored_anywhere(latch: &Latch, needle: &str) -> Option<String> {
    if let Some(found) = stored_in_database(latch, needle).await {
        return Some(found);
    }
    any_file_holds(latch.data_dir(), needle.as_bytes())
}

/// The table of the server's PostgreSQL database that holds `needle`, if it has one.
async fn stored_in_database(latch: &Latch, needle: &str) -> Option<String> {
    let url = latch.flag("--database-url")?;
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connects");
    tokio::spawn(connection);
    let tables = client
        .query("SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()", &[])
        .await
        .expect("tables");
    let as_hex = hex::encode(needle.as_bytes());
    for table in tables {
        let table: String = table.get(0);
        let query = format!("SELECT count(*) FROM \"{table}\" AS row WHERE strpos(row::text, $1) > 0 OR strpos(row::text, $2) > 0");
        let found: i64 = client.query_one(&query, &[&needle, &as_hex]).await.expect("scanned").get(0);
        if found > 0 {
            return Some(format!("table {table}"));
        }
    }
    None
}

/// Whether any file under `dir` holds `needle`.
fn any_file_holds(dir: &std::path::Path, needle: &[u8]) -> Option<String> {
    for entry in std::fs::read_dir(dir).ok()?.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = any_file_holds(&path, needle) {
                return Some(found);
            }
        } else if std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle)) {
            return Some(path.display().to_string());
        }
    }
    None
}
