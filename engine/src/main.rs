//! The `latch` binary: `latch serve` runs the engine (with its embedded sled store, or
//! PostgreSQL); the other commands talk to a running server (`cli`).

mod cli;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use clap::{Parser, Subcommand};

use latch::clock::{SharedClock, SystemClock};
use latch::executor::{Executor, RunStateWriter};
use latch::http::server::ConnectionLimits;
use latch::http::{AppState, Dispatch, Limits};
use latch::runtime::outbound::OutboundLimits;
use latch::runtime::{AllowedHosts, GuestLimits, RunQuotas, Runtime, Settings, Shared};
use latch::store::{Leadership, Registry, Store};

#[derive(Parser)]
#[command(name = "latch", version, about = "A durable workflow engine whose workflows are WebAssembly components")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    connection: cli::Connection,
}

// Parsed once per process: the size of a variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Serve the admin API and webhook ingress.
    Serve(ServeArgs),
    /// Print the API's OpenAPI document (the one served at /openapi.json).
    Openapi,
    #[command(flatten)]
    Operation(cli::Operation),
}

#[derive(Parser)]
struct ServeArgs {
    /// Data directory (sled store and compiled-code cache).
    #[arg(long, default_value = "./latch-data")]
    data: PathBuf,
    /// How log lines are written to stderr.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Keep state in this PostgreSQL database (postgres://user@host:port/db) instead of the
    /// embedded sled store; the data dir then holds only compiled code.
    #[arg(long, env = "LATCH_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// With several nodes on one database: the URL the other nodes reach this one at, to
    /// pass it calls while it leads (default http:// and the address listened on).
    #[arg(long)]
    node_url: Option<String>,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Base of the URLs handed out; defaults to http:// and the address listened on.
    #[arg(long)]
    public_url: Option<String>,
    /// The admin key; without it one is made on first start and printed once.
    #[arg(long, env = "LATCH_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    /// Largest request body a webhook accepts, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_body_bytes: usize,
    /// Largest component upload, in bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    max_module_bytes: usize,
    /// How long a waiting run keeps its instance in memory before it is dropped, in ms.
    #[arg(long, default_value_t = 2000)]
    hot_hold_ms: u64,
    /// At most this many waiting runs keep their instance in memory.
    #[arg(long, default_value_t = 1024)]
    max_hot_runs: usize,
    /// Guest CPU time one activation of a run may use before it fails as `cpu-limit`, in ms.
    #[arg(long, default_value_t = 10_000)]
    cpu_budget_ms: u64,
    /// Largest memory a guest may grow to before its run fails as `memory-limit`, in MiB.
    #[arg(long, default_value_t = 256)]
    memory_limit_mib: usize,
    /// A host runs may call with outbound HTTP (repeatable): a name, `*.example.com` for
    /// subdomains, `*` for any, or an address; with `:PORT` (or `:*`) for other ports than
    /// 80 and 443. Internal addresses (loopback, link-local, private) are reached only when
    /// that address is named here. Without one, runs make no outbound calls.
    #[arg(long = "allow-http", value_name = "HOST")]
    allow_http: Vec<String>,
    /// Memory for sled's page cache, in MiB; past it, records are read back from disk.
    #[arg(long, default_value_t = 128)]
    cache_mib: u64,
    /// How long a caller of a many-call webhook or a named trigger is held for its run to
    /// take the call, in ms; then the call is withdrawn and the caller answered 503.
    #[arg(long, default_value_t = 10_000)]
    take_timeout_ms: u64,
    /// Time a caller has to send a request's head, and the longest a keep-alive connection
    /// may sit idle, in ms.
    #[arg(long, default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// Time a request body may take before it must arrive at `--min-body-rate-kib` on
    /// average, in ms (else 408).
    #[arg(long, default_value_t = 10_000)]
    body_timeout_ms: u64,
    /// Past the body timeout, how fast a body must keep arriving, in KiB/s (else 408).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    min_body_rate_kib: u64,
    /// A request's head (request line and headers), in KiB, 8 to 1024: one of this size is
    /// always read, one of twice this size never (431).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(8..=1024))]
    max_head_kib: u64,
    /// Largest answer a run's outbound call may get, in MiB, 1 to 1024 (past it the call
    /// fails as `too-large`; it must also fit in the run's log).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    max_outbound_answer_mib: u64,
    /// The longest a run's outbound call may take, whatever the run asks, in seconds (1 to
    /// 86400).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    max_outbound_seconds: u64,
    /// Memory all calls' bodies may hold at once, as read and as parsed, from their first
    /// byte until their caller is answered, in MiB (past it, 429).
    #[arg(long, default_value_t = 256)]
    max_body_buffer_mib: usize,
    /// Connections open at once; past it new ones wait in the listen backlog. Kept below
    /// the process's descriptor limit.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Runs executing at once (each holds its instance's memory); the rest queue.
    #[arg(long, default_value_t = 16)]
    max_active_runs: usize,
    /// Runs that may queue to execute; past it new runs and calls get 429.
    #[arg(long, default_value_t = 10_000)]
    max_queued_runs: usize,
    /// Callers held at once for their runs to take or answer their calls (past it, 429):
    /// each holds a connection.
    #[arg(long, default_value_t = 1_024)]
    max_held_calls: usize,
    /// Webhooks one run may create (past it the run fails as `quota-exceeded`).
    #[arg(long, default_value_t = 1_000)]
    max_run_webhooks: usize,
    /// Timers one run may set (each sleep or wait with a deadline sets one; past it the run
    /// fails as `quota-exceeded`). The default is what the events quota allows anyway (a
    /// timed wait is two events): set it lower to bound timers more tightly.
    #[arg(long, default_value_t = 50_000)]
    max_run_timers: usize,
    /// Events in one run's log (a log line, a wait and its timer, a step are each one).
    #[arg(long, default_value_t = 100_000)]
    max_run_events: usize,
    /// Size of one run's log, in MiB.
    #[arg(long, default_value_t = 64)]
    max_run_log_mib: u64,
    /// Calls waiting in one run's inbox (more get 429).
    #[arg(long, default_value_t = 100)]
    max_queued_calls: usize,
    /// Size of the calls waiting in one run's inbox, in MiB (more get 429).
    #[arg(long, default_value_t = 64)]
    max_queued_mib: u64,
    /// How long an ended run (completed, failed, cancelled) is kept, with its log and its
    /// calls, before it is deleted: a number and a unit, `s`, `m`, `h` or `d`.
    #[arg(long, default_value = "30d", value_parser = parse_duration)]
    retain: Duration,
}

