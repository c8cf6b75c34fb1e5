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
    latch.all_runs(None).await.len()
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
    let key = latch.new_key("shop", &[]).await;
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

fn named(latch: &Latch, execution: &str) -> String {
    format!("{}/t/order-approval/payment-confirmed?execution={execution}", latch.base)
}

#[tokio::test]
async fn a_named_trigger_resumes_the_run_given_by_id_with_the_query_as_data() {
    let latch = start().await;
    latch.upload_plugin("order-approval").await;
    let id = latch.start_run("order-approval", json!({ "order_id": "o-1" })).await;
    let run = latch.wait_for(&id, "waiting").await;
    assert_eq!(run["waiting_on"][0]["trigger"], "payment-confirmed");
    assert!(run["waiting_on"][0]["url"].as_str().is_some_and(|u| u.ends_with(&format!("execution={id}"))), "{run}");

    let alias = format!("{}/t/order-approval/payment-confirmed?executionId={id}&paid=42", latch.base);
    let (status, body) = send(latch.http.get(alias)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "resumed": 1 })), "an open trigger's caller is not told ids");
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["output"]["payment"], json!({ "paid": "42" }));

    let (status, body) = send(latch.http.post(named(&latch, &id)).json(&json!({}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "unknown-execution"), "a finished run");
    let (status, body) =
        send(latch.http.post(named(&latch, "01a20000-0000-7000-8000-000000000000")).json(&json!({}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "unknown-execution"));
}

#[tokio::test]
async fn any_resumes_the_longest_waiting_run_and_all_resumes_every_other() {
    let latch = start().await;
    latch.upload_plugin("order-approval").await;
    let (status, body) = send(latch.http.post(named(&latch, "any")).json(&json!({}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "nothing-waiting"));

    let mut ids = Vec::new();
    for n in 0..3 {
        let id = latch.start_run("order-approval", json!({ "order_id": format!("o-{n}") })).await;
        latch.wait_for(&id, "waiting").await;
        ids.push(id);
    }
    let (status, body) = send(latch.http.post(named(&latch, "any")).json(&json!({ "via": "any" }))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "resumed": 1 })));
    assert_eq!(latch.wait_for(&ids[0], "completed").await["output"]["payment"], json!({ "via": "any" }));

    let (status, body) = send(latch.http.post(named(&latch, "all")).json(&json!({ "via": "all" }))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "resumed": 2 })));
    for id in &ids[1..] {
        assert_eq!(latch.wait_for(id, "completed").await["output"]["payment"], json!({ "via": "all" }));
    }
    let (status, body) = send(latch.http.post(named(&latch, "all")).json(&json!({}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "nothing-waiting"));
}

#[tokio::test]
async fn a_call_for_a_run_that_has_not_reached_the_trigger_is_kept_and_survives_a_restart() {
    let mut latch = crate::harness::start_with(&["--hot-hold-ms", "0"]).await;
    latch.upload_plugin("order-approval").await;
    let id = latch.start_run("order-approval", json!({ "order_id": "o-9" })).await;
    // Straight after the start: the run may not wait yet; the call is kept either way.
    let (status, _) = send(latch.http.post(named(&latch, &id)).json(&json!({ "early": true }))).await;
    assert_eq!(status, StatusCode::OK);
    latch.restart().await;
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["output"]["payment"], json!({ "early": true }));
}

#[tokio::test]
async fn a_declared_named_trigger_checks_its_callers_roles_and_its_condition() {
    let latch = start().await;
    latch.upload_plugin("order-approval").await;
    let payments = latch.new_key("psp", &["payments"]).await;
    let other = latch.new_key("crm", &[]).await;
    let id = latch.start_run("order-approval", json!({ "order_id": "o-5", "trigger": "payment-verified" })).await;
    latch.wait_for(&id, "waiting").await;
    let verified = format!("{}/t/order-approval/payment-verified?execution={id}", latch.base);

    let (status, body) = send(latch.http.post(&verified).json(&json!({ "status": "confirmed" }))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "missing-key"));
    let (status, body) =
        send(latch.http.post(&verified).bearer_auth(&other).json(&json!({ "status": "confirmed" }))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "missing-role"));
    let processing = latch.http.post(&verified).bearer_auth(&payments).json(&json!({ "status": "processing" }));
    assert_eq!(send(processing).await, (StatusCode::OK, json!({ "activated": false })));
    assert_eq!(latch.run(&id).await["status"], "waiting");

    let confirmed = latch.http.post(&verified).bearer_auth(&payments).json(&json!({ "status": "confirmed" }));
    assert_eq!(send(confirmed).await, (StatusCode::OK, json!({ "resumed": 1, "runs": [id] })));
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["output"]["caller"], "psp", "the caller's identity reached the run");
}

