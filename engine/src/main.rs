//! The `latch` binary: `latch serve` runs the engine with its embedded sled store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use clap::{Parser, Subcommand};

use latch::executor::Executor;
use latch::http::{AppState, Limits};
use latch::runtime::{AllowedHosts, GuestLimits, Runtime, Settings, Shared};
use latch::store::Store;

#[derive(Parser)]
#[command(name = "latch", version, about = "A durable workflow engine whose workflows are WebAssembly components")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the admin API and webhook ingress.
    Serve(ServeArgs),
}

#[derive(Parser)]
struct ServeArgs {
    /// Data directory (sled store and compiled-code cache).
    #[arg(long, default_value = "./latch-data")]
    data: PathBuf,
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
    /// A host runs may call with outbound HTTP (repeatable; `*.example.com` for
    /// subdomains, `*` for any). Without one, runs make no outbound calls.
    #[arg(long = "allow-http", value_name = "HOST")]
    allow_http: Vec<String>,
    /// Memory for sled's page cache, in MiB; past it, records are read back from disk.
    #[arg(long, default_value_t = 128)]
    cache_mib: u64,
    /// How long a caller of a many-call webhook or a named trigger is held for its run to
    /// take the call, in ms; then the call is withdrawn and the caller answered 503.
    #[arg(long, default_value_t = 10_000)]
    take_timeout_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "latch=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data).with_context(|| format!("creating {}", args.data.display()))?;
    let store = Store::open(&args.data, args.cache_mib << 20).context("opening the sled store")?;
    let (admin_key_sha256, new_key) = latch::auth::admin_key(&store, args.admin_key.as_deref())?;
    if let Some(key) = new_key {
        // Durable before anyone sees it.
        store.flush().await?;
        println!("admin key (shown once, store it now): {key}");
    }

    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let local = listener.local_addr()?;
    let public_url = args.public_url.unwrap_or_else(|| format!("http://{local}")).trim_end_matches('/').to_string();

    let settings = Settings {
        public_url: public_url.clone(),
        hot_hold: Duration::from_millis(args.hot_hold_ms),
        max_hot_runs: args.max_hot_runs,
        limits: GuestLimits {
            cpu_per_activation: Duration::from_millis(args.cpu_budget_ms),
            memory_bytes: args.memory_limit_mib << 20,
        },
        allow_http: AllowedHosts::new(args.allow_http),
        take_timeout: Duration::from_millis(args.take_timeout_ms),
    };
    let shared = Shared::new(store.clone(), settings)?;
    let executor = Executor::new(Runtime::new(shared, &args.data)?);
    let resumed = executor.recover()?;
    executor.spawn_timers();

    let app = latch::http::router(Arc::new(AppState {
        executor,
        store: store.clone(),
        admin_key_sha256,
        limits: Limits { max_body_bytes: args.max_body_bytes, max_module_bytes: args.max_module_bytes },
    }));
    // Without TCP_NODELAY a response written as headers then body waits ~40 ms for the
    // client's delayed ACK.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!("cannot set TCP_NODELAY: {e}");
        }
    });
    println!("latch listening on {local} (public URL {public_url}, {resumed} runs resumed)");
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
    store.flush().await?;
    Ok(())
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
