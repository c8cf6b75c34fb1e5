//! Who may call a webhook: a key in the URL, a bearer API key with roles, or an HMAC
//! signature made by another implementation than ours (Python's `standardwebhooks` and
//! hmac). Every refusal is a JSON 401/403, or `200 {"activated":false}` when the webhook
//! ignores failures; nothing refused reaches the run.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{ADMIN_KEY, Latch, error_code, send, start, start_with};
use crate::vendor::{Behaviour, Vendor};
use latch_testkit::python_signature;

async fn admin_post(latch: &Latch, path: &str, body: Value) -> (StatusCode, Value) {
    send(latch.http.post(format!("{}{path}", latch.base)).bearer_auth(ADMIN_KEY).json(&body)).await
}

async fn put_secret(latch: &Latch, name: &str, value: &str) {
    let request = latch.http.put(format!("{}/v1/secrets/{name}", latch.base)).bearer_auth(ADMIN_KEY);
    let (status, body) = send(request.json(&json!({ "value": value }))).await;
    assert!(status.is_success(), "{body}");
}

/// A waiting blink-callback run guarded as `input` says, and its URL.
async fn guarded(latch: &Latch, input: Value) -> (String, String) {
    let id = latch.start_run("blink-callback", input).await;
    let url = latch.waiting_url(&id).await;
    (id, url)
}

async fn post_with(latch: &Latch, url: &str, headers: &[(String, String)], body: &str) -> (StatusCode, Value) {
    let mut request = latch.http.post(url).header("content-type", "application/json").body(body.to_string());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    send(request).await
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A blink-callback run guarded by a URL key, and its URL as the external system got it
/// (the engine keeps the key nowhere, so only the system the run hands it to has it).
pub async fn url_key_run(latch: &Latch, vendor: &Vendor) -> (String, String) {
    let id = latch.start_run("blink-callback", json!({ "auth": "url-key", "notify_url": vendor.url })).await;
    latch.wait_for(&id, "waiting").await;
    let registered = vendor.received().into_iter().next().expect("the run registered its callback URL");
    (id, registered["callback_url"].as_str().expect("callback URL").to_string())
}

#[tokio::test]
async fn a_key_embedded_in_the_url_is_required() {
    let vendor = Vendor::start(Behaviour::Silent).await;
    let latch = start_with(&["--allow-http", "127.0.0.1:*"]).await;
    latch.upload_plugin("blink-callback").await;
    let (id, url) = url_key_run(&latch, &vendor).await;
    let (base, key) = url.split_once("?key=").expect("the URL embeds a key");
    let (status, body) = send(latch.http.post(base).json(&json!({}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "missing-key"));
    let (status, body) = send(latch.http.post(format!("{base}?key=x{key}")).json(&json!({}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "bad-key"));
    let (status, _) = send(latch.http.post(&url).json(&json!({ "ticket": "T-1" }))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["output"]["calls"][0], json!({ "data": { "ticket": "T-1" }, "caller": { "kind": "url-key" } }));
}

#[tokio::test]
async fn a_bearer_key_needs_every_role_and_its_identity_reaches_the_run() {
    let latch = start().await;
    latch.upload_plugin("blink-callback").await;
    let executor = latch.new_key("ticketing", &["execute", "tickets"]).await;
    let reader = latch.new_key("reader", &["read"]).await;
    let (id, url) = guarded(&latch, json!({ "auth": "bearer", "roles": ["execute"] })).await;

    let (status, body) = send(latch.http.post(&url).json(&json!({}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "missing-key"));
    let (status, body) = send(latch.http.post(&url).bearer_auth("latch_key_nope").json(&json!({}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "bad-key"));
    let (status, body) = send(latch.http.post(&url).bearer_auth(&reader).json(&json!({}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "missing-role"));

    let (status, _) = send(latch.http.post(&url).bearer_auth(&executor).json(&json!({ "sla": "4h" }))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let run = latch.wait_for(&id, "completed").await;
    let caller = json!({ "kind": "api-key", "name": "ticketing", "roles": ["execute", "tickets"] });
    assert_eq!(run["output"]["calls"][0], json!({ "data": { "sla": "4h" }, "caller": caller }));
    // The key itself never reaches the run's log.
    let log = serde_json::to_string(&latch.events(&id).await).expect("json");
    assert!(!log.contains(&executor), "the API key leaked into the log");
    assert!(log.contains("[redacted]"));
}

#[tokio::test]
async fn a_revoked_key_is_refused_and_key_admin_errors_are_json() {
    let latch = start().await;
    latch.upload_plugin("blink-callback").await;
    let key = latch.new_key("vendor", &[]).await;
    let (status, body) = admin_post(&latch, "/v1/keys", json!({ "name": "vendor" })).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "name-taken"));
    let (status, body) = admin_post(&latch, "/v1/keys", json!({ "name": "has space" })).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "bad-name"));
    let (_, keys) = latch.get("/v1/keys").await;
    assert_eq!(keys["keys"][0]["name"], "vendor");
    assert!(keys["keys"][0].get("key").is_none() && !keys.to_string().contains(&key));

    let (_, url) = guarded(&latch, json!({ "auth": "bearer" })).await;
    let revoke = latch.http.delete(format!("{}/v1/keys/vendor", latch.base)).bearer_auth(ADMIN_KEY);
    assert_eq!(send(revoke).await.0, StatusCode::OK);
    let (status, body) = send(latch.http.post(&url).bearer_auth(&key).json(&json!({}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "bad-key"));
    let revoke_again = latch.http.delete(format!("{}/v1/keys/vendor", latch.base)).bearer_auth(ADMIN_KEY);
    let (status, body) = send(revoke_again).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "unknown-key"));
}

#[tokio::test]
async fn with_the_ignore_policy_a_failed_call_is_answered_but_not_delivered() {
    let latch = start().await;
    latch.upload_plugin("blink-callback").await;
    let key = latch.new_key("approver", &["approve"]).await;
    let (id, url) = guarded(&latch, json!({ "auth": "bearer", "roles": ["approve"], "on_fail": "ignore" })).await;
    let (status, body) = send(latch.http.post(&url).bearer_auth("wrong").json(&json!({ "n": 1 }))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "activated": false })));
    assert_eq!(latch.run(&id).await["status"], "waiting");
    send(latch.http.post(&url).bearer_auth(&key).json(&json!({ "n": 2 }))).await;
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["output"]["calls"][0]["data"], json!({ "n": 2 }));
}

