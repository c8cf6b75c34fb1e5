//! The operator's CLI: the real `latch` binary's commands against a real server.

use std::process::{Command, Output};

use serde_json::Value;

use crate::harness::{ADMIN_KEY, Latch, plugin, start};

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
    let failed = refused(latch_cli(&latch, &["run", "order-payment", "--input", &at_file, "--wait"]));
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
    let id = loop {
        let (_, runs) = latch.get("/v1/runs?status=waiting").await;
        if let Some(id) = runs["runs"][0]["id"].as_str() {
            break id.to_string();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
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
