//! The operator's commands (`latch deploy`, `run`, `runs`, `show`, ...): a client of a running
//! server's admin API. Tables for people by default, `--json` for scripts; an error is one
//! line on stderr and a non-zero exit.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Subcommand;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// How often `run --wait` and `events --follow` look again.
const POLL: Duration = Duration::from_millis(200);

#[derive(clap::Args)]
pub struct Connection {
    /// The server's base URL.
    #[arg(long, env = "LATCH_URL", default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// The server's admin key.
    #[arg(long, env = "LATCH_ADMIN_KEY", hide_env_values = true, global = true)]
    key: Option<String>,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
pub enum Operation {
    /// Upload a component as a new version of a module.
    Deploy { name: String, file: PathBuf },
    /// Start a run of a module's newest version.
    Run {
        module: String,
        /// The run's input: JSON, or @FILE to read it from a file.
        #[arg(long, default_value = "{}")]
        input: String,
        /// Wait until the run ends and print its output (exit 1 if it failed or was cancelled).
        #[arg(long)]
        wait: bool,
    },
    /// List runs, newest first.
    Runs {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        module: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// A run: its status, the URLs it waits on, its output or error.
    Show { run: String },
    /// A run's event log.
    Events {
        run: String,
        /// Keep printing new events until the run ends.
        #[arg(long)]
        follow: bool,
    },
    /// Call a webhook or trigger URL as an outside system would.
    Call {
        url: String,
        /// The JSON body, or @FILE.
        #[arg(long, default_value = "{}")]
        data: String,
    },
    /// End a run as cancelled.
    Cancel { run: String },
    /// List modules with their newest version.
    Modules,
    /// Move waiting runs to another version of their module, each only if its log replays
    /// on the new code.
    Upgrade {
        module: String,
        /// The version to move to (as `latch deploy` printed it).
        #[arg(long)]
        to: String,
        /// A run to move (repeat it for several); without any, every waiting run.
        #[arg(long = "run")]
        runs: Vec<String>,
        /// Only check each run by replay; move none.
        #[arg(long)]
        dry_run: bool,
    },
    /// API keys for webhooks that take a bearer key.
    #[command(subcommand)]
    Keys(KeyOperation),
    /// Signing secrets webhooks verify signatures with.
    #[command(subcommand)]
    Secrets(SecretOperation),
}

#[derive(Subcommand)]
pub enum KeyOperation {
    /// Make a key; it is printed once.
    Create {
        name: String,
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    List,
    Revoke {
        name: String,
    },
}

#[derive(Subcommand)]
pub enum SecretOperation {
    /// Set a secret; its value is never shown again.
    Set {
        name: String,
        value: String,
    },
    List,
    Delete {
        name: String,
    },
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
    json: bool,
}

impl Client {
    /// Sends an admin request; a non-2xx answer is an error naming the server's code.
    async fn admin(&self, method: Method, path: &str, body: Option<Body>) -> anyhow::Result<Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        request = match body {
            Some(Body::Json(value)) => json_body(request, &value),
            Some(Body::Bytes(bytes)) => request.body(bytes),
            None => request,
        };
        let bytes = self.send(request).await?;
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// The body of a 2xx answer; any other is an error naming the server's code.
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Vec<u8>> {
        let response = request.send().await.with_context(|| format!("cannot reach {}", self.base))?;
        let status = response.status();
        let bytes = response.bytes().await.unwrap_or_default();
        if !status.is_success() {
            let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            bail!("{}", describe_error(status, &answer));
        }
        Ok(bytes.to_vec())
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.admin(Method::GET, path, None).await
    }

