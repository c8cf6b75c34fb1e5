//! Payload rules on a webhook: a JSON Schema (a mismatch is 422 listing what failed) and a
//! CEL condition (false: `200 {"activated":false}`, nothing consumed, the run waits on).

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{error_code, send, start};

#[tokio::test]
async fn data_that_does_not_match_the_schema_is_422_and_not_delivered() {
    let latch = start().await;
    latch.upload_plugin("blink-callback").await;
    let schema = json!({
        "type": "object",
        "required": ["order_id"],
        "properties": { "order_id": { "type": "string" }, "amount": { "type": "number" } }
    });
    let id = latch.start_run("blink-callback", json!({ "auth": "none", "schema": schema })).await;
    let url = latch.waiting_url(&id).await;
    let (status, body) = send(latch.http.post(&url).json(&json!({ "amount": "ten" }))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_code(&body), "schema-mismatch");
    let failures = body["error"]["details"]["failures"].as_array().expect("failures listed");
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(failures.iter().any(|f| f.as_str().is_some_and(|f| f.starts_with("/amount"))), "{failures:?}");

    let (status, _) = send(latch.http.post(&url).json(&json!({ "order_id": "o-1", "amount": 10 }))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "the single-use hook was not used up by the bad call");
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["output"]["calls"][0]["data"]["order_id"], "o-1");
}

#[tokio::test]
async fn a_false_condition_leaves_the_run_paused() {
    let latch = start().await;
    latch.upload_plugin("blink-callback").await;
    let condition = r#"body.status == "confirmed" && headers["x-source"] == "psp""#;
    let id = latch.start_run("blink-callback", json!({ "auth": "none", "condition": condition })).await;
    let url = latch.waiting_url(&id).await;
    let processing = latch.http.post(&url).header("x-source", "psp").json(&json!({ "status": "processing" }));
    assert_eq!(send(processing).await, (StatusCode::OK, json!({ "activated": false })));
    let no_field = latch.http.post(&url).header("x-source", "psp").json(&json!({ "other": 1 }));
    assert_eq!(send(no_field).await, (StatusCode::OK, json!({ "activated": false })));
    latch.wait_for(&id, "waiting").await;

    let confirmed = latch.http.post(&url).header("x-source", "psp").json(&json!({ "status": "confirmed" }));
    assert_eq!(send(confirmed).await.0, StatusCode::ACCEPTED);
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["output"]["calls"][0]["data"], json!({ "status": "confirmed" }));
}

#[tokio::test]
async fn a_bad_schema_or_condition_is_refused_to_the_run_that_makes_it() {
    let latch = start().await;
    latch.upload_plugin("blink-callback").await;
    let id = latch.start_run("blink-callback", json!({ "auth": "none", "condition": "body.status ==" })).await;
    assert_eq!(latch.wait_for(&id, "failed").await["error"]["code"], "bad-condition");
    let id = latch.start_run("blink-callback", json!({ "auth": "none", "schema": { "type": 12 } })).await;
    assert_eq!(latch.wait_for(&id, "failed").await["error"]["code"], "bad-schema");
}
