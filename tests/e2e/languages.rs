//! The same workflow written in Rust, Python and JavaScript behaves the same: one table of
//! scenarios runs over every language's build of `order-payment`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Latch, error_code, send, start};

/// Each language's build of the same workflow.
const ORDER_PAYMENT: [(&str, &str); 3] =
    [("rust", "order-payment"), ("python", "order-payment-py"), ("javascript", "order-payment-js")];

async fn order(latch: &Latch, plugin: &str, order_id: &str) -> (String, String) {
    let id = latch.start_run(plugin, json!({ "order_id": order_id, "amount": 42 })).await;
    let url = latch.waiting_url(&id).await;
    (id, url)
}

/// Runs every scenario on one server (so each component compiles once) and returns what
/// the runs produced, for comparison across languages.
async fn scenarios(plugin: &str) -> Vec<Value> {
    let mut latch = start().await;
    latch.upload_plugin(plugin).await;
    let mut seen = Vec::new();

    // Happy path, and the single-use URL afterwards.
    let (id, url) = order(&latch, plugin, "o-1").await;
    let (status, _) = send(latch.http.post(&url).json(&json!({ "status": "succeeded", "tx": "t-1" }))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{plugin}");
    seen.push(latch.wait_for(&id, "completed").await["output"].clone());
    let (status, body) = send(latch.http.post(&url).json(&json!({}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::GONE, "gone"), "{plugin}");

    // A failed payment is reported in the output.
    let (id, url) = order(&latch, plugin, "o-2").await;
    send(latch.http.post(&url).json(&json!({ "status": "failed" }))).await;
    seen.push(latch.wait_for(&id, "completed").await["output"].clone());

    // Bad input fails the run with the guest's code; bad JSON at the URL is a 400.
    let id = latch.start_run(plugin, json!({ "amount": 1 })).await;
    seen.push(latch.wait_for(&id, "failed").await["error"]["code"].clone());
    let (id, url) = order(&latch, plugin, "o-3").await;
    let bad = latch.http.post(&url).header("content-type", "application/json").body("{\"status\":");
    let (status, body) = send(bad).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "bad-json"), "{plugin}");

    // SIGKILL while it waits; the callback after the restart completes it.
    latch.restart().await;
    send(latch.http.post(latch.rebase(&url)).json(&json!({ "status": "succeeded" }))).await;
    seen.push(latch.wait_for(&id, "completed").await["output"].clone());
    seen
}

#[tokio::test]
async fn order_payment_behaves_the_same_in_every_language() {
    let mut results = Vec::new();
    for (language, plugin) in ORDER_PAYMENT {
        results.push((language, scenarios(plugin).await));
    }
    let (first_language, expected) = &results[0];
    assert_eq!(expected[0]["status"], "paid");
    assert_eq!(expected[1]["status"], "payment-failed");
    assert_eq!(expected[2], "bad-input");
    for (language, seen) in &results[1..] {
        assert_eq!(seen, expected, "{language} differs from {first_language}");
    }
}
