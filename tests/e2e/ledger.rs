//! Many requests on one webhook, each answered by the run (Workflow DevKit's payment
//! webhook), the caller's deadline, and the close after a terminal event.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{error_code, send, start};

#[tokio::test]
async fn each_event_is_answered_by_the_run_until_a_terminal_one_closes_the_webhook() {
    let latch = start().await;
    latch.upload_plugin("payment-ledger").await;
    let id = latch.start_run("payment-ledger", json!({ "order_id": "o-42" })).await;
    let url = latch.waiting_url(&id).await;
    for (kind, action) in
        [("payment.created", "ignored"), ("payment.failed", "flagged"), ("payment.succeeded", "captured")]
    {
        let (status, body) = send(latch.http.post(&url).json(&json!({ "type": kind }))).await;
        assert_eq!((status, body), (StatusCode::OK, json!({ "ack": true, "action": action })), "{kind}");
    }
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["output"]["status"], "settled");
    assert_eq!(run["output"]["ledger"].as_array().map(Vec::len), Some(3));
    let (status, body) = send(latch.http.post(&url).json(&json!({ "type": "late" }))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::GONE, "gone"));
}

#[tokio::test]
async fn a_caller_past_its_deadline_gets_504_and_the_late_answer_is_recorded() {
    let latch = start().await;
    latch.upload_plugin("payment-ledger").await;
    let id = latch.start_run("payment-ledger", json!({ "order_id": "o-43", "answer_within_ms": 300 })).await;
    let url = latch.waiting_url(&id).await;
    let (status, body) = send(latch.http.post(&url).json(&json!({ "type": "slow", "ms": 800 }))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::GATEWAY_TIMEOUT, "response-timeout"), "{body}");
    // The run answers after its sleep, without error, and goes on taking events.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !latch.events(&id).await.iter().any(|e| e["type"] == "responded") {
        assert!(std::time::Instant::now() < deadline, "the run never answered the slow event");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, body) = send(latch.http.post(&url).json(&json!({ "type": "refund.created" }))).await;
    assert_eq!((status, body["action"].clone()), (StatusCode::OK, json!("refunded")));
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["output"]["ledger"][0], json!({ "type": "slow", "action": "ignored" }));
    let answers: Vec<_> = latch.events(&id).await.into_iter().filter(|e| e["type"] == "responded").collect();
    assert_eq!(answers.len(), 2);
    assert!(answers.iter().all(|a| a["result"]["Ok"].is_null()), "{answers:?}");
}