/// A run whose inbox is full is passed over by `any` and `all`: it holds up no other run
/// waiting at the trigger, and only a call for it by id is refused.
#[tokio::test]
async fn a_run_with_a_full_inbox_is_passed_over_by_any_and_all() {
    let latch = crate::harness::start_with(&["--max-queued-calls", "2", "--take-timeout-ms", "60000"]).await;
    latch.upload_plugin("order-approval").await;
    let payments = latch.new_key("psp", &["payments"]).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let id = latch.start_run("order-approval", json!({ "order_id": format!("o-{n}") })).await;
        latch.wait_for(&id, "waiting").await;
        ids.push(id);
    }
    // The longest waiting run's inbox fills with calls kept for a trigger it has not reached.
    let verified = format!("{}/t/order-approval/payment-verified?execution={}", latch.base, ids[0]);
    let confirmed = || latch.http.post(&verified).bearer_auth(&payments).json(&json!({ "status": "confirmed" }));
    let _held: Vec<_> = (0..2).map(|_| tokio::spawn(send(confirmed()))).collect();
    crate::exhaustion::listed(&latch, &ids[0], "queued", 2).await;

    let (status, body) = send(latch.http.post(named(&latch, "any")).json(&json!({ "via": "any" }))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "resumed": 1 })));
    assert_eq!(latch.wait_for(&ids[1], "completed").await["output"]["payment"], json!({ "via": "any" }));
    let (status, body) = send(latch.http.post(named(&latch, "all")).json(&json!({ "via": "all" }))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "resumed": 1 })));
    assert_eq!(latch.wait_for(&ids[2], "completed").await["output"]["payment"], json!({ "via": "all" }));

    let (status, body) = send(latch.http.post(named(&latch, &ids[0])).json(&json!({}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::TOO_MANY_REQUESTS, "run-inbox-full"), "{body}");
    let (status, body) = send(latch.http.post(named(&latch, "any")).json(&json!({}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::TOO_MANY_REQUESTS, "run-inbox-full"), "{body}");
    assert_eq!(latch.run(&ids[0]).await["status"], "waiting");
}

#[tokio::test]
async fn a_listening_trigger_captures_a_sample_event_and_learns_its_shape() {
    let latch = start().await;
    latch.upload_plugin("webhook-response").await;
    let sample_url = format!("{}/v1/modules/webhook-response/triggers/new-order/sample", latch.base);
    let (status, body) = send(latch.http.get(&sample_url).bearer_auth(ADMIN_KEY)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "no-sample"));
    let (status, _) = send(latch.http.post(&sample_url).bearer_auth(ADMIN_KEY)).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // The vendor's test event: captured, whatever its shape, and no run starts.
    let event = json!({ "data": [{ "name": "shampoo", "price": 9.95 }] });
    let (status, body) = send(latch.http.post(url(&latch, "orders/new")).json(&event)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "captured": true, "activated": false })));
    assert_eq!(run_count(&latch).await, 0);

    let (_, sample) = send(latch.http.get(&sample_url).bearer_auth(ADMIN_KEY)).await;
    assert_eq!(sample["event"]["body"], event);
    let items = &sample["schema"]["properties"]["body"]["properties"]["data"]["items"];
    assert_eq!(items["properties"]["price"], json!({ "type": "number" }), "{sample}");
    // Listening is over: the next call is a normal one again.
    let (status, _) = send(latch.http.post(url(&latch, "orders/new")).json(&event)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_trigger_name_that_is_not_one_reaches_no_run() {
    let latch = start().await;
    latch.upload_plugin("order-approval").await;
    let id = latch.start_run("order-approval", json!({ "order_id": "o-6" })).await;
    latch.wait_for(&id, "waiting").await;
    // A zero byte would otherwise reach into `payment-confirmed`'s store keys.
    for name in ["payment-confirmed%00x", "a%2Fb"] {
        let url = format!("{}/t/order-approval/{name}?execution={id}", latch.base);
        let (status, body) = send(latch.http.post(url).json(&json!({ "forged": true }))).await;
        assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "unknown-trigger"), "{name}");
    }
    assert_eq!(latch.run(&id).await["status"], "waiting");
}
