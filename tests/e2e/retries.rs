//! Senders retry a message whose answer they did not get, with the same id: a repeat of an
//! accepted message gets the first answer and delivers nothing, before and after a SIGKILL.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{ADMIN_KEY, Latch, error_code, send, start};
use latch_testkit::python_signature;

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

async fn put_secret(latch: &Latch, name: &str, value: &str) {
    let request = latch.http.put(format!("{}/v1/secrets/{name}", latch.base)).bearer_auth(ADMIN_KEY);
    assert!(send(request.json(&json!({ "value": value }))).await.0.is_success());
}

/// A sender's delivery of message `n`: signed afresh (a retry has a new timestamp), with the
/// message's id where the scheme carries it.
fn signed(scheme: &str, secret: &str, n: u32, at: u64) -> (Vec<(String, String)>, String) {
    signed_event(scheme, secret, n, &format!("e-{n}"), at)
}

/// Message `n` (its id) carrying `event`: another body under a used id when `event` differs.
fn signed_event(scheme: &str, secret: &str, n: u32, event: &str, at: u64) -> (Vec<(String, String)>, String) {
    let body = json!({ "id": format!("evt_{n}"), "event": event }).to_string();
    let mut headers = python_signature(scheme, secret, &body, at, &format!("msg_{n}"));
    if scheme == "github" {
        headers.push(("X-GitHub-Delivery".into(), format!("delivery-{n}")));
    }
    (headers, body)
}

async fn post(latch: &Latch, url: &str, (headers, body): &(Vec<(String, String)>, String)) -> (StatusCode, Value) {
    let mut request = latch.http.post(url).header("content-type", "application/json").body(body.clone());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    send(request).await
}