#[tokio::test]
async fn calls_signed_by_other_implementations_are_accepted_in_each_scheme() {
    let latch = start().await;
    latch.upload_plugin("blink-callback").await;
    let schemes = [
        ("standard-webhooks", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("stripe", "whsec_stripe_test_secret"),
        ("github", "It's a Secret to Everybody"),
    ];
    for (scheme, secret) in schemes {
        put_secret(&latch, scheme, secret).await;
        let (id, url) = guarded(&latch, json!({ "auth": "signature", "scheme": scheme, "secret": scheme })).await;
        let body = json!({ "event": "payment.succeeded", "scheme": scheme }).to_string();
        let headers = python_signature(scheme, secret, &body, now_secs(), "msg_1");
        let (status, answer) = post_with(&latch, &url, &headers, &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{scheme}: {answer}");
        let run = latch.wait_for(&id, "completed").await;
        assert_eq!(run["output"]["calls"][0]["data"]["scheme"], scheme);
        assert_eq!(run["output"]["calls"][0]["caller"]["kind"], "signature");
    }
}

#[tokio::test]
async fn wrong_missing_and_stale_signatures_are_refused_and_a_replay_delivers_nothing() {
    let latch = start().await;
    latch.upload_plugin("blink-callback").await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    put_secret(&latch, "vendor", secret).await;
    let input = json!({ "auth": "signature", "scheme": "standard-webhooks", "secret": "vendor", "calls": 2 });
    let (id, url) = guarded(&latch, input).await;
    let body = json!({ "event": "a" }).to_string();

    let (status, answer) = post_with(&latch, &url, &[], &body).await;
    assert_eq!((status, error_code(&answer)), (StatusCode::UNAUTHORIZED, "missing-signature"));
    let forged = python_signature("standard-webhooks", "whsec_c29tZW9uZSBlbHNl", &body, now_secs(), "msg_1");
    let (status, answer) = post_with(&latch, &url, &forged, &body).await;
    assert_eq!((status, error_code(&answer)), (StatusCode::UNAUTHORIZED, "bad-signature"));
    let stale = python_signature("standard-webhooks", secret, &body, now_secs() - 600, "msg_1");
    let (status, answer) = post_with(&latch, &url, &stale, &body).await;
    assert_eq!((status, error_code(&answer)), (StatusCode::UNAUTHORIZED, "stale-signature"));
    let tampered = python_signature("standard-webhooks", secret, &body, now_secs(), "msg_1");
    let (status, answer) = post_with(&latch, &url, &tampered, &json!({ "event": "b" }).to_string()).await;
    assert_eq!((status, error_code(&answer)), (StatusCode::UNAUTHORIZED, "bad-signature"));

    // A replay of an accepted message gets the first answer and delivers nothing.
    let valid = python_signature("standard-webhooks", secret, &body, now_secs(), "msg_2");
    assert_eq!(post_with(&latch, &url, &valid, &body).await.0, StatusCode::ACCEPTED);
    assert_eq!(post_with(&latch, &url, &valid, &body).await.0, StatusCode::ACCEPTED);
    // The accepted call reaches the run; then the run waits for its second call again.
    let deliveries =
        || async { latch.events(&id).await.iter().filter(|e| e["result"]["outcome"] == "request").count() };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while deliveries().await == 0 {
        assert!(std::time::Instant::now() < deadline, "the accepted call never reached the run");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    latch.wait_for(&id, "waiting").await;
    assert_eq!(deliveries().await, 1, "only the first of the two identical calls was delivered");

    for (scheme, secret) in [("stripe", "s1"), ("github", "g1")] {
        put_secret(&latch, scheme, secret).await;
        let (_, url) = guarded(&latch, json!({ "auth": "signature", "scheme": scheme, "secret": scheme })).await;
        let forged = python_signature(scheme, "not-the-secret", &body, now_secs(), "");
        let (status, answer) = post_with(&latch, &url, &forged, &body).await;
        assert_eq!((status, error_code(&answer)), (StatusCode::UNAUTHORIZED, "bad-signature"), "{scheme}");
    }
}

#[tokio::test]
async fn a_webhook_on_a_secret_that_does_not_exist_is_refused_to_the_run() {
    let latch = start().await;
    latch.upload_plugin("blink-callback").await;
    let input = json!({ "auth": "signature", "scheme": "github", "secret": "never-stored" });
    let id = latch.start_run("blink-callback", input).await;
    let run = latch.wait_for(&id, "failed").await;
    assert_eq!(run["error"]["code"], "unknown-secret");
}

#[tokio::test]
async fn a_hook_with_a_chosen_token_is_resumed_from_the_api_with_a_key() {
    let latch = start().await;
    latch.upload_plugin("bench-echo").await;
    let key = latch.new_key("uploader", &[]).await;
    let id = latch.start_run("bench-echo", json!({ "token": "upload:imp-1" })).await;
    latch.wait_for(&id, "waiting").await;
    // The token is live: another run cannot take it.
    let rival = latch.start_run("bench-echo", json!({ "token": "upload:imp-1" })).await;
    assert_eq!(latch.wait_for(&rival, "failed").await["error"]["code"], "token-taken");

    let resume = |token: &str| latch.http.post(format!("{}/v1/hooks/{token}", latch.base));
    let (status, body) = send(resume("upload:imp-1").json(&json!({ "blobToken": "b-1" }))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "missing-key"));
    let (status, body) = send(resume("upload:nope").bearer_auth(&key).json(&json!({}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "unknown-webhook"));
    let (status, body) = send(resume("upload:imp-1").bearer_auth(&key).json(&json!({ "blobToken": "b-1" }))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    latch.wait_for(&id, "completed").await;

    let (_, requests) = latch.get(&format!("/v1/runs/{id}/requests")).await;
    let request = &requests["requests"][0];
    assert_eq!(request["data"], json!({ "blobToken": "b-1" }));
    assert_eq!(request["caller"], json!({ "kind": "api-key", "name": "uploader", "roles": [] }));
    assert_eq!(request["state"], "delivered");
}

#[tokio::test]
async fn an_api_key_does_not_stand_in_for_a_webhooks_own_credential() {
    let latch = start().await;
    latch.upload_plugin("blink-callback").await;
    let key = latch.new_key("any-service", &[]).await;
    let (id, url) = guarded(&latch, json!({ "auth": "url-key" })).await;
    let token = url.split("/hooks/").nth(1).and_then(|rest| rest.split('?').next()).expect("token").to_string();
    let resume = latch.http.post(format!("{}/v1/hooks/{token}", latch.base)).bearer_auth(&key);
    let (status, body) = send(resume.json(&json!({}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "auth-mismatch"));
    assert_eq!(latch.run(&id).await["status"], "waiting");
}
