//! Module uploads and the admin API's guards.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{error_code, plugin, send, start};

#[tokio::test]
async fn invalid_uploads_are_400_and_say_why() {
    let latch = start().await;
    let cases: [(&str, Vec<u8>); 4] = [
        ("not-wasm", b"#!/bin/sh\necho hi\n".to_vec()),
        ("not-a-component", b"\0asm\x01\0\0\0".to_vec()),
        // An empty component: valid, but it exports neither `describe` nor `run`.
        ("world-mismatch", b"\0asm\x0d\0\x01\0".to_vec()),
        ("invalid-component", b"\0asm\x0d\0\x01\0\xff\xff".to_vec()),
    ];
    for (code, bytes) in cases {
        let (status, body) = latch.upload("broken", bytes).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{code}: {body}");
        assert_eq!(error_code(&body), code);
    }
    let (status, _) = latch.get("/v1/modules/broken").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");
}

#[tokio::test]
async fn uploads_are_versioned_by_content_and_idempotent() {
    let latch = start().await;
    let (status, first) = latch.upload("orders", plugin("order-payment")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = latch.upload("orders", plugin("order-payment")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["version"]["version"], again["version"]["version"]);
    let (status, body) = latch.upload("orders", plugin("ticket-triage")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, module) = latch.get("/v1/modules/orders").await;
    assert_eq!(module["versions"].as_array().map(Vec::len), Some(2));
    let id = latch.start_run("orders", json!({ "ticket_id": "T-2" })).await;
    assert_eq!(latch.run(&id).await["version"], body["version"]["version"], "new runs take the newest version");
}

#[tokio::test]
async fn a_restart_reuses_the_compiled_code_cache() {
    let mut latch = start().await;
    latch.upload_plugin("order-payment").await;
    let id = latch.start_run("order-payment", json!({ "order_id": "o-1", "amount": 1 })).await;
    let url = latch.waiting_url(&id).await;
    latch.restart().await;
    send(latch.http.post(latch.rebase(&url)).json(&json!({ "paid": true }))).await;
    latch.wait_for(&id, "completed").await;
    assert!(!latch.log().contains("compiling"), "{}", latch.log());
}

#[tokio::test]
async fn the_admin_api_needs_the_admin_key() {
    let latch = start().await;
    let (status, body) = send(latch.http.get(format!("{}/v1/runs", latch.base))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&body), "missing-admin-key");
    let (status, body) = send(latch.http.get(format!("{}/v1/runs", latch.base)).bearer_auth("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&body), "bad-admin-key");
}

#[tokio::test]
async fn unknown_modules_runs_and_bad_inputs_are_json_errors() {
    let latch = start().await;
    let request =
        latch.http.post(format!("{}/v1/modules/nope/runs", latch.base)).bearer_auth(crate::harness::ADMIN_KEY);
    let (status, body) = send(request.json(&json!({}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "unknown-module");

    let (status, body) = latch.get("/v1/runs/00000000-0000-0000-0000-000000000000").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "unknown-run");

    latch.upload_plugin("order-payment").await;
    let request =
        latch.http.post(format!("{}/v1/modules/order-payment/runs", latch.base)).bearer_auth(crate::harness::ADMIN_KEY);
    let (status, body) = send(request.body("{oops")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "bad-json");

    let (status, body) = latch.upload("Bad Name", plugin("order-payment")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "bad-module-name");
}

#[tokio::test]
async fn requests_that_do_not_parse_get_json_errors() {
    let latch = start().await;
    let (status, body) = latch.get("/v1/runs?status=bogus").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "bad-request");
    let (status, body) = send(latch.http.post(format!("{}/hooks/%FF", latch.base)).json(&json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "bad-request");
    let (status, body) = send(latch.http.get(format!("{}/nowhere", latch.base))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not-found");
}