    /// Prints the server's JSON with `--json`, else what `table` makes of it.
    fn print(&self, answer: &Value, table: impl FnOnce(&Value) -> String) {
        match self.json {
            true => println!("{}", serde_json::to_string_pretty(answer).unwrap_or_default()),
            false => print!("{}", table(answer)),
        }
    }
}

enum Body {
    Json(Value),
    Bytes(Vec<u8>),
}

fn json_body(request: reqwest::RequestBuilder, value: &Value) -> reqwest::RequestBuilder {
    request.header(reqwest::header::CONTENT_TYPE, "application/json").body(value.to_string())
}

fn describe_error(status: StatusCode, answer: &Value) -> String {
    match (answer["error"]["code"].as_str(), answer["error"]["message"].as_str()) {
        (Some(code), Some(message)) => format!("{} {code}: {message}", status.as_u16()),
        _ => format!("the server answered {status}"),
    }
}

/// Runs one operation; the binary prints its error on one line and exits 1.
pub async fn run(connection: Connection, operation: Operation) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client {
        http: reqwest::Client::new(),
        base: connection.url.trim_end_matches('/').to_string(),
        key: connection.key,
        json: connection.json,
    };
    match operation {
        Operation::Deploy { name, file } => deploy(&client, &name, &file).await,
        Operation::Run { module, input, wait } => start(&client, &module, &input, wait).await,
        Operation::Runs { status, module, limit } => runs(&client, status, module, limit).await,
        Operation::Show { run } => show(&client, &run).await,
        Operation::Events { run, follow } => events(&client, &run, follow).await,
        Operation::Call { url, data } => call(&client, &url, &data).await,
        Operation::Cancel { run } => {
            let answer = client.admin(Method::POST, &format!("/v1/runs/{run}/cancel"), None).await?;
            client.print(&answer, |a| format!("{} {}\n", a["id"].as_str().unwrap_or(&run), text(&a["status"])));
            Ok(())
        }
        Operation::Modules => modules(&client).await,
        Operation::Upgrade { module, to, runs, dry_run } => upgrade(&client, &module, &to, runs, dry_run).await,
        Operation::Keys(operation) => keys(&client, operation).await,
        Operation::Secrets(operation) => secrets(&client, operation).await,
    }
}

/// Prints what became of each run as the server reports it, then the totals.
async fn upgrade(client: &Client, module: &str, to: &str, runs: Vec<String>, dry_run: bool) -> anyhow::Result<()> {
    let runs = if runs.is_empty() { json!("all-waiting") } else { json!(runs) };
    let mut request = client.http.post(format!("{}/v1/modules/{module}/upgrade", client.base));
    if let Some(key) = &client.key {
        request = request.bearer_auth(key);
    }
    let body = json!({ "to": to, "runs": runs, "dry_run": dry_run });
    let answer = client.send(json_body(request, &body)).await?;
    let lines: Vec<Value> =
        String::from_utf8_lossy(&answer).lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    let (summary, each): (Vec<&Value>, Vec<&Value>) = lines.iter().partition(|line| line.get("summary").is_some());
    let detail = |line: &Value| match (&line["divergence"], &line["reason"]) {
        (Value::Object(d), _) => format!(
            "event {}: the log has {}, the new code asked for {}",
            d["seq"],
            text(&d["recorded"]),
            text(&d["asked"])
        ),
        (_, Value::String(reason)) => reason.clone(),
        _ => String::new(),
    };
    client.print(&json!(lines), |_| {
        let rows = each.iter().map(|line| vec![text(&line["run"]), text(&line["result"]), detail(line)]);
        let totals = summary.first().map(|s| s["summary"].to_string()).unwrap_or_default();
        format!("{}{totals}\n", table(&["RUN", "RESULT", "DETAIL"], rows))
    });
    Ok(())
}

/// JSON given inline, or read from a file named after `@`.
fn json_argument(argument: &str) -> anyhow::Result<Value> {
    let text = match argument.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => argument.to_string(),
    };
    serde_json::from_str(&text).context("not JSON")
}

async fn deploy(client: &Client, name: &str, file: &std::path::Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let size = bytes.len();
    // The server compiles before it answers: a large component takes seconds.
    let progress = tokio::spawn(async move {
        let began = Instant::now();
        eprintln!("uploading {} KiB; the server compiles it", size / 1024);
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if std::io::stderr().is_terminal() {
                eprint!("\rcompiling... {} s", began.elapsed().as_secs());
            }
        }
    });
    let answer = client.admin(Method::PUT, &format!("/v1/modules/{name}"), Some(Body::Bytes(bytes))).await;
    progress.abort();
    if std::io::stderr().is_terminal() {
        eprint!("\r");
    }
    let answer = answer?;
    client.print(&answer, |a| {
        let new = if a["created"] == json!(true) { "new version" } else { "unchanged" };
        format!("{name} {} ({new})\n", short(&a["version"]["version"]))
    });
    Ok(())
}

