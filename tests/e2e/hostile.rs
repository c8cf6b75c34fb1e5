//! Hostile callers: deep JSON at every public route, forged and undeclared trigger names,
//! junk that would fill the disk, guessable tokens, credentials that must not be kept,
//! and an empty admin key. A public request can hurt only itself.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::auth::url_key_run;
use crate::harness::{ADMIN_KEY, Broken, Latch, break_record, error_code, send, start, start_with, stored_anywhere};
use crate::vendor::{Behaviour, Vendor};

/// `levels` arrays nested in one another around a number.
fn nested(levels: usize) -> String {
    format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
}

async fn post_raw(latch: &Latch, url: &str, body: String) -> (StatusCode, Value) {
    send(latch.http.post(url).header("content-type", "application/json").header("x-shop", "eu").body(body)).await
}

#[tokio::test]
async fn a_deeply_nested_body_is_a_400_at_every_route_and_breaks_nothing() {
    let mut latch = start().await;
    for plugin in ["order-payment", "webhook-response", "order-approval", "bench-echo"] {
        latch.upload_plugin(plugin).await;
    }
    let order = latch.start_run("order-payment", json!({ "order_id": "o-1", "amount": 1 })).await;
    let order_url = latch.waiting_url(&order).await;
    let approval = latch.start_run("order-approval", json!({ "order_id": "o-2" })).await;
    latch.wait_for(&approval, "waiting").await;
    let echo = latch.start_run("bench-echo", json!({ "token": "deep-1" })).await;
    latch.wait_for(&echo, "waiting").await;
    let key = latch.new_key("deep", &[]).await;

    let routes = [
        order_url.clone(),
        format!("{}/t/webhook-response/orders/new", latch.base),
        format!("{}/t/order-approval/payment-confirmed?execution={approval}", latch.base),
        format!("{}/t/order-approval/payment-confirmed?execution=any", latch.base),
    ];
    for levels in [65, 127, 100_000] {
        for url in &routes {
            let (status, body) = post_raw(&latch, url, nested(levels)).await;
            assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "too-deep"), "{url}: {body}");
        }
        let resume = latch.http.post(format!("{}/v1/hooks/deep-1", latch.base)).bearer_auth(&key);
        let (status, body) = send(resume.header("content-type", "application/json").body(nested(levels))).await;
        assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "too-deep"), "{body}");
        let start_run = latch.http.post(format!("{}/v1/modules/order-payment/runs", latch.base)).bearer_auth(ADMIN_KEY);
        let (status, body) = send(start_run.body(nested(levels))).await;
        assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "too-deep"), "{body}");
    }
    assert_eq!(latch.run(&order).await["status"], "waiting");

    // Nesting up to the cap is taken, stored, read back, and survives a restart.
    let deep_enough = format!(r#"{{"status":"succeeded","trace":{}}}"#, nested(62));
    assert_eq!(post_raw(&latch, &order_url, deep_enough).await.0, StatusCode::ACCEPTED);
    latch.wait_for(&order, "completed").await;
    latch.restart().await;
    let (status, runs) = latch.get("/v1/runs").await;
    assert_eq!(status, StatusCode::OK, "{runs}");
    let run = latch.wait_for(&order, "completed").await;
    let trace = serde_json::from_str::<Value>(&nested(62)).expect("json");
    assert_eq!(run["output"]["payment"]["trace"], trace, "{run}");
    assert_eq!(latch.run(&approval).await["status"], "waiting");
}

