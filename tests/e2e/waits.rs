//! Waits that end without a call: a timeout, an expired webhook. Both are kept by durable
//! timers, so they also end for a run that holds no instance.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{error_code, start_with};

#[tokio::test]
async fn a_wait_times_out_and_the_run_goes_on() {
    let latch = start_with(&["--hot-hold-ms", "0"]).await;
    latch.upload_plugin("bench-echo").await;
    let id = latch.start_run("bench-echo", json!({ "timeout_ms": 300 })).await;
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["output"], json!({ "rounds": 0, "ended": "timed-out" }));
}

#[tokio::test]
async fn an_expired_webhook_ends_the_wait_and_answers_410() {
    let latch = start_with(&["--hot-hold-ms", "0"]).await;
    latch.upload_plugin("bench-echo").await;
    let id = latch.start_run("bench-echo", json!({ "token": "expiring-1", "expires_in_ms": 400 })).await;
    latch.wait_for(&id, "waiting").await;
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["output"], json!({ "rounds": 0, "ended": "closed" }));
    let (status, body) = latch.resume("expiring-1", &json!({})).await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(error_code(&body), "gone");
}

#[tokio::test]
async fn calls_answered_by_the_run_arrive_in_order() {
    let latch = start_with(&[]).await;
    latch.upload_plugin("bench-echo").await;
    let id = latch.start_run("bench-echo", json!({ "token": "echo-1", "rounds": 3, "manual": true })).await;
    latch.wait_for(&id, "waiting").await;
    for round in 0..3 {
        let (status, body) = latch.resume("echo-1", &json!({})).await;
        assert_eq!((status, body), (StatusCode::OK, json!({ "round": round })));
    }
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["output"], json!({ "rounds": 3, "ended": "answered" }));
}
