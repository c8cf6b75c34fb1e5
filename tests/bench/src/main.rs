//! `cargo run --release -p latch-bench`: starts real `latch` servers on loopback with
//! temporary data dirs, drives them over HTTP with the `bench-echo` plugin (and every
//! guest language's build of `order-payment` and `async-verification`), and prints a
//! table of the engine's hot paths. Latencies are medians with p99, as the caller sees them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures::{StreamExt, stream};
use latch_testkit::{Latch, plugin, send, target_dir, workspace};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "Measures Latch's hot paths on loopback and prints a table")]
struct Args {
    /// Runs started, then called back, for the throughput figures.
    #[arg(long, default_value_t = 5_000)]
    runs: usize,
    /// Concurrent HTTP callers.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Sequential calls for each latency figure.
    #[arg(long, default_value_t = 1_000)]
    samples: usize,
    /// Waiting runs for the parked-runs figures.
    #[arg(long, default_value_t = 100_000)]
    parked: usize,
    /// Only the figures per guest language.
    #[arg(long)]
    languages_only: bool,
    /// Only the cost of the server's guards (idle connections, overload refused with 429).
    #[arg(long)]
    guards_only: bool,
    /// Only the hot path: starts, callbacks accepted, runs finished, hot resume.
    #[arg(long)]
    hot_path_only: bool,
    /// Only how fast an upgrade's dry run checks waiting runs.
    #[arg(long)]
    upgrade_only: bool,
    /// Keep the measured servers' state in PostgreSQL (a throwaway server provisioned as
    /// the tests' is, a fresh database for each) instead of sled.
    #[arg(long)]
    postgres: bool,
    /// With --postgres: this many nodes on the one database, each call sent to the next
    /// node in turn (the hot path only).
    #[arg(long, default_value_t = 1)]
    nodes: usize,
}

/// Set once from `--postgres`: where the servers measured keep their state.
static ON_POSTGRES: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Set once from `--nodes`.
static NODES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// One line of the printed table.
struct Row {
    measure: String,
    value: String,
}

fn row(measure: impl Into<String>, value: impl Into<String>) -> Row {
    Row { measure: measure.into(), value: value.into() }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ON_POSTGRES.get_or_init(|| args.postgres);
    NODES.get_or_init(|| args.nodes);
    let binary = build_server()?;
    let mut rows = Vec::new();
    if args.nodes > 1 {
        if !args.postgres {
            bail!("--nodes needs --postgres: nodes share a PostgreSQL database");
        }
        let nodes = cluster(&binary, args.nodes).await?;
        rows.extend(cluster_throughput(&nodes, &args).await?);
        print_table(&rows);
        return Ok(());
    }
    if args.upgrade_only {
        let component = plugin("bench-echo");
        let latch = server(&binary, &["--hot-hold-ms", "0"], &component).await?;
        for (runs, history) in [(1_000, 0), (100, 1_000)] {
            rows.push(dry_run_checks(&latch, &component, runs, history, args.concurrency).await?);
        }
        print_table(&rows);
        return Ok(());
    }
    if args.hot_path_only {
        let latch = server(&binary, &[], &plugin("bench-echo")).await?;
        rows.extend(throughput(&latch, &args).await?);
        rows.push(hot_resume(&latch, args.samples).await?);
        print_table(&rows);
        return Ok(());
    }
    if !args.languages_only {
        rows.extend(guard_figures(&binary).await?);
    }
    if args.guards_only {
        print_table(&rows);
        return Ok(());
    }
    if !args.languages_only {
        rows.extend(engine_figures(&binary, &args).await?);
    }
    for (language, suffix) in LANGUAGES {
        rows.push(instantiation(language, &plugin(&format!("order-payment{suffix}")), args.samples).await?);
    }
    for (language, suffix) in LANGUAGES.iter().filter(|(_, suffix)| *suffix != "-c") {
        rows.push(replayed_guest_resume(&binary, language, suffix, args.samples.min(200)).await?);
    }
    print_table(&rows);
    Ok(())
}