/// `30d`, `12h`, `15m`, `90s`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("`{text}` is not a number and a unit (s, m, h, d)"))?;
    if number == 0 {
        return Err("a retention of zero would delete runs as they end".into());
    }
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{text}` needs a unit: s, m, h or d")),
    };
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}

/// Descriptors kept for the store, the compiled-code cache and outbound calls.
const DESCRIPTORS_KEPT: u64 = 128;

/// mimalloc: the server allocates and frees small records from many threads at once,
/// where glibc's allocator spent a tenth of the hot path's CPU time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let parsed = Cli::parse();
    match parsed.command {
        Command::Serve(args) => {
            init_logging(args.log_format);
            serve(args).await
        }
        Command::Openapi => {
            // A closed pipe (`latch openapi | head`) is no error of ours.
            let _ = writeln!(std::io::stdout(), "{}", latch::http::openapi_document());
            Ok(())
        }
        Command::Operation(operation) => {
            if let Err(e) = cli::run(parsed.connection, operation).await {
                // One line, for a person or a script to read.
                eprintln!("latch: {e:#}");
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    /// One JSON object a line, with the spans (a run's id among them) of each message.
    Json,
}

/// Logs to stderr, filtered by `RUST_LOG` (default: the engine's info and up).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "latch=info,warn".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(true).init(),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data).with_context(|| format!("creating {}", args.data.display()))?;
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let local = listener.local_addr()?;
    let public_url = args.public_url.clone().unwrap_or_else(|| format!("http://{local}"));
    let public_url = public_url.trim_end_matches('/').to_string();
    let connections = ConnectionLimits {
        header_timeout: Duration::from_millis(args.header_timeout_ms),
        max_head_bytes: (args.max_head_kib as usize) << 10,
        max_connections: connection_cap(args.max_connections),
        shutdown_grace: Duration::from_secs(10),
    };
    let Some(url) = args.database_url.clone() else {
        let store = Store::open(&args.data, args.cache_mib << 20).context("opening the sled store")?;
        let (app, resumed) = start_engine(&args, store.clone(), &public_url).await?;
        println!("latch listening on {local} (public URL {public_url}, {resumed} runs resumed)");
        latch::http::server::serve(listener, app, connections, shutdown_signal()).await;
        store.close().await?;
        return Ok(());
    };

    // Several nodes may share the database: one leads (drives the runs), the others pass
    // the calls they take on to it, and one of them leads when it is gone.
    let node_url = match (&args.node_url, local.ip().is_unspecified()) {
        (Some(url), _) => url.trim_end_matches('/').to_string(),
        (None, false) => format!("http://{local}"),
        (None, true) => anyhow::bail!("--node-url is needed with --listen {local}: the other nodes pass calls to it"),
    };
    let leadership = Arc::new(Leadership::connect(&url).await.context("connecting to the PostgreSQL database")?);
    let dispatch = Dispatch::new(leadership.clone(), limits(&args));
    // Served at once: until this node leads, its calls go to the leader (or get a 503).
    let server = tokio::spawn(latch::http::server::serve(listener, dispatch.router(), connections, shutdown_signal()));
    let follows = !leadership.try_lead().await?;
    if follows {
        let leader = leadership.leader_url().await?.unwrap_or_else(|| "(none yet)".into());
        println!("latch listening on {local} (public URL {public_url}, passing calls to the leader at {leader})");
        tokio::select! {
            led = leadership.lead() => led?,
            // Stopped while it followed: it has nothing of its own to finish.
            () = shutdown_signal() => return Ok(()),
        }
        tracing::info!("this node leads now: the node that led is gone");
    }
    // Watched from the moment it leads: another node may lead once the lease is lost, and
    // going on would drive runs twice.
    let watched = leadership.clone();
    tokio::spawn(async move {
        watched.lost().await;
        tracing::error!("this node lost its lease on the database; stopping");
        std::process::exit(1);
    });
    let store = Store::connect(&url).await.context("opening the PostgreSQL store")?;
    let (app, resumed) = start_engine(&args, store.clone(), &public_url).await?;
    dispatch.lead(app);
    leadership.announce(&node_url).await?;
    if !follows {
        println!("latch listening on {local} (public URL {public_url}, {resumed} runs resumed, leading)");
    }
    let _ = server.await;
    store.close().await?;
    Ok(())
}

/// The request limits the flags set.
fn limits(args: &ServeArgs) -> Limits {
    Limits {
        max_body_bytes: args.max_body_bytes,
        max_module_bytes: args.max_module_bytes,
        body_timeout: Duration::from_millis(args.body_timeout_ms),
        min_body_rate: args.min_body_rate_kib << 10,
        body_budget: latch::json::BodyBudget::new(args.max_body_buffer_mib << 20),
    }
}

/// The engine on `store`: runs recovered, timers started. Its router, and how many runs
/// were resumed.
async fn start_engine(args: &ServeArgs, store: Store, public_url: &str) -> anyhow::Result<(axum::Router, usize)> {
    // Durable before anyone sees it.
    let (admin_key_sha256, new_key) = latch::auth::admin_key(&store, args.admin_key.as_deref()).await?;
    if let Some(key) = new_key {
        println!("admin key (shown once, store it now): {key}");
    }
    let settings = Settings {
        public_url: public_url.to_string(),
        hot_hold: Duration::from_millis(args.hot_hold_ms),
        max_hot_runs: args.max_hot_runs,
        limits: GuestLimits {
            cpu_per_activation: Duration::from_millis(args.cpu_budget_ms),
            memory_bytes: args.memory_limit_mib << 20,
        },
        allow_http: AllowedHosts::new(args.allow_http.clone()).map_err(|e| anyhow::anyhow!("--allow-http: {e}"))?,
        outbound: OutboundLimits {
            max_answer_bytes: (args.max_outbound_answer_mib as usize) << 20,
            max_timeout: Duration::from_secs(args.max_outbound_seconds),
        },
        take_timeout: Duration::from_millis(args.take_timeout_ms),
        max_active_runs: args.max_active_runs,
        max_queued_runs: args.max_queued_runs,
        max_held_calls: args.max_held_calls,
        retain: args.retain,
        quotas: RunQuotas {
            webhooks: args.max_run_webhooks,
            timers: args.max_run_timers,
            events: args.max_run_events,
            log_bytes: args.max_run_log_mib << 20,
            queued_calls: args.max_queued_calls,
            queued_bytes: args.max_queued_mib << 20,
        },
    };
    let clock: SharedClock = Arc::new(SystemClock);
    let run_state = Arc::new(RunStateWriter::new(store.clone(), clock.clone()));
    let shared = Shared::new(store, clock, run_state.clone(), settings).await?;
    let executor = Executor::new(Runtime::new(shared, &args.data)?, run_state);
    let resumed = executor.recover().await?;
    executor.spawn_timers();
    let app = latch::http::router(Arc::new(AppState { executor, admin_key_sha256, limits: limits(args) }));
    Ok((app, resumed))
}

/// The connection cap, below the descriptors the process may open.
fn connection_cap(wanted: usize) -> usize {
    let cap = match latch::http::server::descriptor_limit() {
        Some(limit) => wanted.min(limit.saturating_sub(DESCRIPTORS_KEPT).max(16) as usize),
        None => wanted,
    };
    if cap < wanted {
        tracing::info!("at most {cap} connections at once: the process may open few descriptors");
    }
    cap.max(1)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--retain` takes each unit the README names, and refuses zero, no unit and others.
    #[test]
    fn a_retention_is_a_number_and_a_unit() {
        let day = Duration::from_secs(86_400);
        for (text, expected) in [("90s", 90), ("15m", 900), ("12h", 43_200), ("30d", 30 * 86_400)] {
            assert_eq!(parse_duration(text), Ok(Duration::from_secs(expected)), "{text}");
        }
        assert_eq!(parse_duration("1d"), Ok(day));
        for refused in ["0d", "30", "d", "3w", "-1h", "1.5h", ""] {
            assert!(parse_duration(refused).is_err(), "{refused} is refused");
        }
    }
}