async fn start(client: &Client, module: &str, input: &str, wait: bool) -> anyhow::Result<()> {
    let input = json_argument(input).context("--input")?;
    let started = client.admin(Method::POST, &format!("/v1/modules/{module}/runs"), Some(Body::Json(input))).await?;
    let id = started["id"].as_str().context("the server gave no run id")?.to_string();
    if !wait {
        client.print(&started, |a| format!("{id} {}\n", text(&a["status"])));
        return Ok(());
    }
    let run = loop {
        let run = client.get(&format!("/v1/runs/{id}")).await?;
        if matches!(run["status"].as_str(), Some("completed" | "failed" | "cancelled")) {
            break run;
        }
        tokio::time::sleep(POLL).await;
    };
    match run["status"].as_str() {
        Some("completed") => {
            client.print(&run, |r| format!("{}\n", serde_json::to_string_pretty(&r["output"]).unwrap_or_default()));
            Ok(())
        }
        Some("failed") => bail!("run {id} failed: {}: {}", text(&run["error"]["code"]), text(&run["error"]["message"])),
        _ => bail!("run {id} was cancelled"),
    }
}

async fn runs(client: &Client, status: Option<String>, module: Option<String>, limit: usize) -> anyhow::Result<()> {
    let mut path = format!("/v1/runs?limit={limit}");
    for (name, value) in [("status", status), ("module", module)] {
        if let Some(value) = value {
            path += &format!("&{name}={value}");
        }
    }
    let listed = client.get(&path).await?;
    let runs = listed["runs"].as_array().cloned().unwrap_or_default();
    client.print(&listed, |_| {
        let rows = runs.iter().map(|run| {
            let waiting = run["waiting_on"].as_array().map_or(0, Vec::len);
            vec![
                text(&run["id"]),
                text(&run["module"]),
                text(&run["status"]),
                age(run["created_at_ms"].as_u64()),
                if waiting == 0 { String::new() } else { waiting.to_string() },
            ]
        });
        table(&["ID", "MODULE", "STATUS", "STARTED", "WAITS ON"], rows)
    });
    Ok(())
}

async fn show(client: &Client, run: &str) -> anyhow::Result<()> {
    let answer = client.get(&format!("/v1/runs/{run}")).await?;
    client.print(&answer, |r| {
        let mut lines = vec![
            format!("run      {}", text(&r["id"])),
            format!("module   {} ({})", text(&r["module"]), short(&r["version"])),
            format!("status   {}", text(&r["status"])),
            format!("started  {}", age(r["created_at_ms"].as_u64())),
        ];
        for waiting in r["waiting_on"].as_array().into_iter().flatten() {
            let what = waiting.get("webhook").or_else(|| waiting.get("trigger")).map(text).unwrap_or_default();
            lines.push(format!("waits on {what}: {}", text(&waiting["url"])));
        }
        if let Some(output) = r.get("output") {
            lines.push(format!("output   {output}"));
        }
        if let Some(error) = r.get("error") {
            lines.push(format!("error    {}: {}", text(&error["code"]), text(&error["message"])));
        }
        lines.join("\n") + "\n"
    });
    Ok(())
}

