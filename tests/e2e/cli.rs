//! The operator's CLI: the real `latch` binary's commands against a real server.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{ADMIN_KEY, Latch, plugin, send, start, start_with};

/// Runs `latch ARGS` against the server, with its URL and admin key from the environment.
fn latch_cli(latch: &Latch, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_latch"))
        .args(args)
        .env("LATCH_URL", &latch.base)
        .env("LATCH_ADMIN_KEY", ADMIN_KEY)
        .output()
        .expect("the CLI runs")
}

/// Its stdout, once it succeeded.
fn ok(output: Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "failed: {stderr}");
    String::from_utf8(output.stdout).expect("utf-8")
}

/// Its one-line error, once it failed.
fn refused(output: Output) -> String {
    assert!(!output.status.success(), "it succeeded: {}", String::from_utf8_lossy(&output.stdout));
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    stderr
}

fn component_file(name: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), plugin(name)).expect("written");
    file
}

#[tokio::test]
async fn the_cli_deploys_starts_shows_calls_and_lists() {
    let latch = start().await;
    let file = component_file("order-payment");
    let path = file.path().to_str().expect("a path");
    let deployed = ok(latch_cli(&latch, &["deploy", "order-payment", path]));
    let (_, module) = latch.get("/v1/modules/order-payment").await;
    let version = module["versions"][0]["version"].as_str().expect("a version");
    assert_eq!(deployed, format!("order-payment {} (new version)\n", &version[..12]));
    assert!(ok(latch_cli(&latch, &["deploy", "order-payment", path])).contains("(unchanged)"));
    let modules = ok(latch_cli(&latch, &["modules"]));
    assert!(modules.starts_with("NAME") && modules.contains("order-payment"), "{modules}");

    let started = ok(latch_cli(&latch, &["run", "order-payment", "--input", r#"{"order_id":"o-1","amount":3}"#]));
    let id = started.split_whitespace().next().expect("an id").to_string();
    let url = latch.waiting_url(&id).await;
    let shown = ok(latch_cli(&latch, &["show", &id]));
    assert!(shown.contains(&format!("run      {id}")) && shown.contains(&url), "{shown}");

    let called = ok(latch_cli(&latch, &["call", &url, "--data", r#"{"status":"succeeded"}"#]));
    assert!(called.starts_with("202"), "{called}");
    latch.wait_for(&id, "completed").await;
    let again = refused(latch_cli(&latch, &["call", &url, "--data", "{}"]));
    assert!(again.contains("410"), "{again}");

    let listed = ok(latch_cli(&latch, &["runs", "--module", "order-payment", "--status", "completed"]));
    assert!(listed.lines().any(|line| line.starts_with(&id) && line.contains("completed")), "{listed}");
    let events = ok(latch_cli(&latch, &["events", &id]));
    assert!(events.contains("started"), "{events}");
    assert!(events.lines().last().is_some_and(|line| line.contains("completed")), "{events}");

    let json: Value = serde_json::from_str(&ok(latch_cli(&latch, &["--json", "runs", "--limit", "1"]))).expect("json");
    assert_eq!(json["runs"][0]["id"], id.as_str());
}

#[tokio::test]
async fn run_wait_prints_the_output_and_fails_with_the_runs_error() {
    let latch = start().await;
    latch.upload_plugin("order-payment").await;
    let input = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(input.path(), r#"{"amount": 5}"#).expect("written");
    let at_file = format!("@{}", input.path().display());
    let output = latch_cli(&latch, &["run", "order-payment", "--input", &at_file, "--wait"]);
    assert_eq!(output.status.code(), Some(1), "a failed run exits 1");
    let failed = refused(output);
    assert!(failed.contains("failed: bad-input"), "{failed}");

    // A run that completes once called: `--wait` and `events --follow` end with it.
    let binary = env!("CARGO_BIN_EXE_latch");
    let waiting = Command::new(binary)
        .args(["run", "order-payment", "--input", r#"{"order_id":"o-2","amount":1}"#, "--wait"])
        .env("LATCH_URL", &latch.base)
        .env("LATCH_ADMIN_KEY", ADMIN_KEY)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the CLI runs");
    let id = waiting_run_id(&latch).await;
    let follow = Command::new(binary)
        .args(["events", &id, "--follow"])
        .env("LATCH_URL", &latch.base)
        .env("LATCH_ADMIN_KEY", ADMIN_KEY)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the CLI runs");
    let url = latch.waiting_url(&id).await;
    crate::harness::send(latch.http.post(&url).json(&serde_json::json!({ "status": "succeeded" }))).await;
    let output = ok(waiting.wait_with_output().expect("it ends"));
    assert!(output.contains("\"paid\""), "{output}");
    let followed = ok(follow.wait_with_output().expect("it ends"));
    assert!(followed.lines().last().is_some_and(|line| line.contains("completed")), "{followed}");

    // A cancelled run: `--wait` exits 1 as well.
    let waiting = Command::new(binary)
        .args(["run", "order-payment", "--input", r#"{"order_id":"o-3","amount":1}"#, "--wait"])
        .env("LATCH_URL", &latch.base)
        .env("LATCH_ADMIN_KEY", ADMIN_KEY)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the CLI runs");
    let id = waiting_run_id(&latch).await;
    ok(latch_cli(&latch, &["cancel", &id]));
    let output = waiting.wait_with_output().expect("it ends");
    assert_eq!(output.status.code(), Some(1), "a cancelled run exits 1");
    let stderr = refused(output);
    assert!(stderr.contains("cancelled"), "{stderr}");
}

#[tokio::test]
async fn keys_secrets_and_cancel_from_the_cli_and_one_line_errors() {
    let latch = start().await;
    let key = ok(latch_cli(&latch, &["keys", "create", "ci", "--role", "deploy"]));
    assert!(key.trim().starts_with("latch_key_"), "{key}");
    assert!(ok(latch_cli(&latch, &["keys", "list"])).contains("ci    deploy"));
    ok(latch_cli(&latch, &["keys", "revoke", "ci"]));
    assert!(!ok(latch_cli(&latch, &["keys", "list"])).contains("ci "));

    ok(latch_cli(&latch, &["secrets", "set", "stripe", "whsec_value"]));
    let secrets = ok(latch_cli(&latch, &["secrets", "list"]));
    assert!(secrets.contains("stripe") && !secrets.contains("whsec_value"), "{secrets}");
    ok(latch_cli(&latch, &["secrets", "delete", "stripe"]));
    assert!(refused(latch_cli(&latch, &["secrets", "delete", "stripe"])).contains("404"));

    latch.upload_plugin("order-payment").await;
    let id = latch.start_run("order-payment", serde_json::json!({ "order_id": "o-3", "amount": 1 })).await;
    latch.waiting_url(&id).await;
    assert!(ok(latch_cli(&latch, &["cancel", &id])).contains("cancelled"));
    assert!(refused(latch_cli(&latch, &["cancel", &id])).contains("409"));

    let wrong_key = Command::new(env!("CARGO_BIN_EXE_latch"))
        .args(["runs", "--key", "not-the-key"])
        .env("LATCH_URL", &latch.base)
        .output()
        .expect("the CLI runs");
    assert!(refused(wrong_key).contains("401 bad-admin-key"));
    let nobody = Command::new(env!("CARGO_BIN_EXE_latch"))
        .args(["modules", "--url", "http://127.0.0.1:9"])
        .output()
        .expect("the CLI runs");
    assert!(refused(nobody).contains("cannot reach"));
}

#[tokio::test]
async fn upgrade_checks_and_moves_waiting_runs_and_says_where_a_version_diverges() {
    let latch = start().await;
    let deployed = |n: u32| {
        let file = component_file(&format!("order-discount-v{n}"));
        let out = ok(latch_cli(&latch, &["deploy", "order-discount", file.path().to_str().expect("path")]));
        // `NAME VERSION (new)`: the start of the version's id, enough to name it.
        out.split_whitespace().nth(1).expect("the version printed").to_string()
    };
    deployed(1);
    let id = latch.start_run("order-discount", serde_json::json!({ "order_id": "cli", "amount": 5.0 })).await;
    latch.wait_for(&id, "waiting").await;
    let (v2, v3) = (deployed(2), deployed(3));

    let diverges = ok(latch_cli(&latch, &["upgrade", "order-discount", "--to", &v3, "--dry-run"]));
    assert!(diverges.contains("diverges") && diverges.contains("event 1"), "{diverges}");
    let checked = ok(latch_cli(&latch, &["upgrade", "order-discount", "--to", &v2, "--run", &id, "--dry-run"]));
    assert!(checked.contains(&id) && checked.contains("compatible"), "{checked}");
    let moved = ok(latch_cli(&latch, &["--json", "upgrade", "order-discount", "--to", &v2]));
    let lines: Value = serde_json::from_str(&moved).expect("JSON");
    assert_eq!(lines[0]["result"], "upgraded", "{lines}");
    assert!(latch.run(&id).await["version"].as_str().expect("version").starts_with(&v2));
    let error = refused(latch_cli(&latch, &["upgrade", "order-discount", "--to", "nope"]));
    assert!(error.contains("unknown-version"), "{error}");
}

/// The README's promise that `latch serve --help` and its tables agree: every flag the
/// server takes is documented there.
#[test]
fn every_flag_of_latch_serve_is_in_the_readme() {
    let output = Command::new(env!("CARGO_BIN_EXE_latch")).args(["serve", "--help"]).output().expect("runs");
    let help = ok(output);
    let readme = include_str!("../../README.md");
    let flags: Vec<&str> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == '=')
        .filter(|word| word.starts_with("--") && word.len() > 2)
        .collect();
    assert!(flags.len() > 20, "the help lists the flags: {help}");
    let missing: Vec<_> = flags.iter().filter(|flag| !["--help"].contains(flag) && !readme.contains(*flag)).collect();
    assert!(missing.is_empty(), "flags of `latch serve` the README does not mention: {missing:?}");
}

/// The id of the one run waiting, once there is one (within 60 s).
async fn waiting_run_id(latch: &Latch) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, runs) = latch.get("/v1/runs?status=waiting").await;
        if let Some(id) = runs["runs"][0]["id"].as_str() {
            return id.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no run waits: {runs}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A server process, killed when dropped (a failed assertion leaves none behind).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `latch serve` on `data` with no admin key given, and what it printed before it
/// listened; its stdout is drained until it exits.
fn serve_without_a_key(data: &std::path::Path, backend: &[String]) -> (Server, String, Vec<String>) {
    let mut server = Command::new(env!("CARGO_BIN_EXE_latch"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(backend)
        .env_remove("LATCH_ADMIN_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("latch starts");
    let stdout = BufReader::new(server.stdout.take().expect("stdout"));
    let server = Server(server);
    let (lines, printed) = std::sync::mpsc::channel();
    std::thread::spawn(move || stdout.lines().map_while(Result::ok).for_each(|line| drop(lines.send(line))));
    let mut before = Vec::new();
    loop {
        let line = printed.recv_timeout(std::time::Duration::from_secs(60)).expect("latch prints its address");
        if let Some(rest) = line.strip_prefix("latch listening on ") {
            let address = rest.split_whitespace().next().expect("an address").to_string();
            return (server, format!("http://{address}"), before);
        }
        before.push(line);
    }
}

/// On its first start the server prints an admin key once: the key opens the admin API,
/// and a restart prints none and keeps it.
#[tokio::test]
async fn the_first_start_prints_an_admin_key_once() {
    let data = tempfile::tempdir().expect("a data dir");
    let backend = crate::harness::backend_args().await;
    let (first, base, printed) = serve_without_a_key(data.path(), &backend);
    let keys: Vec<&str> =
        printed.iter().filter_map(|line| line.strip_prefix("admin key (shown once, store it now): ")).collect();
    assert_eq!(keys.len(), 1, "one admin key is printed: {printed:?}");
    let key = keys[0].to_string();
    let http = latch_testkit::http_client();
    let modules = |base: &str, key: &str| http.get(format!("{base}/v1/modules")).bearer_auth(key).send();
    assert_eq!(modules(&base, &key).await.expect("answered").status(), StatusCode::OK);
    assert_eq!(modules(&base, "not-the-key").await.expect("answered").status(), StatusCode::UNAUTHORIZED);
    drop(first);

    let (_again, base, printed) = serve_without_a_key(data.path(), &backend);
    assert!(printed.iter().all(|line| !line.contains("admin key")), "a key is printed again: {printed:?}");
    assert_eq!(modules(&base, &key).await.expect("answered").status(), StatusCode::OK, "the key is kept");
}

/// `--public-url` is the base of the URLs runs hand out; calls to their paths reach them.
#[tokio::test]
async fn public_url_is_the_base_of_the_urls_handed_out() {
    let latch = start_with(&["--public-url", "https://flows.example.com"]).await;
    latch.upload_plugin("order-payment").await;
    let id = latch.start_run("order-payment", json!({ "order_id": "o-1", "amount": 1 })).await;
    let url = latch.waiting_url(&id).await;
    assert!(url.starts_with("https://flows.example.com/hooks/"), "{url}");
    let (status, _) = send(latch.http.post(latch.rebase(&url)).json(&json!({ "paid": 1 }))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    latch.wait_for(&id, "completed").await;
}

/// `--max-module-bytes` bounds an upload: one byte over is `413` and stores nothing.
#[tokio::test]
async fn an_upload_past_max_module_bytes_is_413_and_stores_nothing() {
    let component = plugin("order-payment");
    let exactly = component.len().to_string();
    let smaller = (component.len() - 1).to_string();
    let latch = start_with(&["--max-module-bytes", &smaller]).await;
    let (status, body) = latch.upload("orders", component.clone()).await;
    assert_eq!((status, crate::harness::error_code(&body)), (StatusCode::PAYLOAD_TOO_LARGE, "body-too-large"));
    assert_eq!(latch.get("/v1/modules/orders").await.0, StatusCode::NOT_FOUND, "nothing was stored");
    let latch = start_with(&["--max-module-bytes", &exactly]).await;
    assert_eq!(latch.upload("orders", component).await.0, StatusCode::CREATED);
}
