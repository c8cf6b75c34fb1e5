//! Bad calls to webhook URLs get clear JSON errors and change nothing.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Latch, error_code, send, start, start_with};

async fn waiting_order(latch: &Latch) -> (String, String) {
    latch.upload_plugin("order-payment").await;
    let id = latch.start_run("order-payment", json!({ "order_id": "o-1", "amount": 1 })).await;
    let url = latch.waiting_url(&id).await;
    (id, url)
}

#[tokio::test]
async fn a_single_use_hook_answers_410_after_its_first_call() {
    let latch = start().await;
    let (id, url) = waiting_order(&latch).await;
    let (status, _) = send(latch.http.post(&url).json(&json!({ "n": 1 }))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, body) = send(latch.http.post(&url).json(&json!({ "n": 2 }))).await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(error_code(&body), "gone");
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["output"]["payment"], json!({ "n": 1 }));
}

#[tokio::test]
async fn an_unknown_token_is_404() {
    let latch = start().await;
    let (status, body) = send(latch.http.post(format!("{}/hooks/no-such-token", latch.base)).json(&json!({}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "unknown-webhook");
}

#[tokio::test]
async fn malformed_json_is_400_and_the_run_keeps_waiting() {
    let latch = start().await;
    let (id, url) = waiting_order(&latch).await;
    let request = latch.http.post(&url).header("content-type", "application/json").body("{\"status\": ");
    let (status, body) = send(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "bad-json");
    // Nothing was consumed: the hook still takes its one call.
    let (status, _) = send(latch.http.post(&url).json(&json!({ "ok": true }))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    latch.wait_for(&id, "completed").await;
}

#[tokio::test]
async fn a_body_over_the_default_limit_is_413() {
    let latch = start().await;
    let (_, url) = waiting_order(&latch).await;
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(1024 * 1024 + 1));
    let (status, body) = send(latch.http.post(&url).body(big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&body), "body-too-large");
}

#[tokio::test]
async fn the_body_limit_is_configurable() {
    let latch = start_with(&["--max-body-bytes", "64"]).await;
    let (id, url) = waiting_order(&latch).await;
    let (status, _) = send(latch.http.post(&url).json(&json!({ "pad": "x".repeat(100) }))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = send(latch.http.post(&url).json(&json!({ "ok": 1 }))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    latch.wait_for(&id, "completed").await;
}

#[tokio::test]
async fn a_method_the_hook_does_not_take_is_405_with_allow() {
    let latch = start().await;
    let (_, url) = waiting_order(&latch).await;
    let response = latch.http.delete(&url).send().await.expect("answered");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(error_code(&body), "method-not-allowed");
}

#[tokio::test]
async fn a_finished_runs_hooks_are_gone() {
    let latch = start().await;
    latch.upload_plugin("ticket-triage").await;
    let id = latch.start_run("ticket-triage", json!({ "ticket_id": "T-1" })).await;
    latch.wait_for(&id, "waiting").await;
    let run = latch.run(&id).await;
    let urls: Vec<String> = run["webhooks"]
        .as_array()
        .expect("webhooks")
        .iter()
        .map(|w| w["url"].as_str().unwrap_or_default().into())
        .collect();
    for url in &urls {
        send(latch.http.post(url).json(&json!({ "sla_hours": 9 }))).await;
    }
    latch.wait_for(&id, "completed").await;
    let (status, body) = send(latch.http.post(&urls[0]).json(&json!({}))).await;
    assert_eq!(status, StatusCode::GONE, "{body}");
}