async fn events(client: &Client, run: &str, follow: bool) -> anyhow::Result<()> {
    let mut shown = 0;
    loop {
        let answer = client.get(&format!("/v1/runs/{run}/events")).await?;
        let events = answer["events"].as_array().cloned().unwrap_or_default();
        for event in events.iter().skip(shown) {
            match client.json {
                true => println!("{event}"),
                false => println!("{:>4}  {:<16} {}", text(&event["seq"]), text(&event["type"]), summary(event)),
            }
        }
        shown = shown.max(events.len());
        let ended = events.iter().any(|e| matches!(e["type"].as_str(), Some("completed" | "failed" | "cancelled")));
        if !follow || ended {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What an event says, past its type, in a few words.
fn summary(event: &Value) -> String {
    let mut rest = event.as_object().cloned().unwrap_or_default();
    for field in ["seq", "type", "at_ms"] {
        rest.remove(field);
    }
    let text = Value::Object(rest).to_string();
    match text.char_indices().nth(100) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

async fn call(client: &Client, url: &str, data: &str) -> anyhow::Result<()> {
    let body = json_argument(data).context("--data")?;
    let request = json_body(client.http.post(url), &body);
    let response = request.send().await.with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let answer = response.text().await.unwrap_or_default();
    match client.json {
        true => println!(
            "{}",
            json!({ "status": status.as_u16(), "body": serde_json::from_str::<Value>(&answer).unwrap_or(Value::String(answer.clone())) })
        ),
        false => println!("{} {answer}", status.as_u16()),
    }
    if !status.is_success() {
        bail!("the call was answered {status}");
    }
    Ok(())
}

async fn modules(client: &Client) -> anyhow::Result<()> {
    let answer = client.get("/v1/modules").await?;
    client.print(&answer, |a| {
        let rows = a["modules"].as_array().into_iter().flatten().map(|m| {
            vec![
                text(&m["name"]),
                short(&m["latest"]["version"]),
                text(&m["versions"]),
                age(m["latest"]["uploaded_at_ms"].as_u64()),
                text(&m["latest"]["info"]["description"]),
            ]
        });
        table(&["NAME", "VERSION", "VERSIONS", "UPLOADED", "DESCRIPTION"], rows)
    });
    Ok(())
}

async fn keys(client: &Client, operation: KeyOperation) -> anyhow::Result<()> {
    match operation {
        KeyOperation::Create { name, roles } => {
            let body = json!({ "name": name, "roles": roles });
            let answer = client.admin(Method::POST, "/v1/keys", Some(Body::Json(body))).await?;
            client.print(&answer, |a| format!("{}\n", text(&a["key"])));
        }
        KeyOperation::List => {
            let answer = client.get("/v1/keys").await?;
            client.print(&answer, |a| {
                let rows = a["keys"].as_array().into_iter().flatten().map(|k| {
                    let roles: Vec<String> = k["roles"].as_array().into_iter().flatten().map(text).collect();
                    vec![text(&k["name"]), roles.join(","), age(k["created_at_ms"].as_u64())]
                });
                table(&["NAME", "ROLES", "CREATED"], rows)
            });
        }
        KeyOperation::Revoke { name } => {
            let answer = client.admin(Method::DELETE, &format!("/v1/keys/{name}"), None).await?;
            client.print(&answer, |_| format!("revoked {name}\n"));
        }
    }
    Ok(())
}

async fn secrets(client: &Client, operation: SecretOperation) -> anyhow::Result<()> {
    match operation {
        SecretOperation::Set { name, value } => {
            let body = Some(Body::Json(json!({ "value": value })));
            let answer = client.admin(Method::PUT, &format!("/v1/secrets/{name}"), body).await?;
            client.print(&answer, |_| format!("set {name}\n"));
        }
        SecretOperation::List => {
            let answer = client.get("/v1/secrets").await?;
            client.print(&answer, |a| {
                let rows = a["secrets"].as_array().into_iter().flatten().map(|name| vec![text(name)]);
                table(&["NAME"], rows)
            });
        }
        SecretOperation::Delete { name } => {
            let answer = client.admin(Method::DELETE, &format!("/v1/secrets/{name}"), None).await?;
            client.print(&answer, |_| format!("deleted {name}\n"));
        }
    }
    Ok(())
}

/// A JSON value as plain text: strings without their quotes, null as nothing.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A version hash, shortened as git shortens commits.
fn short(version: &Value) -> String {
    text(version).chars().take(12).collect()
}

/// How long ago a time was, roughly.
fn age(at_ms: Option<u64>) -> String {
    let Some(at_ms) = at_ms else { return String::new() };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let seconds = now.saturating_sub(at_ms) / 1000;
    match seconds {
        0..60 => format!("{seconds}s ago"),
        60..3600 => format!("{}m ago", seconds / 60),
        3600..86400 => format!("{}h ago", seconds / 3600),
        _ => format!("{}d ago", seconds / 86400),
    }
}

/// Columns padded to their widest cell.
fn table(headers: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows.collect();
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([headers[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out += &line(row);
    }
    out
}
