//! Cancellation: the run ends as cancelled, its webhooks answer 410, its timers go.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{ADMIN_KEY, Latch, error_code, send, start_with};

async fn cancel(latch: &Latch, id: &str) -> (StatusCode, serde_json::Value) {
    send(latch.http.post(format!("{}/v1/runs/{id}/cancel", latch.base)).bearer_auth(ADMIN_KEY)).await
}

#[tokio::test]
async fn a_waiting_run_is_cancelled_and_its_webhook_is_gone() {
    let latch = start_with(&[]).await;
    latch.upload_plugin("order-payment").await;
    let id = latch.start_run("order-payment", json!({ "order_id": "o-1", "amount": 1 })).await;
    let url = latch.waiting_url(&id).await;
    let (status, body) = cancel(&latch, &id).await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &json!("cancelled")), "{body}");
    let (status, _) = send(latch.http.post(&url).json(&json!({ "paid": true }))).await;
    assert_eq!(status, StatusCode::GONE);
    let kinds: Vec<_> = latch.events(&id).await.iter().map(|e| e["type"].clone()).collect();
    assert_eq!(kinds.last(), Some(&json!("cancelled")));

    let (status, body) = cancel(&latch, &id).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_code(&body), "run-ended");
    let (status, body) = cancel(&latch, "00000000-0000-7000-8000-000000000000").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "unknown-run");
}

#[tokio::test]
async fn a_sleeping_run_without_an_instance_is_cancelled_and_its_timer_dropped() {
    let latch = start_with(&["--hot-hold-ms", "0"]).await;
    latch.upload_plugin("wait-patterns").await;
    let id = latch.start_run("wait-patterns", json!({ "pattern": "sleep", "ms": 600_000 })).await;
    latch.wait_for(&id, "waiting").await;
    let (status, body) = cancel(&latch, &id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let run = latch.run(&id).await;
    assert_eq!(run["status"], "cancelled");
    assert!(run.get("wake_at_ms").is_none(), "{run}");
}

#[tokio::test]
async fn a_spinning_run_is_cancelled_at_its_next_tick() {
    let latch = start_with(&["--cpu-budget-ms", "60000"]).await;
    latch.upload_plugin("misbehave").await;
    let id = latch.start_run("misbehave", json!({ "do": "spin" })).await;
    latch.wait_for(&id, "running").await;
    let (status, body) = cancel(&latch, &id).await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &json!("cancelled")), "{body}");
}
