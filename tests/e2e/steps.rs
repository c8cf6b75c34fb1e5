//! Steps with retries and outbound HTTP, against a stand-in vendor in the test process.

use serde_json::{Value, json};

use crate::harness::{Latch, send, start_with};
use crate::vendor::{Behaviour, Vendor};

async fn latch_allowing_loopback(extra: &[&str]) -> Latch {
    let mut args = vec!["--allow-http", "127.0.0.1:*"];
    args.extend_from_slice(extra);
    let latch = start_with(&args).await;
    latch.upload_plugin("flaky-charge").await;
    latch.upload_plugin("async-verification").await;
    latch
}

async fn step_attempts(latch: &Latch, id: &str) -> Vec<Value> {
    latch.events(id).await.into_iter().filter(|e| e["type"] == "step-attempt").collect()
}

#[tokio::test]
async fn a_failing_step_is_retried_with_backoff_until_it_succeeds() {
    let latch = latch_allowing_loopback(&[]).await;
    let api = Vendor::start(Behaviour::FailTimes(2)).await;
    let input = json!({ "charge_url": api.url, "amount": 12, "attempts": 4, "backoff_ms": 100 });
    let id = latch.start_run("flaky-charge", input).await;
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["output"]["attempt"], 3);
    assert_eq!(run["output"]["receipt"], json!({ "receipt": "r-3" }));
    let attempts = step_attempts(&latch, &id).await;
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert_eq!(attempts[0]["outcome"]["Err"]["code"], "payment-api-down");
    assert!(attempts[2]["outcome"]["Ok"].is_object());
    assert_eq!(api.received().len(), 3, "each attempt called once, replays never");
}

#[tokio::test]
async fn a_fatal_error_is_not_retried() {
    let latch = latch_allowing_loopback(&[]).await;
    let api = Vendor::start(Behaviour::Status(402)).await;
    let id = latch.start_run("flaky-charge", json!({ "charge_url": api.url, "amount": 5 })).await;
    let run = latch.wait_for(&id, "failed").await;
    assert_eq!(run["error"]["code"], "charge-refused");
    assert_eq!(step_attempts(&latch, &id).await.len(), 1);
    assert_eq!(api.received().len(), 1);
}

#[tokio::test]
async fn a_restart_between_retries_loses_nothing() {
    let mut latch = latch_allowing_loopback(&["--hot-hold-ms", "0"]).await;
    let api = Vendor::start(Behaviour::FailTimes(1)).await;
    let input = json!({ "charge_url": api.url, "amount": 7, "backoff_ms": 1500 });
    let id = latch.start_run("flaky-charge", input).await;
    // The first attempt failed; the run sleeps on its backoff timer.
    let run = latch.wait_for(&id, "waiting").await;
    assert!(run["wake_at_ms"].is_u64(), "{run}");
    latch.restart().await;
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["output"]["attempt"], 2);
    assert_eq!(api.received().len(), 2);
}

#[tokio::test]
async fn a_host_outside_the_allow_list_is_refused() {
    let latch = start_with(&[]).await;
    latch.upload_plugin("flaky-charge").await;
    let api = Vendor::start(Behaviour::FailTimes(0)).await;
    let id = latch.start_run("flaky-charge", json!({ "charge_url": api.url, "amount": 1, "attempts": 1 })).await;
    let run = latch.wait_for(&id, "failed").await;
    assert_eq!(run["error"]["code"], "host-not-allowed", "{run}");
    assert!(api.received().is_empty());
}

#[tokio::test]
async fn the_vendors_callback_wins_the_race_against_the_deadline() {
    let latch = latch_allowing_loopback(&[]).await;
    let vendor =
        Vendor::start(Behaviour::CallBack { delay_ms: 100, body: json!({ "approved": true, "details": "ok" }) }).await;
    let input = json!({ "document_id": "doc-1", "vendor_url": vendor.url, "deadline_ms": 20_000 });
    let id = latch.start_run("async-verification", input).await;
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["output"], json!({ "document_id": "doc-1", "status": "verified", "details": "ok" }));
    let submitted = vendor.received();
    assert_eq!(submitted[0]["document_id"], "doc-1");
    assert!(submitted[0]["callback_url"].as_str().is_some_and(|u| u.contains("/hooks/")));
}

#[tokio::test]
async fn the_deadline_wins_when_the_vendor_is_silent_and_a_late_call_is_refused() {
    let latch = latch_allowing_loopback(&["--hot-hold-ms", "0"]).await;
    let vendor = Vendor::start(Behaviour::Silent).await;
    let input = json!({ "document_id": "doc-2", "vendor_url": vendor.url, "deadline_ms": 400 });
    let id = latch.start_run("async-verification", input).await;
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["output"], json!({ "document_id": "doc-2", "status": "timed_out" }));
    let callback = vendor.received()[0]["callback_url"].as_str().unwrap_or_default().to_string();
    let (status, _) = send(latch.http.post(callback).json(&json!({ "approved": true }))).await;
    assert_eq!(status, reqwest::StatusCode::GONE);
}

#[tokio::test]
async fn replaying_past_a_step_leaves_clock_and_randomness_as_the_live_run_left_them() {
    let latch = start_with(&["--hot-hold-ms", "0"]).await;
    latch.upload_plugin("wait-patterns").await;
    let id = latch.start_run("wait-patterns", json!({ "pattern": "step-then-wait", "token": "after-step" })).await;
    latch.wait_for(&id, "waiting").await;
    // The run holds no instance: this call resumes it by replay, past the step's body.
    latch.resume("after-step", &json!({})).await;
    let run = latch.wait_for(&id, "completed").await;
    assert!(run["output"]["after"].is_string(), "{run}");
}