const SCHEMES: [(&str, &str); 3] = [
    ("standard-webhooks", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    ("stripe", "whsec_stripe_retry_secret"),
    ("github", "It's a Secret to Everybody"),
];

/// A blink-callback run whose webhook takes `calls` calls signed with `scheme`, and the
/// answer to its first message: `(run id, URL, answer)`.
async fn first_message(latch: &Latch, scheme: &str, secret: &str, calls: u32) -> (String, String, (StatusCode, Value)) {
    put_secret(latch, scheme, secret).await;
    let input = json!({ "auth": "signature", "scheme": scheme, "secret": scheme, "calls": calls });
    let id = latch.start_run("blink-callback", input).await;
    let url = latch.waiting_url(&id).await;
    let first = post(latch, &url, &signed(scheme, secret, 1, now_secs())).await;
    assert_eq!(first.0, StatusCode::ACCEPTED, "{scheme}: {first:?}");
    (id, url, first)
}

#[tokio::test]
async fn each_schemes_retries_get_the_first_answer_and_deliver_once_across_a_sigkill() {
    let mut latch = start().await;
    latch.upload_plugin("blink-callback").await;
    let mut runs = Vec::new();
    for (scheme, secret) in SCHEMES {
        let (id, url, first) = first_message(&latch, scheme, secret, 2).await;
        // The same message again, re-signed as a sender's retry is, then exactly as sent.
        for retry in [signed(scheme, secret, 1, now_secs() + 1), signed(scheme, secret, 1, now_secs())] {
            assert_eq!(post(&latch, &url, &retry).await, first, "{scheme}");
        }
        // GitHub signs the body only: a captured body under a new delivery id is a replay.
        if scheme == "github" {
            let (mut headers, body) = signed(scheme, secret, 1, now_secs());
            headers.retain(|(name, _)| name != "X-GitHub-Delivery");
            headers.push(("X-GitHub-Delivery".into(), "delivery-forged".into()));
            assert_eq!(post(&latch, &url, &(headers, body)).await, first);
        }
        runs.push((scheme, secret, id, url, first));
    }
    latch.restart().await;
    for (scheme, secret, id, url, first) in &runs {
        let url = latch.rebase(url);
        assert_eq!(post(&latch, &url, &signed(scheme, secret, 1, now_secs() + 2)).await, *first, "{scheme}");
        assert_eq!(post(&latch, &url, &signed(scheme, secret, 2, now_secs())).await.0, StatusCode::ACCEPTED);
        let calls = latch.wait_for(id, "completed").await["output"]["calls"].clone();
        let events: Vec<Value> = calls.as_array().expect("calls").iter().map(|c| c["data"]["event"].clone()).collect();
        assert_eq!(events, [json!("e-1"), json!("e-2")], "{scheme}: each message once");
    }
}

/// The symptom senders met: a retry to a single-use URL answered 410. Each scheme's retry
/// gets the first answer there, before and after a SIGKILL; another body under a used
/// message id is a 422 (GitHub's id is its body: another body is another message).
#[tokio::test]
async fn each_schemes_retries_to_a_single_use_url_and_another_body_under_a_used_id() {
    let mut latch = start().await;
    latch.upload_plugin("blink-callback").await;
    let mut runs = Vec::new();
    for (scheme, secret) in SCHEMES {
        let (id, url, first) = first_message(&latch, scheme, secret, 1).await;
        latch.wait_for(&id, "completed").await;
        assert_eq!(post(&latch, &url, &signed(scheme, secret, 1, now_secs() + 1)).await, first, "{scheme}");
        runs.push((scheme, secret, id, url, first));
    }
    for round in ["before", "after"] {
        if round == "after" {
            latch.restart().await;
        }
        for (scheme, secret, id, url, first) in &runs {
            let url = latch.rebase(url);
            assert_eq!(post(&latch, &url, &signed(scheme, secret, 1, now_secs())).await, *first, "{scheme} {round}");
            let other = post(&latch, &url, &signed_event(scheme, secret, 1, "changed", now_secs())).await;
            let expected = match *scheme {
                "github" => (StatusCode::GONE, "gone"),
                _ => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused"),
            };
            assert_eq!((other.0, error_code(&other.1)), expected, "{scheme} {round} the kill: {other:?}");
            let calls = latch.run(id).await["output"]["calls"].clone();
            let events: Vec<Value> = calls.as_array().expect("calls").iter().map(|c| c["data"]["event"].clone()).collect();
            assert_eq!(events, [json!("e-1")], "{scheme}: delivered once");
        }
    }
}

#[tokio::test]
async fn an_idempotency_key_answers_a_retry_as_the_first_and_refuses_another_body() {
    let mut latch = start().await;
    latch.upload_plugin("order-payment").await;
    let id = latch.start_run("order-payment", json!({ "order_id": "o-1", "amount": 1 })).await;
    let url = latch.waiting_url(&id).await;
    let call = |url: &str, body: Value| latch.http.post(url).header("Idempotency-Key", "pay-1").json(&body);
    let first = send(call(&url, json!({ "paid": 1 }))).await;
    assert_eq!(first.0, StatusCode::ACCEPTED);
    // A single-use URL answers the retry as it answered the first, not 410.
    assert_eq!(send(call(&url, json!({ "paid": 1 }))).await, first);
    let (status, body) = send(call(&url, json!({ "paid": 2 }))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused"));
    latch.restart().await;
    let url = latch.rebase(&url);
    let retry = latch.http.post(&url).header("Idempotency-Key", "pay-1").json(&json!({ "paid": 1 }));
    assert_eq!(send(retry).await, first);
    let another = latch.http.post(&url).header("Idempotency-Key", "pay-1").json(&json!({ "paid": 2 }));
    let (status, body) = send(another).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused"), "after the kill");
    assert_eq!(latch.wait_for(&id, "completed").await["output"]["payment"], json!({ "paid": 1 }));
    let (_, listed) = latch.get(&format!("/v1/runs/{id}/requests")).await;
    assert_eq!(listed["requests"].as_array().map(Vec::len), Some(1), "delivered once: {listed}");
    // Another key is another message: the used URL refuses it.
    let other = latch.http.post(&url).header("Idempotency-Key", "pay-2").json(&json!({ "paid": 1 }));
    assert_eq!(send(other).await.0, StatusCode::GONE);
}

#[tokio::test]
async fn a_retry_of_a_call_the_run_answered_gets_the_runs_own_answer() {
    let mut latch = start().await;
    latch.upload_plugin("payment-ledger").await;
    let id = latch.start_run("payment-ledger", json!({ "order_id": "o-1" })).await;
    let url = latch.waiting_url(&id).await;
    let event = |latch: &Latch, url: &str| {
        latch.http.post(url).header("Idempotency-Key", "evt-9").json(&json!({ "type": "payment.failed" }))
    };
    let first = send(event(&latch, &url)).await;
    assert_eq!(first, (StatusCode::OK, json!({ "ack": true, "action": "flagged" })));
    assert_eq!(send(event(&latch, &url)).await, first);
    latch.restart().await;
    let url = latch.rebase(&url);
    assert_eq!(send(event(&latch, &url)).await, first);
    let done = latch.http.post(&url).json(&json!({ "type": "payment.succeeded" }));
    assert_eq!(send(done).await.0, StatusCode::OK);
    let ledger = latch.wait_for(&id, "completed").await["output"]["ledger"].clone();
    assert_eq!(
        ledger,
        json!([{ "type": "payment.failed", "action": "flagged" }, { "type": "payment.succeeded", "action": "captured" }])
    );
}

fn new_order(latch: &Latch, key: &str) -> reqwest::RequestBuilder {
    let url = format!("{}/t/webhook-response/orders/new", latch.base);
    let order = json!({ "order_id": "o-1", "priority": "high" });
    latch.http.post(url).header("x-shop", "eu").header("Idempotency-Key", key).json(&order)
}

fn confirm(latch: &Latch, execution: &str, key: &str) -> reqwest::RequestBuilder {
    let url = format!("{}/t/order-approval/payment-confirmed?execution={execution}", latch.base);
    latch.http.post(url).header("Idempotency-Key", key).json(&json!({ "paid": true }))
}

#[tokio::test]
async fn a_retried_start_trigger_call_starts_one_run_and_a_retried_any_resumes_one() {
    let mut latch = start().await;
    latch.upload_plugin("webhook-response").await;
    latch.upload_plugin("order-approval").await;
    let first = send(new_order(&latch, "order-1")).await;
    assert_eq!(first.0, StatusCode::CREATED, "{first:?}");
    assert_eq!(send(new_order(&latch, "order-1")).await, first, "the run's own answer again");
    latch.restart().await;
    assert_eq!(send(new_order(&latch, "order-1")).await, first, "and after a SIGKILL");
    let started = latch.all_runs(None).await.iter().filter(|r| r["module"] == "webhook-response").count();
    assert_eq!(started, 1);

    // The only waiting run takes the call and completes; a retry still gets the first
    // answer, before and after a SIGKILL.
    for by_id in [false, true] {
        let id = latch.start_run("order-approval", json!({ "order_id": "o-1" })).await;
        latch.wait_for(&id, "waiting").await;
        let execution = if by_id { id.clone() } else { "any".to_string() };
        let key = format!("confirm-{by_id}");
        let first = send(confirm(&latch, &execution, &key)).await;
        assert_eq!(first, (StatusCode::OK, json!({ "resumed": 1 })));
        latch.wait_for(&id, "completed").await;
        assert_eq!(send(confirm(&latch, &execution, &key)).await, first, "by id: {by_id}");
        latch.restart().await;
        assert_eq!(send(confirm(&latch, &execution, &key)).await, first, "by id: {by_id}, after a SIGKILL");
        assert_eq!(latch.events(&id).await.iter().filter(|e| e["type"] == "wait-ended").count(), 1);
    }
}

#[tokio::test]
async fn a_held_call_withdrawn_when_its_caller_hangs_up_is_never_delivered() {
    let latch = crate::harness::start_with(&["--take-timeout-ms", "1000"]).await;
    latch.upload_plugin("order-approval").await;
    let payments = latch.new_key("psp", &["payments"]).await;
    let id = latch.start_run("order-approval", json!({ "order_id": "o-1" })).await;
    latch.wait_for(&id, "waiting").await;
    // Held: the run waits at `payment-confirmed`, not here. The caller gives up at once.
    let url = format!("{}/t/order-approval/payment-verified?execution={id}", latch.base);
    let hung_up = latch.http.post(&url).bearer_auth(&payments).timeout(std::time::Duration::from_millis(200));
    assert!(hung_up.json(&json!({ "status": "confirmed" })).send().await.is_err(), "the caller hung up");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, listed) = latch.get(&format!("/v1/runs/{id}/requests")).await;
        let requests = listed["requests"].as_array().cloned().unwrap_or_default();
        if requests.iter().any(|r| r["state"] == "not-taken" && r["reason"] == "timed-out") {
            assert!(!requests.iter().any(|r| r["state"] == "queued"), "{listed}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never withdrawn: {listed}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_single_use_url_whose_held_call_was_lost_to_a_sigkill_takes_the_senders_retry() {
    let mut latch = start().await;
    latch.upload_plugin("wait-patterns").await;
    // The run sleeps before it waits: the manual-answer callback's caller is held meanwhile.
    let input = json!({ "pattern": "first-of-two", "tokens": ["held-a", "held-b"], "only_first": true,
                        "sleep_ms": 3000, "manual": true });
    let id = latch.start_run("wait-patterns", input).await;
    latch.wait_for(&id, "waiting").await;
    let held = {
        let latch = &latch;
        async move { latch.resume("held-a", &json!({ "try": 1 })).await }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_millis(500), held).await;
    latch.restart().await;
    let (status, body) = latch.resume("held-a", &json!({ "try": 2 })).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "taken": true })));
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["output"]["first"], json!({ "try": 2 }), "only the retry was delivered");
}