#[tokio::test]
async fn an_unreadable_run_record_is_reported_and_stops_neither_start_up_nor_other_runs() {
    let mut latch = start().await;
    latch.upload_plugin("order-payment").await;
    let broken = latch.start_run("order-payment", json!({ "order_id": "o-1", "amount": 1 })).await;
    let healthy = latch.start_run("order-payment", json!({ "order_id": "o-2", "amount": 2 })).await;
    latch.waiting_url(&broken).await;
    let url = latch.waiting_url(&healthy).await;
    latch.kill();
    break_record(&latch, &broken, Broken::Run).await;
    latch.restart().await;
    let (status, listed) = latch.get("/v1/runs").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["unreadable"][0]["id"], json!(broken), "{listed}");
    assert_eq!(listed["runs"].as_array().map(Vec::len), Some(1));
    assert_eq!(send(latch.http.post(latch.rebase(&url)).json(&json!({ "paid": 2 }))).await.0, StatusCode::ACCEPTED);
    latch.wait_for(&healthy, "completed").await;
}

#[tokio::test]
async fn an_unreadable_run_waiting_at_a_trigger_holds_up_no_other_run_there() {
    let mut latch = start().await;
    latch.upload_plugin("order-approval").await;
    let broken = latch.start_run("order-approval", json!({ "order_id": "o-1" })).await;
    latch.wait_for(&broken, "waiting").await;
    let healthy = latch.start_run("order-approval", json!({ "order_id": "o-2" })).await;
    latch.wait_for(&healthy, "waiting").await;
    latch.kill();
    break_record(&latch, &broken, Broken::Run).await;
    latch.restart().await;
    let all = format!("{}/t/order-approval/payment-confirmed?execution=all", latch.base);
    let (status, body) = send(latch.http.post(all).json(&json!({ "via": "all" }))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "resumed": 1 })));
    assert_eq!(latch.wait_for(&healthy, "completed").await["output"]["payment"], json!({ "via": "all" }));
}

#[tokio::test]
async fn an_unreadable_event_fails_its_run_alone_and_start_up_goes_on() {
    let mut latch = start().await;
    latch.upload_plugin("order-payment").await;
    let broken = latch.start_run("order-payment", json!({ "order_id": "o-1", "amount": 1 })).await;
    let healthy = latch.start_run("order-payment", json!({ "order_id": "o-2", "amount": 2 })).await;
    let broken_url = latch.waiting_url(&broken).await;
    let url = latch.waiting_url(&healthy).await;
    latch.kill();
    break_record(&latch, &broken, Broken::FirstEvent).await;
    latch.restart().await;
    assert_eq!(latch.wait_for(&broken, "failed").await["error"]["code"], "unreadable-log");
    let (status, body) = send(latch.http.post(latch.rebase(&broken_url)).json(&json!({}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::GONE, "gone"), "its webhook closed with it");
    assert_eq!(send(latch.http.post(latch.rebase(&url)).json(&json!({ "paid": 2 }))).await.0, StatusCode::ACCEPTED);
    latch.wait_for(&healthy, "completed").await;
}

#[tokio::test]
async fn an_unreadable_queued_call_is_listed_as_not_taken_and_start_up_goes_on() {
    let mut latch = start().await;
    latch.upload_plugin("blink-callback").await;
    let id = latch.start_run("blink-callback", json!({ "auth": "none", "calls": 2 })).await;
    let url = latch.waiting_url(&id).await;
    // A single-use webhook whose slot holds what cannot be read.
    let single = latch.start_run("blink-callback", json!({ "auth": "none", "calls": 1 })).await;
    let single_url = latch.waiting_url(&single).await;
    latch.kill();
    break_record(&latch, &id, Broken::QueuedCall { arrival: 999_999 }).await;
    break_record(&latch, &single, Broken::QueuedCall { arrival: 0 }).await;
    latch.restart().await;
    for run in [&id, &single] {
        let (_, listed) = latch.get(&format!("/v1/runs/{run}/requests")).await;
        let requests = listed["requests"].as_array().cloned().unwrap_or_default();
        let unreadable = requests.iter().find(|r| r["reason"] == "unreadable").expect("listed");
        assert_eq!((&unreadable["state"], &unreadable["webhook"]), (&json!("not-taken"), &json!("wh-1")), "{listed}");
    }
    for n in 0..2 {
        let (status, _) = send(latch.http.post(latch.rebase(&url)).json(&json!({ "n": n }))).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["output"]["calls"].as_array().map(Vec::len), Some(2), "{run}");
    // The slot stays used: the single-use URL takes no other call.
    let (status, body) = send(latch.http.post(latch.rebase(&single_url)).json(&json!({}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::GONE, "gone"), "{body}");
}

fn named(latch: &Latch, module: &str, name: &str, execution: &str) -> String {
    format!("{}/t/{module}/{name}?execution={execution}", latch.base)
}

#[tokio::test]
async fn a_named_trigger_the_module_does_not_declare_takes_no_caller() {
    let latch = start().await;
    latch.upload_plugin("order-approval").await;
    let id = latch.start_run("order-approval", json!({ "order_id": "o-1" })).await;
    latch.wait_for(&id, "waiting").await;
    for execution in ["all", "any", id.as_str()] {
        let url = named(&latch, "order-approval", "not-declared", execution);
        let (status, body) = send(latch.http.post(url).json(&json!({ "forged": true }))).await;
        assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "unknown-trigger"), "{execution}: {body}");
    }
    assert_eq!(latch.run(&id).await["status"], "waiting");
    // A run may wait only at a trigger its module declares.
    let undeclared = latch.start_run("order-approval", json!({ "order_id": "o-2", "trigger": "not-declared" })).await;
    let run = latch.wait_for(&undeclared, "failed").await;
    assert!(run["error"]["message"].as_str().is_some_and(|m| m.contains("does not declare")), "{run}");
}

