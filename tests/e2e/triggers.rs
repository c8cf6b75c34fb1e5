//! Start triggers: a call to `/t/{module}/{suffix}` starts a run with that request; the
//! trigger's methods, auth and expected data are checked first, and the caller is
//! answered at once or by the run.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{ADMIN_KEY, Latch, error_code, send, start};

fn url(latch: &Latch, suffix: &str) -> String {
    format!("{}/t/webhook-response/{suffix}", latch.base)
}

async fn run_count(latch: &Latch) -> usize {
    latch.get("/v1/runs").await.1["runs"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn a_call_starts_a_run_that_answers_with_a_status_it_chooses() {
    let latch = start().await;
    latch.upload_plugin("webhook-response").await;
    let call = |priority: &str| {
        latch
            .http
            .post(url(&latch, "orders/new"))
            .header("x-shop", "eu")
            .json(&json!({ "order_id": "o-1", "priority": priority }))
    };
    let (status, body) = send(call("high")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["order_id"], "o-1");
    let run = latch.wait_for(body["run_id"].as_str().expect("run id"), "completed").await;
    assert_eq!(run["output"], json!({ "order_id": "o-1", "answered": 201 }));
    let (status, _) = send(call("low")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "the run overrides the status");
}

#[tokio::test]
async fn a_call_that_misses_what_the_trigger_expects_is_422_and_starts_nothing() {
    let latch = start().await;
    latch.upload_plugin("webhook-response").await;
    let (status, body) = send(latch.http.post(url(&latch, "orders/new")).json(&json!({ "amount": 3 }))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "schema-mismatch"), "{body}");
    let failures = body["error"]["details"]["failures"].to_string();
    assert!(failures.contains("x-shop") && failures.contains("order_id"), "{failures}");
    assert_eq!(run_count(&latch).await, 0);
}

#[tokio::test]
async fn methods_suffixes_and_modules_are_checked() {
    let latch = start().await;
    latch.upload_plugin("webhook-response").await;
    let response = latch.http.get(url(&latch, "orders/new")).send().await.expect("answered");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST, PATCH");
    let (status, body) = send(latch.http.post(url(&latch, "orders/old")).json(&json!({}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "unknown-trigger"));
    let (status, body) = send(latch.http.post(format!("{}/t/nope/ping", latch.base)).json(&json!({}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "unknown-module"));
    assert_eq!(run_count(&latch).await, 0);
}

#[tokio::test]
async fn an_automatic_answer_is_filled_with_the_run_id_and_a_gets_query_is_the_data() {
    let latch = start().await;
    latch.upload_plugin("webhook-response").await;
    let (status, body) = send(latch.http.get(format!("{}?source=monitor", url(&latch, "ping")))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["pong"], true);
    let run = latch.wait_for(body["run"].as_str().expect("run id filled in"), "completed").await;
    assert_eq!(run["output"]["data"], json!({ "source": "monitor" }));
    assert_eq!(run["output"]["trigger"], "trigger:ping");
}

#[tokio::test]
async fn a_trigger_url_with_an_api_key_in_it() {
    let latch = start().await;
    latch.upload_plugin("webhook-response").await;
    let request = latch.http.post(format!("{}/v1/keys", latch.base)).bearer_auth(ADMIN_KEY);
    let (_, key) = send(request.json(&json!({ "name": "shop" }))).await;
    let key = key["key"].as_str().expect("key");
    let (status, body) = send(latch.http.post(url(&latch, "secure-orders")).json(&json!({}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "missing-key"));
    let (status, body) =
        send(latch.http.post(format!("{}?key={key}", url(&latch, "secure-orders"))).json(&json!({ "n": 1 }))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn an_upload_whose_trigger_suffix_has_a_space_is_400_naming_it() {
    let latch = start().await;
    let (status, body) = latch.upload("bad-trigger", crate::harness::plugin("bad-trigger")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "bad-trigger"));
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("`new orders`")), "{body}");
}