async fn engine_figures(binary: &Path, args: &Args) -> anyhow::Result<Vec<Row>> {
    let component = plugin("bench-echo");
    let mut rows = Vec::new();

    let latch = server(binary, &[], &component).await?;
    rows.extend(throughput(&latch, args).await?);
    rows.push(hot_resume(&latch, args.samples).await?);
    drop(latch);

    // No hot hold: every resume instantiates the component and replays its log.
    let latch = server(binary, &["--hot-hold-ms", "0"], &component).await?;
    for history in [0, 10, 100, 1_000] {
        rows.push(replayed_resume(&latch, history, replay_samples(args.samples, history)).await?);
    }
    rows.push(timer_lateness(&latch).await?);
    drop(latch);

    let latch = server(binary, &["--hot-hold-ms", "0"], &component).await?;
    for (runs, history) in [(1_000, 0), (100, 1_000)] {
        rows.push(dry_run_checks(&latch, &component, runs, history, args.concurrency).await?);
    }
    drop(latch);

    let latch = server(binary, &[], &component).await?;
    rows.extend(parked_runs(&latch, args).await?);
    Ok(rows)
}

/// How fast an upgrade's dry run checks waiting runs: `runs` runs of `bench-echo` whose
/// logs hold `history` events besides their wait, replayed on another version of it (the
/// same code with a custom section added, so another version id).
async fn dry_run_checks(
    latch: &Latch,
    component: &[u8],
    runs: usize,
    history: usize,
    concurrency: usize,
) -> anyhow::Result<Row> {
    let kind = format!("dry{history}");
    let started = stream::iter(0..runs)
        .map(|n| start_run_patiently(latch, json!({ "token": token(&kind, n), "history": history })))
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    let ids = started.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    for id in &ids {
        until_status(latch, id, "waiting").await?;
    }
    // A custom section (id 0): a name and nothing else. Components take them anywhere.
    let mut other = component.to_vec();
    let name = format!("latch-bench-{history}");
    other.extend([0, name.len() as u8 + 1, name.len() as u8]);
    other.extend(name.as_bytes());
    let (status, body) = latch.upload("bench-echo", other).await;
    if !status.is_success() {
        bail!("upload failed: {status} {body}");
    }
    let to = body["version"]["version"].as_str().unwrap_or_default().to_string();
    let began = Instant::now();
    let request = latch.http.post(format!("{}/v1/modules/bench-echo/upgrade", latch.base));
    let body = json!({ "to": to, "runs": ids, "dry_run": true });
    let answer = request.bearer_auth(latch_testkit::ADMIN_KEY).json(&body).send().await?.text().await?;
    let elapsed = began.elapsed();
    let compatible = answer.lines().filter(|line| line.contains(r#""result":"compatible""#)).count();
    if compatible != runs {
        bail!("{compatible} of {runs} runs replayed on the other version: {answer}");
    }
    let (_, log) = latch.get(&format!("/v1/runs/{}/events", ids[0])).await;
    let events = log["events"].as_array().map_or(0, Vec::len);
    Ok(row(format!("upgrade dry run: waiting runs checked by replay ({events}-event logs)"), per_second(runs, elapsed)))
}

/// What the server's guards cost: its memory and how fast it answers, idle, while 1,000
/// idle connections are held open, and while an overload of new runs is refused with 429.
async fn guard_figures(binary: &Path) -> anyhow::Result<Vec<Row>> {
    const IDLE: usize = 1_000;
    const OVERLOAD: usize = 4_000;
    let mut rows = Vec::new();
    // Idle connections are held past the default header timeout for the measurement.
    let latch = Latch::start(binary, &["--header-timeout-ms", "120000"]).await;
    let idle_rss = rss_kib(&latch)?;
    rows.push(row(
        "idle server: RSS, and answer latency (GET /healthz)",
        format!("{} MiB; {}", idle_rss / 1024, healthz_latencies(&latch, 300).await?),
    ));
    let address = latch.base.trim_start_matches("http://").to_string();
    let mut held = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        held.push(tokio::net::TcpStream::connect(&address).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = rss_kib(&latch)?;
    let per_connection = (rss.saturating_sub(idle_rss) * 1024) as f64 / IDLE as f64;
    rows.push(row(
        format!("{IDLE} idle connections held open: RSS, and answer latency"),
        format!(
            "{} MiB ({per_connection:.0} bytes a connection); {}",
            rss / 1024,
            healthz_latencies(&latch, 300).await?
        ),
    ));
    drop(held);
    drop(latch);

    // One run executes, one may queue: every other call that would wake a run is refused
    // at once. Measured while it happens: the refusals' latency, a health check's, and RSS.
    let args = ["--max-active-runs", "1", "--max-queued-runs", "1", "--cpu-budget-ms", "60000"];
    let latch = Latch::start(binary, &args).await;
    for module in ["misbehave", "bench-echo"] {
        let (status, body) = latch.upload(module, plugin(module)).await;
        if !status.is_success() {
            bail!("upload failed: {status} {body}");
        }
    }
    const WAITING: usize = 200;
    start_parked(&latch, "overload", WAITING, 16).await?;
    for _ in 0..2 {
        start_run_of(&latch, "misbehave", json!({ "do": "spin" })).await?;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let began = Instant::now();
    let latch = &latch;
    let flooded = std::sync::atomic::AtomicBool::new(false);
    let flooding = async {
        let refused = stream::iter(0..OVERLOAD)
            .map(|n| async move {
                let started = Instant::now();
                let (status, _) = latch.resume(&token("overload", n % WAITING), &json!({ "n": n })).await;
                (status, started.elapsed())
            })
            .buffer_unordered(64)
            .collect::<Vec<_>>()
            .await;
        flooded.store(true, std::sync::atomic::Ordering::SeqCst);
        refused
    };
    let watching = async {
        let (mut peak_rss, mut health) = (0, Vec::new());
        while !flooded.load(std::sync::atomic::Ordering::SeqCst) {
            peak_rss = peak_rss.max(rss_kib(latch).unwrap_or(0));
            let asked = Instant::now();
            let (status, _) = send(latch.http.get(format!("{}/healthz", latch.base))).await;
            if status == StatusCode::OK {
                health.push(asked.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (peak_rss, health)
    };
    let (refused, (peak_rss, mut health)) = tokio::join!(flooding, watching);
    let elapsed = began.elapsed();
    let mut latencies: Vec<Duration> =
        refused.iter().filter(|(status, _)| *status == StatusCode::TOO_MANY_REQUESTS).map(|(_, d)| *d).collect();
    let count = latencies.len();
    rows.push(row(
        format!(
            "overload: {OVERLOAD} calls to {WAITING} waiting runs, 64 callers, one run executing: refused with 429"
        ),
        format!(
            "{count} in {:.2} s; peak RSS {} MiB; refusals {}; a health check meanwhile {}",
            elapsed.as_secs_f64(),
            peak_rss / 1024,
            percentiles(&mut latencies),
            percentiles(&mut health)
        ),
    ));
    Ok(rows)
}

async fn healthz_latencies(latch: &Latch, samples: usize) -> anyhow::Result<String> {
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        let began = Instant::now();
        let (status, _) = send(latch.http.get(format!("{}/healthz", latch.base))).await;
        if status != StatusCode::OK {
            bail!("healthz answered {status}");
        }
        latencies.push(began.elapsed());
    }
    Ok(percentiles(&mut latencies))
}

/// Builds the release server the benchmark measures.
fn build_server() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace())
        // With the benchmark in the same build, features unify as in `cargo run -p
        // latch-bench`: the engine is not built a second time with other features.
        .args(["build", "--release", "-p", "latch-engine", "-p", "latch-bench", "--bins"])
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("building the latch server failed");
    }
    Ok(target_dir().join("release").join("latch"))
}

async fn server(binary: &Path, args: &[&str], component: &[u8]) -> anyhow::Result<Latch> {
    let database = match ON_POSTGRES.get() {
        Some(true) => vec!["--database-url".to_string(), latch_testkit::postgres_database().await],
        _ => Vec::new(),
    };
    let args: Vec<&str> = args.iter().copied().chain(database.iter().map(String::as_str)).collect();
    let latch = Latch::start(binary, &args).await;
    let (status, body) = latch.upload("bench-echo", component.to_vec()).await;
    if !status.is_success() {
        bail!("upload failed: {status} {body}");
    }
    Ok(latch)
}

/// A token unique to this process, so a caller knows a run's URL before it starts. A
/// chosen token is no capability on its own: calls resume it with an API key
/// (`POST /v1/hooks/{token}`), as an API resumes a hook.
fn token(kind: &str, n: usize) -> String {
    format!("bench-{kind}-{}-{n}", std::process::id())
}

async fn start_run(latch: &Latch, input: Value) -> anyhow::Result<String> {
    start_run_of(latch, "bench-echo", input).await
}

async fn start_run_of(latch: &Latch, module: &str, input: Value) -> anyhow::Result<String> {
    let request = latch.http.post(format!("{}/v1/modules/{module}/runs", latch.base));
    let (status, body) = send(request.bearer_auth(latch_testkit::ADMIN_KEY).json(&input)).await;
    if status != StatusCode::CREATED {
        bail!("start failed: {status} {body}");
    }
    Ok(body["id"].as_str().unwrap_or_default().to_string())
}

/// Polls a run until it has `status`, cheaply.
async fn until_status(latch: &Latch, id: &str, status: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (_, run) = latch.get(&format!("/v1/runs/{id}")).await;
        if run["status"] == status {
            return Ok(());
        }
        if run["status"] == "failed" || Instant::now() > deadline {
            bail!("run {id} did not reach {status}: {run}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A counter of the server's `/metrics`, summed over its label sets that contain
/// `labels` (for instance `status="completed"`).
async fn counter(latch: &Latch, name: &str, labels: &str) -> anyhow::Result<u64> {
    let request = latch.http.get(format!("{}/metrics", latch.base)).bearer_auth(latch_testkit::ADMIN_KEY);
    let text = request.send().await?.text().await?;
    let mut total = 0;
    for line in text.lines().filter(|line| line.starts_with(name) && line.contains(labels)) {
        let value = line.rsplit(' ').next().unwrap_or_default();
        total += value.parse::<f64>().map_err(|e| anyhow::anyhow!("metric line `{line}`: {e}"))? as u64;
    }
    Ok(total)
}

/// Waits until a counter has grown by `by` from `from`. The counter is read every few
/// milliseconds: watching it costs the server next to nothing, where polling each run
/// would load it as much as the work measured.
async fn until_counted(latch: &Latch, name: &str, labels: &str, from: u64, by: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while counter(latch, name, labels).await? < from + by as u64 {
        if Instant::now() > deadline {
            bail!("{name}{{{labels}}} did not grow by {by}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Starts a run, as a client that honours 429 would: it tries again a moment later.
async fn start_run_patiently(latch: &Latch, input: Value) -> anyhow::Result<String> {
    loop {
        let request = latch.http.post(format!("{}/v1/modules/bench-echo/runs", latch.base));
        let (status, body) = send(request.bearer_auth(latch_testkit::ADMIN_KEY).json(&input)).await;
        match status {
            StatusCode::CREATED => return Ok(body["id"].as_str().unwrap_or_default().to_string()),
            StatusCode::TOO_MANY_REQUESTS => tokio::time::sleep(Duration::from_millis(10)).await,
            _ => bail!("start failed: {status} {body}"),
        }
    }
}

/// Starts `count` parked runs with tokens `token(kind, n)`, `concurrency` at a time, and
/// returns their ids once every one is parked at its wait.
async fn start_parked(latch: &Latch, kind: &str, count: usize, concurrency: usize) -> anyhow::Result<Vec<String>> {
    let parked = counter(latch, "latch_waits_parked", "").await?;
    let started = stream::iter(0..count)
        .map(|n| start_run_patiently(latch, json!({ "token": token(kind, n) })))
        .buffered(concurrency)
        .collect::<Vec<_>>()
        .await;
    let ids = started.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    until_counted(latch, "latch_waits_parked", "", parked, count).await?;
    Ok(ids)
}

/// Calls every run's hook once (each answered 202 once durable), then waits until every
/// run has completed. Returns the time to accept all calls and the time to finish all runs.
async fn call_back_all(
    latch: &Latch,
    kind: &str,
    ids: &[String],
    concurrency: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let completed = counter(latch, "latch_runs_ended", "status=\"completed\"").await?;
    let began = Instant::now();
    let accepted = stream::iter(0..ids.len())
        .map(|n| async move {
            let (status, body) = latch.resume(&token(kind, n), &json!({ "n": n })).await;
            if status != StatusCode::ACCEPTED {
                bail!("callback {n} answered {status} {body}");
            }
            anyhow::Ok(())
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    accepted.into_iter().collect::<anyhow::Result<()>>()?;
    let accepting = began.elapsed();
    until_counted(latch, "latch_runs_ended", "status=\"completed\"", completed, ids.len()).await?;
    Ok((accepting, began.elapsed()))
}

fn per_second(count: usize, elapsed: Duration) -> String {
    format!("{:.0} /s ({count} in {:.2} s)", count as f64 / elapsed.as_secs_f64(), elapsed.as_secs_f64())
}

async fn throughput(latch: &Latch, args: &Args) -> anyhow::Result<Vec<Row>> {
    let began = Instant::now();
    let ids = start_parked(latch, "tp", args.runs, args.concurrency).await?;
    let starting = began.elapsed();
    let (accepting, finishing) = call_back_all(latch, "tp", &ids, args.concurrency).await?;
    let callers = args.concurrency;
    Ok(vec![
        row("start throughput (run started, webhook created, parked)", per_second(args.runs, starting)),
        row(format!("durable callbacks accepted ({callers} concurrent callers)"), per_second(args.runs, accepting)),
        row("runs finished after their callback", per_second(args.runs, finishing)),
    ])
}

/// `count` nodes on one fresh database with `bench-echo` uploaded; the first one leads.
async fn cluster(binary: &Path, count: usize) -> anyhow::Result<Vec<Latch>> {
    let url = latch_testkit::postgres_database().await;
    let mut nodes = Vec::new();
    for _ in 0..count {
        nodes.push(Latch::start(binary, &["--database-url", &url]).await);
    }
    let (status, body) = nodes[0].upload("bench-echo", plugin("bench-echo")).await;
    if !status.is_success() {
        bail!("upload failed: {status} {body}");
    }
    Ok(nodes)
}

/// The hot path's throughput through several nodes: each start and each callback goes to
/// the next node in turn (a balancer's round robin); the nodes that do not lead pass them on.
async fn cluster_throughput(nodes: &[Latch], args: &Args) -> anyhow::Result<Vec<Row>> {
    let leader = &nodes[0];
    let key = leader.new_key("bench-resumer", &[]).await;
    let node = |n: usize| &nodes[n % nodes.len()];
    let parked = counter(leader, "latch_waits_parked", "").await?;
    let began = Instant::now();
    let started = stream::iter(0..args.runs)
        .map(|n| start_run_patiently(node(n), json!({ "token": token("cl", n) })))
        .buffer_unordered(args.concurrency)
        .collect::<Vec<_>>()
        .await;
    started.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    until_counted(leader, "latch_waits_parked", "", parked, args.runs).await?;
    let starting = began.elapsed();

    let completed = counter(leader, "latch_runs_ended", "status=\"completed\"").await?;
    let began = Instant::now();
    let accepted = stream::iter(0..args.runs)
        .map(|n| {
            let (node, key) = (node(n + 1), &key);
            async move {
                let request = node.http.post(format!("{}/v1/hooks/{}", node.base, token("cl", n)));
                let (status, body) = send(request.bearer_auth(key).json(&json!({ "n": n }))).await;
                if status != StatusCode::ACCEPTED {
                    bail!("callback {n} answered {status} {body}");
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(args.concurrency)
        .collect::<Vec<_>>()
        .await;
    accepted.into_iter().collect::<anyhow::Result<()>>()?;
    let accepting = began.elapsed();
    until_counted(leader, "latch_runs_ended", "status=\"completed\"", completed, args.runs).await?;
    let finishing = began.elapsed();
    let callers = args.concurrency;
    Ok(vec![
        row("start throughput (run started, webhook created, parked)", per_second(args.runs, starting)),
        row(format!("durable callbacks accepted ({callers} concurrent callers)"), per_second(args.runs, accepting)),
        row("runs finished after their callback", per_second(args.runs, finishing)),
    ])
}

/// Sends one call to a manual-response hook (its chosen token, resumed with an API key)
/// and returns how long the answer took.
async fn round_trip(latch: &Latch, token: &str) -> anyhow::Result<Duration> {
    let began = Instant::now();
    let (status, body) = latch.resume(token, &json!({ "ping": true })).await;
    let elapsed = began.elapsed();
    answered(status, &body)?;
    Ok(elapsed)
}

/// Sends one call to a manual-response hook's URL and returns how long the answer took.
async fn url_round_trip(latch: &Latch, url: &str) -> anyhow::Result<Duration> {
    let began = Instant::now();
    let (status, body) = send(latch.http.post(url).json(&json!({ "ping": true }))).await;
    let elapsed = began.elapsed();
    answered(status, &body)?;
    Ok(elapsed)
}

fn answered(status: StatusCode, body: &Value) -> anyhow::Result<()> {
    if status != StatusCode::OK {
        bail!("manual answer was {status} {body}");
    }
    Ok(())
}

async fn hot_resume(latch: &Latch, samples: usize) -> anyhow::Result<Row> {
    const WARM_UP: usize = 50;
    let token = token("hot", 0);
    let id = start_run(latch, json!({ "token": token, "rounds": samples + WARM_UP, "manual": true })).await?;
    until_status(latch, &id, "waiting").await?;
    let mut latencies = Vec::with_capacity(samples);
    for n in 0..samples + WARM_UP {
        let elapsed = round_trip(latch, &token).await?;
        if n >= WARM_UP {
            latencies.push(elapsed);
        }
    }
    Ok(row("resume latency, hot run (callback to the run's manual answer)", percentiles(&mut latencies)))
}

/// Fewer samples for long histories: each one replays the whole log.
fn replay_samples(samples: usize, history: usize) -> usize {
    (samples / (1 + history / 100)).clamp(20, 300)
}

async fn replayed_resume(latch: &Latch, history: usize, samples: usize) -> anyhow::Result<Row> {
    let mut latencies = Vec::with_capacity(samples);
    let mut events = 0;
    for n in 0..samples {
        let token = token(&format!("replay{history}"), n);
        let id = start_run(latch, json!({ "token": token, "history": history, "manual": true })).await?;
        until_status(latch, &id, "waiting").await?;
        // The hot hold is zero: give the instance a moment to be dropped.
        tokio::time::sleep(Duration::from_millis(5)).await;
        latencies.push(round_trip(latch, &token).await?);
        if n == 0 {
            let (_, log) = latch.get(&format!("/v1/runs/{id}/events")).await;
            events = log["events"].as_array().map_or(0, Vec::len);
        }
    }
    let measure = format!("resume latency, replayed run ({events}-event history)");
    Ok(row(measure, percentiles(&mut latencies)))
}

/// How late durable timers fire under light load: runs sleep with no instance held, so
/// the scheduler wakes each one and it resumes by replay.
async fn timer_lateness(latch: &Latch) -> anyhow::Result<Row> {
    const SLEEPERS: usize = 100;
    const SLEEP_MS: u64 = 300;
    let (status, body) = latch.upload("wait-patterns", plugin("wait-patterns")).await;
    if !status.is_success() {
        bail!("upload failed: {status} {body}");
    }
    let mut lateness = Vec::with_capacity(SLEEPERS);
    for _ in 0..SLEEPERS {
        let request = latch.http.post(format!("{}/v1/modules/wait-patterns/runs", latch.base));
        let input = json!({ "pattern": "sleep", "ms": SLEEP_MS });
        let (_, run) = send(request.bearer_auth(latch_testkit::ADMIN_KEY).json(&input)).await;
        let id = run["id"].as_str().unwrap_or_default().to_string();
        until_status(latch, &id, "completed").await?;
        let (_, run) = latch.get(&format!("/v1/runs/{id}")).await;
        let slept = run["output"]["slept_ms"].as_u64().context("slept_ms")?;
        lateness.push(Duration::from_millis(slept.saturating_sub(SLEEP_MS)));
    }
    Ok(row(format!("durable timer lateness ({SLEEP_MS} ms sleep, no instance held)"), percentiles(&mut lateness)))
}

async fn parked_runs(latch: &Latch, args: &Args) -> anyhow::Result<Vec<Row>> {
    let count = args.parked;
    let rss_before = rss_kib(latch)?;
    let began = Instant::now();
    let ids = start_parked(latch, "parked", count, args.concurrency).await?;
    let starting = began.elapsed();
    // Let the hot hold lapse so that every run has dropped its instance.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss = rss_kib(latch)?;
    let disk = dir_size(latch.data_dir());
    let (_, finishing) = call_back_all(latch, "parked", &ids, args.concurrency).await?;
    let per_run = (rss.saturating_sub(rss_before) * 1024) as f64 / count as f64;
    Ok(vec![
        row(format!("{count} parked runs: started"), per_second(count, starting)),
        row(
            format!("{count} parked runs: server RSS"),
            format!("{:.0} MiB ({per_run:.0} bytes per waiting run above the idle server)", rss as f64 / 1024.0),
        ),
        row(format!("{count} parked runs: data dir on disk"), format!("{:.0} MiB", disk as f64 / (1 << 20) as f64)),
        row(format!("{count} parked runs: all resumed and finished"), per_second(count, finishing)),
    ])
}

/// Resident memory of the server process, from /proc.
fn rss_kib(latch: &Latch) -> anyhow::Result<u64> {
    let pid = latch.pid().context("server is not running")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc")
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Each guest language, and the suffix of its builds' plugin folders.
const LANGUAGES: [(&str, &str); 4] = [("Rust", ""), ("Python", "-py"), ("JavaScript", "-js"), ("C", "-c")];

/// Resume by replay of `async-verification` built in one language: each sample starts a
/// run, which submits to a stand-in vendor in a recorded step and waits on its callback
/// URL with no instance held; the callback instantiates the guest, replays the step and
/// the wait, and the run answers the caller itself.
async fn replayed_guest_resume(binary: &Path, language: &str, suffix: &str, samples: usize) -> anyhow::Result<Row> {
    let vendor = stand_in_vendor().await?;
    let latch = Latch::start(binary, &["--hot-hold-ms", "0", "--allow-http", "127.0.0.1:*"]).await;
    let component = plugin(&format!("async-verification{suffix}"));
    let (status, body) = latch.upload("async-verification", component.clone()).await;
    if !status.is_success() {
        bail!("upload failed: {status} {body}");
    }
    let mut latencies = Vec::with_capacity(samples);
    for n in 0..samples {
        let input = json!({ "document_id": format!("doc-{n}"), "vendor_url": vendor, "deadline_ms": 600_000 });
        let id = start_run_of(&latch, "async-verification", input).await?;
        until_status(&latch, &id, "waiting").await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (_, run) = latch.get(&format!("/v1/runs/{id}")).await;
        let callback = run["waiting_on"][0]["url"].as_str().context("the run's callback URL")?.to_string();
        latencies.push(url_round_trip(&latch, &callback).await?);
    }
    let measure = format!("resume by replay, {language} guest ({}): callback to the run's answer", size(&component));
    Ok(row(measure, percentiles(&mut latencies)))
}

/// A vendor that accepts every submission (202) and never calls back; returns its URL.
async fn stand_in_vendor() -> anyhow::Result<String> {
    let app = axum::Router::new().route("/submit", axum::routing::post(|| async { axum::http::StatusCode::ACCEPTED }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/submit", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// Instantiation of a guest, in process, from the engine's `InstancePre`.
async fn instantiation(language: &str, component: &[u8], samples: usize) -> anyhow::Result<Row> {
    use latch::runtime::{AllowedHosts, GuestLimits, Runtime, Settings, Shared};
    let dir = tempfile::tempdir()?;
    let store = latch::store::Store::open(dir.path(), 16 << 20)?;
    let limits = GuestLimits { cpu_per_activation: Duration::from_secs(10), memory_bytes: 256 << 20 };
    let settings = Settings {
        public_url: "http://bench".into(),
        hot_hold: Duration::ZERO,
        max_hot_runs: 0,
        limits,
        allow_http: AllowedHosts::default(),
        outbound: latch::runtime::outbound::OutboundLimits {
            max_answer_bytes: 1 << 20,
            max_timeout: Duration::from_secs(300),
        },
        take_timeout: Duration::from_secs(10),
        max_active_runs: 8,
        max_queued_runs: 100,
        max_held_calls: 100,
        retain: Duration::from_secs(3600),
        quotas: latch::runtime::RunQuotas {
            webhooks: 100,
            timers: 1000,
            events: 1000,
            log_bytes: 1 << 20,
            queued_calls: 100,
            queued_bytes: 1 << 20,
        },
    };
    let clock: latch::clock::SharedClock = std::sync::Arc::new(latch::clock::SystemClock);
    let run_state = std::sync::Arc::new(latch::executor::RunStateWriter::new(store.clone(), clock.clone()));
    let runtime = Runtime::new(Shared::new(store, clock, run_state, settings).await?, dir.path())?;
    let version = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(component));
    runtime.prepare(&version, component).await?;
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        let began = Instant::now();
        runtime.describe_version(&version).await?;
        latencies.push(began.elapsed());
    }
    Ok(row(format!("instantiation + one call, {language} guest ({})", size(component)), percentiles(&mut latencies)))
}

fn size(component: &[u8]) -> String {
    match component.len() {
        bytes if bytes < 1 << 20 => format!("{} KiB", bytes >> 10),
        bytes => format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64),
    }
}

fn percentiles(latencies: &mut [Duration]) -> String {
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!("p50 {:.3} ms, p99 {:.3} ms ({} samples)", ms(at(0.5)), ms(at(0.99)), latencies.len())
}

fn print_table(rows: &[Row]) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let nodes = NODES.get().copied().unwrap_or(1);
    let store = match ON_POSTGRES.get() {
        Some(true) if nodes > 1 => format!("PostgreSQL on loopback, {nodes} nodes sharing it (calls spread over them)"),
        Some(true) => "PostgreSQL on loopback (one node)".to_string(),
        _ => "sled on local disk".to_string(),
    };
    println!("\nLatch benchmark: {cores} cores, loopback HTTP, {store}\n");
    println!("| measure | result |");
    println!("|---|---|");
    for row in rows {
        println!("| {} | {} |", row.measure, row.value);
    }
}