/// The size of everything under `dir`.
fn size_of(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| match entry.metadata() {
                    Ok(meta) if meta.is_dir() => size_of(&entry.path()),
                    Ok(meta) => meta.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn calls_at_names_a_run_cannot_wait_at_store_nothing_and_no_run_id_leaks() {
    let latch = start().await;
    latch.upload_plugin("blink-callback").await;
    let id = latch.start_run("blink-callback", json!({ "auth": "none" })).await;
    let url = latch.waiting_url(&id).await;
    let before = size_of(latch.data_dir());
    // Small enough to sit in the socket's buffer: the server answers without reading it.
    let junk = format!("{{\"pad\":\"{}\"}}", "x".repeat(200_000));
    for n in 0..40 {
        let (status, body) =
            post_raw(&latch, &named(&latch, "blink-callback", &format!("junk-{n}"), &id), junk.clone()).await;
        assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "unknown-trigger"), "{body}");
    }
    let grown = size_of(latch.data_dir()).saturating_sub(before);
    assert!(grown < 2 << 20, "8 MB of junk grew the data dir by {grown} bytes");

    let response = latch.http.post(&url).json(&json!({ "ok": true })).send().await.expect("answered");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(response.headers().get("latch-run-id").is_none(), "the run id reached an outside caller");
    let text = response.text().await.unwrap_or_default();
    assert!(!text.contains(&id), "{text}");
}

#[tokio::test]
async fn a_call_held_at_a_trigger_the_run_does_not_reach_is_refused_when_it_ends() {
    let latch = start().await;
    latch.upload_plugin("order-approval").await;
    let payments = latch.new_key("psp", &["payments"]).await;
    let id = latch.start_run("order-approval", json!({ "order_id": "o-1" })).await;
    latch.wait_for(&id, "waiting").await;
    // Declared, but the run waits at `payment-confirmed`: the caller is held.
    let verified = latch.http.post(named(&latch, "order-approval", "payment-verified", &id)).bearer_auth(&payments);
    let held = tokio::spawn(send(verified.json(&json!({ "status": "confirmed", "big": "x".repeat(100_000) }))));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, listed) = latch.get(&format!("/v1/runs/{id}/requests")).await;
        if listed["requests"].as_array().is_some_and(|r| r.iter().any(|r| r["held"] == true)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the call was never queued: {listed}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) =
        send(latch.http.post(named(&latch, "order-approval", "payment-confirmed", &id)).json(&json!({}))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "resumed": 1 })), "an open trigger's caller is not told ids");
    let (status, body) = held.await.expect("caller");
    assert_eq!((status, error_code(&body)), (StatusCode::GONE, "gone"), "{body}");
    latch.wait_for(&id, "completed").await;
    let (_, listed) = latch.get(&format!("/v1/runs/{id}/requests")).await;
    let left = listed["requests"].as_array().and_then(|r| r.iter().find(|r| r["state"] == "not-taken").cloned());
    let left = left.expect("listed as not taken");
    assert!(left["data"].is_null(), "its body was not kept: {left}");
}

#[tokio::test]
async fn a_named_triggers_auth_is_the_one_of_the_runs_own_version() {
    let latch = start().await;
    let (status, _) = latch.upload("approvals", crate::harness::plugin("order-approval")).await;
    assert_eq!(status, StatusCode::CREATED);
    let payments = latch.new_key("psp", &["payments"]).await;
    let id = latch.start_run("approvals", json!({ "order_id": "o-1", "trigger": "payment-verified" })).await;
    latch.wait_for(&id, "waiting").await;
    // A newer version that declares no such trigger opens nothing.
    let (status, _) = latch.upload("approvals", crate::harness::plugin("bench-echo")).await;
    assert_eq!(status, StatusCode::CREATED);
    for execution in [id.as_str(), "any", "all"] {
        let url = named(&latch, "approvals", "payment-verified", execution);
        let (status, body) = send(latch.http.post(url).json(&json!({ "status": "confirmed" }))).await;
        assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "missing-key"), "{execution}: {body}");
    }
    let url = named(&latch, "approvals", "payment-verified", "any");
    let (status, body) =
        send(latch.http.post(url).bearer_auth(&payments).json(&json!({ "status": "confirmed" }))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "resumed": 1, "runs": [id] })), "an API key is told the run");
}

#[tokio::test]
async fn a_token_the_run_chose_is_no_anonymous_capability() {
    let latch = start().await;
    latch.upload_plugin("bench-echo").await;
    let id = latch.start_run("bench-echo", json!({ "token": "upload:imp-2" })).await;
    latch.wait_for(&id, "waiting").await;
    let (status, body) = send(latch.http.post(format!("{}/hooks/upload:imp-2", latch.base)).json(&json!({}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "unknown-webhook"));
    assert_eq!(latch.run(&id).await["status"], "waiting");
    assert_eq!(latch.resume("upload:imp-2", &json!({ "blobToken": "b-2" })).await.0, StatusCode::ACCEPTED);
    latch.wait_for(&id, "completed").await;
}

#[tokio::test]
async fn a_url_key_is_kept_nowhere_yet_still_opens_its_webhook_after_a_restart() {
    let vendor = Vendor::start(Behaviour::Silent).await;
    let mut latch = start_with(&["--allow-http", "127.0.0.1:*"]).await;
    latch.upload_plugin("blink-callback").await;
    let (id, url) = url_key_run(&latch, &vendor).await;
    let key = url.split_once("?key=").expect("a key").1.to_string();
    let shown = [
        latch.run(&id).await.to_string(),
        serde_json::to_string(&latch.events(&id).await).expect("json"),
        latch.get("/v1/runs").await.1.to_string(),
        latch.log(),
    ];
    for text in &shown {
        assert!(!text.contains(&key), "the key is shown: {text}");
    }
    assert!(shown[0].contains("[url-key:wh-1]"), "{}", shown[0]);
    // The guest did log its URL: the server's log shows it with the key left out.
    assert!(shown[3].contains("send the result to") && shown[3].contains("[url-key:wh-1]"), "{}", shown[3]);
    latch.kill();
    assert_eq!(stored_anywhere(&latch, &key).await, None, "the key is stored");
    // The scan finds what is stored: the run's id, in a table on PostgreSQL.
    let found = stored_anywhere(&latch, &id).await.expect("the run's id is stored");
    assert!(!crate::harness::on_postgres() || found.starts_with("table"), "{found}");

    // The replayed run derives the same key: the URL it handed out still works.
    latch.restart().await;
    let (status, body) = send(latch.http.post(latch.rebase(&url)).json(&json!({ "ticket": "T-1" }))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    latch.wait_for(&id, "completed").await;
    latch.kill();
    assert_eq!(stored_anywhere(&latch, &key).await, None, "the key is stored");
}

#[tokio::test]
async fn credential_headers_are_redacted_and_the_bearer_scheme_is_case_insensitive() {
    let latch = start().await;
    latch.upload_plugin("blink-callback").await;
    let key = latch.new_key("svc", &[]).await;
    let id = latch.start_run("blink-callback", json!({ "auth": "bearer" })).await;
    let url = latch.waiting_url(&id).await;
    let call = latch
        .http
        .post(&url)
        .header("authorization", format!("bEaReR {key}"))
        .header("proxy-authorization", "Basic cHJveHk6c2VjcmV0")
        .header("x-api-key", "sk-live-secret")
        .header("cookie", "session=s3cret")
        .json(&json!({ "n": 1 }));
    assert_eq!(send(call).await.0, StatusCode::ACCEPTED);
    latch.wait_for(&id, "completed").await;
    let (_, listed) = latch.get(&format!("/v1/runs/{id}/requests")).await;
    let headers = listed["requests"][0]["headers"].as_array().expect("headers").clone();
    for name in ["authorization", "proxy-authorization", "x-api-key", "cookie"] {
        let value = headers.iter().find(|h| h[0] == name).map(|h| h[1].clone());
        assert_eq!(value, Some(json!("[redacted]")), "{name}");
    }
    let log = serde_json::to_string(&latch.events(&id).await).expect("json");
    for secret in [key.as_str(), "cHJveHk6c2VjcmV0", "sk-live-secret", "s3cret"] {
        assert!(!log.contains(secret), "{secret} reached the run's log");
    }
    let admin =
        latch.http.get(format!("{}/v1/runs/{id}", latch.base)).header("authorization", format!("BEARER {ADMIN_KEY}"));
    assert_eq!(send(admin).await.0, StatusCode::OK);

    // A named trigger's call is redacted the same way.
    latch.upload_plugin("order-approval").await;
    let id = latch.start_run("order-approval", json!({ "order_id": "o-1" })).await;
    latch.wait_for(&id, "waiting").await;
    let call = latch
        .http
        .post(named(&latch, "order-approval", "payment-confirmed", &id))
        .header("proxy-authorization", "Basic cHJveHk6c2VjcmV0")
        .header("x-api-key", "sk-live-secret")
        .header("cookie", "session=s3cret")
        .json(&json!({ "paid": 1 }));
    assert_eq!(send(call).await.0, StatusCode::OK);
    latch.wait_for(&id, "completed").await;
    let log = serde_json::to_string(&latch.events(&id).await).expect("json");
    assert!(log.contains("[redacted]"), "{log}");
    for secret in ["cHJveHk6c2VjcmV0", "sk-live-secret", "s3cret"] {
        assert!(!log.contains(secret), "{secret} reached the run's log from a named trigger");
    }
}

#[tokio::test]
async fn an_empty_admin_key_is_refused_at_start_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (env, args) in [(Some(""), vec![]), (Some("  "), vec![]), (None, vec!["--admin-key", ""])] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_latch"));
        command.args(["serve", "--listen", "127.0.0.1:0", "--data"]).arg(dir.path()).args(&args);
        match env {
            Some(value) => command.env("LATCH_ADMIN_KEY", value),
            None => command.env_remove("LATCH_ADMIN_KEY"),
        };
        let output = command.output().expect("latch runs");
        assert!(!output.status.success(), "{env:?} {args:?}: it started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("admin key is empty"), "{stderr}");
    }
}
