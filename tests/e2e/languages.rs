//! The same workflows written in Rust, Python, JavaScript (and, for `order-payment`, C)
//! behave the same: each table of scenarios runs over every language's build of one
//! workflow, and the results must match.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Latch, error_code, plugin, send, start_with};
use crate::vendor::{Behaviour, Vendor};

/// Each language, and the suffix of its builds' plugin folders.
const LANGUAGES: [(&str, &str); 3] = [("rust", ""), ("python", "-py"), ("javascript", "-js")];

/// `order-payment` is also written in C.
const WITH_C: [(&str, &str); 4] = [LANGUAGES[0], LANGUAGES[1], LANGUAGES[2], ("c", "-c")];

/// A fresh server with `workflow`'s build in `language` uploaded under the name
/// `workflow`, so its trigger URLs are the same in every language.
async fn server_with(workflow: &str, suffix: &str, args: &[&str]) -> Latch {
    let latch = start_with(args).await;
    let (status, body) = latch.upload(workflow, plugin(&format!("{workflow}{suffix}"))).await;
    assert!(status.is_success(), "upload of {workflow}{suffix}: {status} {body}");
    latch
}

/// Runs `scenarios` over each language's build (one server each, so each component
/// compiles once) and fails when a language's results differ from Rust's.
async fn same_in_languages<F>(
    workflow: &str,
    languages: &[(&'static str, &'static str)],
    scenarios: impl Fn(&'static str) -> F,
) -> Vec<Value>
where
    F: Future<Output = Vec<Value>>,
{
    let mut results = Vec::new();
    for &(language, suffix) in languages {
        results.push((language, scenarios(suffix).await));
    }
    let (_, expected) = &results[0];
    for (language, seen) in &results[1..] {
        assert_eq!(seen, expected, "{workflow}: {language} differs from rust");
    }
    results.swap_remove(0).1
}

async fn order(latch: &Latch, order_id: &str) -> (String, String) {
    let id = latch.start_run("order-payment", json!({ "order_id": order_id, "amount": 42 })).await;
    let url = latch.waiting_url(&id).await;
    (id, url)
}

async fn order_payment(suffix: &str) -> Vec<Value> {
    let mut latch = server_with("order-payment", suffix, &[]).await;
    let mut seen = Vec::new();

    // Happy path, and the single-use URL afterwards.
    let (id, url) = order(&latch, "o-1").await;
    let (status, _) = send(latch.http.post(&url).json(&json!({ "status": "succeeded", "tx": "t-1" }))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{suffix}");
    seen.push(latch.wait_for(&id, "completed").await["output"].clone());
    let (status, body) = send(latch.http.post(&url).json(&json!({}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::GONE, "gone"), "{suffix}");

    // A failed payment is reported in the output.
    let (id, url) = order(&latch, "o-2").await;
    send(latch.http.post(&url).json(&json!({ "status": "failed" }))).await;
    seen.push(latch.wait_for(&id, "completed").await["output"].clone());

    // Bad input fails the run with the guest's code; bad JSON at the URL is a 400.
    let bad_inputs = [
        json!({ "amount": 1 }),
        json!({ "order_id": "o-4" }),
        json!({ "order_id": "o-4", "amount": "42" }),
        json!({ "order_id": "o-4", "amount": 42, "currency": 978 }),
    ];
    for input in bad_inputs {
        let id = latch.start_run("order-payment", input).await;
        seen.push(latch.wait_for(&id, "failed").await["error"]["code"].clone());
    }
    let (id, url) = order(&latch, "o-3").await;
    let bad = latch.http.post(&url).header("content-type", "application/json").body("{\"status\":");
    let (status, body) = send(bad).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "bad-json"), "{suffix}");

    // SIGKILL while it waits; the callback after the restart completes it.
    latch.restart().await;
    send(latch.http.post(latch.rebase(&url)).json(&json!({ "status": "succeeded" }))).await;
    seen.push(latch.wait_for(&id, "completed").await["output"].clone());
    seen
}

#[tokio::test]
async fn order_payment_behaves_the_same_in_every_language() {
    let seen = same_in_languages("order-payment", &WITH_C, order_payment).await;
    assert_eq!(seen[0]["status"], "paid");
    assert_eq!(seen[0]["payment"], json!({ "status": "succeeded", "tx": "t-1" }));
    assert_eq!(seen[1]["status"], "payment-failed");
    assert_eq!(seen[2..6], [json!("bad-input"), json!("bad-input"), json!("bad-input"), json!("bad-input")]);
    assert_eq!(seen[6]["order_id"], "o-3");
}

/// The URL of the run's webhook other than the one it waits on.
fn other_url(run: &Value, waited_on: &str) -> String {
    let urls = run["webhooks"].as_array().into_iter().flatten().filter_map(|w| w["url"].as_str());
    urls.into_iter().find(|u| *u != waited_on).expect("a second callback URL").to_string()
}

async fn ticket_triage(suffix: &str) -> Vec<Value> {
    let mut latch = server_with("ticket-triage", suffix, &[]).await;
    let mut seen = Vec::new();

    // The resolution comes before the run waits for it: it is kept, also across a SIGKILL.
    let id = latch.start_run("ticket-triage", json!({ "ticket_id": "T-1", "subject": "printer on fire" })).await;
    let sla_url = latch.waiting_url(&id).await;
    let resolved_url = other_url(&latch.run(&id).await, &sla_url);
    let (status, _) = send(latch.http.post(&resolved_url).json(&json!({ "resolved_by": "ana" }))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{suffix}");
    latch.restart().await;
    let run = latch.wait_for(&id, "waiting").await;
    assert_eq!(run["waiting_on"][0]["url"], latch.rebase(&sla_url), "{suffix}: still waits on the SLA");
    send(latch.http.post(latch.rebase(&sla_url)).json(&json!({ "sla_hours": 4 }))).await;
    seen.push(latch.wait_for(&id, "completed").await["output"].clone());

    // In order, with the resolution as a GET whose query is the data.
    let id = latch.start_run("ticket-triage", json!({ "ticket_id": "T-2" })).await;
    let sla_url = latch.waiting_url(&id).await;
    send(latch.http.post(&sla_url).json(&json!({ "sla_hours": 48 }))).await;
    let resolved_url = latch.waiting_url_other_than(&id, &sla_url).await;
    send(latch.http.get(format!("{resolved_url}?resolved_by=bo"))).await;
    seen.push(latch.wait_for(&id, "completed").await["output"].clone());

    let id = latch.start_run("ticket-triage", json!({ "ticket_id": " " })).await;
    seen.push(latch.wait_for(&id, "failed").await["error"]["code"].clone());
    seen
}

#[tokio::test]
async fn ticket_triage_takes_a_callback_before_its_wait_in_every_language() {
    let seen = same_in_languages("ticket-triage", &LANGUAGES, ticket_triage).await;
    assert_eq!(
        seen[0],
        json!({ "ticket_id": "T-1", "priority": "urgent", "sla": { "sla_hours": 4 }, "resolution": { "resolved_by": "ana" } })
    );
    assert_eq!(seen[1]["priority"], "normal");
    assert_eq!(seen[1]["resolution"], json!({ "resolved_by": "bo" }));
    assert_eq!(seen[2], "bad-input");
}

async fn verify(latch: &Latch, behaviour: Behaviour, document_id: &str, deadline_ms: u64) -> (String, Vendor) {
    verify_with(latch, behaviour, json!({ "document_id": document_id, "deadline_ms": deadline_ms })).await
}

/// Starts a run with `input` and the URL of a new stand-in vendor as its `vendor_url`.
async fn verify_with(latch: &Latch, behaviour: Behaviour, mut input: Value) -> (String, Vendor) {
    let vendor = Vendor::start(behaviour).await;
    input["vendor_url"] = json!(vendor.url);
    (latch.start_run("async-verification", input).await, vendor)
}

async fn async_verification(suffix: &str) -> Vec<Value> {
    let args = ["--allow-http", "127.0.0.1:*", "--hot-hold-ms", "0"];
    let latch = server_with("async-verification", suffix, &args).await;
    let mut seen = Vec::new();

    // The vendor's callback wins the race and is answered by the run itself.
    let (id, vendor) = verify(&latch, Behaviour::Silent, "doc-1", 60_000).await;
    latch.wait_for(&id, "waiting").await;
    let callback = vendor.received()[0]["callback_url"].as_str().unwrap_or_default().to_string();
    let (status, body) = send(latch.http.post(&callback).json(&json!({ "approved": true, "details": "ok" }))).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({ "ack": true })), "{suffix}: the run's answer");
    seen.push(latch.wait_for(&id, "completed").await["output"].clone());

    // A vendor that calls back on its own, rejecting the document.
    let rejection = json!({ "approved": false, "reason": "blurred" });
    let (id, _vendor) = verify(&latch, Behaviour::CallBack { delay_ms: 50, body: rejection }, "doc-2", 60_000).await;
    seen.push(latch.wait_for(&id, "completed").await["output"].clone());

    // The deadline wins when the vendor is silent; a late callback is refused.
    let (id, vendor) = verify(&latch, Behaviour::Silent, "doc-3", 300).await;
    seen.push(latch.wait_for(&id, "completed").await["output"].clone());
    let callback = vendor.received()[0]["callback_url"].as_str().unwrap_or_default().to_string();
    let (status, _) = send(latch.http.post(callback).json(&json!({ "approved": true }))).await;
    assert_eq!(status, StatusCode::GONE, "{suffix}");

    // A refusal is fatal: one attempt, and the run fails with the step's code.
    let (id, vendor) = verify(&latch, Behaviour::Status(400), "doc-4", 60_000).await;
    seen.push(latch.wait_for(&id, "failed").await["error"]["code"].clone());
    seen.push(json!(vendor.received().len()));

    // A vendor down once: the step is retried after a durable backoff, replaying the
    // recorded failure (no instance is held), and the run goes on to its deadline.
    let (id, vendor) = verify(&latch, Behaviour::FailTimes(1), "doc-5", 300).await;
    seen.push(latch.wait_for(&id, "completed").await["output"].clone());
    seen.push(json!(vendor.received().len()));
    let attempts = latch.events(&id).await.into_iter().filter(|e| e["type"] == "step-attempt").count();
    seen.push(json!(attempts));

    // An engine error reaches the guest as its code: a host outside the allow-list.
    let input = json!({ "document_id": "doc-6", "vendor_url": "http://example.invalid/api" });
    let id = latch.start_run("async-verification", input).await;
    seen.push(latch.wait_for(&id, "failed").await["error"]["code"].clone());

    // A deadline that is not a whole number is bad input, and nothing is submitted.
    let (id, vendor) =
        verify_with(&latch, Behaviour::Silent, json!({ "document_id": "doc-7", "deadline_ms": "300" })).await;
    seen.push(latch.wait_for(&id, "failed").await["error"]["code"].clone());
    seen.push(json!(vendor.received().len()));
    seen
}

#[tokio::test]
async fn async_verification_races_a_callback_against_a_timer_in_every_language() {
    let seen = same_in_languages("async-verification", &LANGUAGES, async_verification).await;
    assert_eq!(seen[0], json!({ "document_id": "doc-1", "status": "verified", "details": "ok" }));
    assert_eq!(seen[1], json!({ "document_id": "doc-2", "status": "rejected", "details": "blurred" }));
    assert_eq!(seen[2], json!({ "document_id": "doc-3", "status": "timed_out" }));
    assert_eq!(seen[3..5], [json!("vendor-refused"), json!(1)]);
    assert_eq!(seen[5..8], [json!({ "document_id": "doc-5", "status": "timed_out" }), json!(2), json!(2)]);
    assert_eq!(seen[8..], [json!("host-not-allowed"), json!("bad-input"), json!(0)]);
}

async fn webhook_response(suffix: &str) -> Vec<Value> {
    let latch = server_with("webhook-response", suffix, &[]).await;
    let url = |path: &str| format!("{}/t/webhook-response/{path}", latch.base);
    let mut seen = Vec::new();

    // The run answers the trigger's caller with a status it chooses.
    for priority in ["high", "low"] {
        let call = latch.http.post(url("orders/new")).header("x-shop", "eu");
        let (status, body) = send(call.json(&json!({ "order_id": "o-1", "priority": priority }))).await;
        seen.push(json!([status.as_u16(), body["order_id"]]));
        let run = latch.wait_for(body["run_id"].as_str().expect("the run's id in its answer"), "completed").await;
        seen.push(run["output"].clone());
    }

    // A call that misses what the trigger expects is 422 and starts nothing.
    let (status, body) = send(latch.http.post(url("orders/new")).json(&json!({ "amount": 3 }))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "schema-mismatch"), "{suffix}");
    seen.push(body["error"]["details"]["failures"].clone());

    // An automatic answer with the run's id filled in; a GET's query is the data.
    let (status, body) = send(latch.http.get(format!("{}?source=monitor", url("ping")))).await;
    assert_eq!((status, body["pong"].clone()), (StatusCode::OK, json!(true)), "{suffix}");
    seen.push(latch.wait_for(body["run"].as_str().expect("run id filled in"), "completed").await["output"].clone());

    // An API key in the URL.
    let (status, body) = send(latch.http.post(url("secure-orders")).json(&json!({}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "missing-key"), "{suffix}");
    let secure = format!("{}?key={}", url("secure-orders"), latch.new_key("shop", &[]).await);
    let (status, _) = send(latch.http.post(secure).json(&json!({ "n": 1 }))).await;
    seen.push(json!(status.as_u16()));
    seen
}

#[tokio::test]
async fn webhook_response_answers_trigger_calls_the_same_in_every_language() {
    let seen = same_in_languages("webhook-response", &LANGUAGES, webhook_response).await;
    assert_eq!(seen[0], json!([201, "o-1"]));
    assert_eq!(seen[1], json!({ "order_id": "o-1", "answered": 201 }));
    assert_eq!(seen[2], json!([202, "o-1"]));
    assert_eq!(seen[5], json!({ "trigger": "trigger:ping", "data": { "source": "monitor" } }));
    assert_eq!(seen[6], json!(202));
}

/// A run's output without its run id (which differs between servers), once checked.
async fn output_of(latch: &Latch, id: &str, status: &str) -> Value {
    let mut output = latch.wait_for(id, status).await["output"].clone();
    assert_eq!(output["run_id"], id, "the output names its run");
    output["run_id"] = Value::Null;
    output
}

async fn order_approval(suffix: &str) -> Vec<Value> {
    let mut latch = server_with("order-approval", suffix, &["--hot-hold-ms", "0"]).await;
    // A restart keeps the server's address.
    let base = latch.base.clone();
    let named = |name: &str, execution: &str| format!("{base}/t/order-approval/{name}?execution={execution}");
    let mut seen = Vec::new();

    // Resumed by its id; a GET's query is the data.
    let id = latch.start_run("order-approval", json!({ "order_id": "o-1" })).await;
    latch.wait_for(&id, "waiting").await;
    let (status, body) = send(latch.http.get(format!("{}&paid=42", named("payment-confirmed", &id)))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "resumed": 1 })), "{suffix}");
    seen.push(output_of(&latch, &id, "completed").await);

    // A call before the run reaches its trigger is kept, across a SIGKILL.
    let id = latch.start_run("order-approval", json!({ "order_id": "o-2" })).await;
    let (status, _) = send(latch.http.post(named("payment-confirmed", &id)).json(&json!({ "early": true }))).await;
    assert_eq!(status, StatusCode::OK, "{suffix}");
    latch.restart().await;
    seen.push(output_of(&latch, &id, "completed").await);

    // The declared trigger checks the caller's roles, then its condition.
    let payments = latch.new_key("psp", &["payments"]).await;
    let other = latch.new_key("crm", &[]).await;
    let id = latch.start_run("order-approval", json!({ "order_id": "o-3", "trigger": "payment-verified" })).await;
    latch.wait_for(&id, "waiting").await;
    let verified = named("payment-verified", &id);
    let confirmed = json!({ "status": "confirmed" });
    let (status, body) = send(latch.http.post(&verified).json(&confirmed)).await;
    seen.push(json!([status.as_u16(), error_code(&body)]));
    let (status, body) = send(latch.http.post(&verified).bearer_auth(&other).json(&confirmed)).await;
    seen.push(json!([status.as_u16(), error_code(&body)]));
    let processing = latch.http.post(&verified).bearer_auth(&payments).json(&json!({ "status": "processing" }));
    seen.push(send(processing).await.1);
    let (_, body) = send(latch.http.post(&verified).bearer_auth(&payments).json(&confirmed)).await;
    assert_eq!(body, json!({ "resumed": 1, "runs": [id] }), "{suffix}");
    seen.push(output_of(&latch, &id, "completed").await);

    // No call in time.
    let id = latch.start_run("order-approval", json!({ "order_id": "o-4", "timeout_ms": 300 })).await;
    seen.push(output_of(&latch, &id, "completed").await);
    let id = latch.start_run("order-approval", json!({ "order_id": "o-5", "timeout_ms": -1 })).await;
    seen.push(latch.wait_for(&id, "failed").await["error"]["code"].clone());
    seen
}

#[tokio::test]
async fn order_approval_waits_at_named_triggers_the_same_in_every_language() {
    let seen = same_in_languages("order-approval", &LANGUAGES, order_approval).await;
    assert_eq!(seen[0]["payment"], json!({ "paid": "42" }));
    assert_eq!(seen[1]["payment"], json!({ "early": true }));
    assert_eq!(seen[2..5], [json!([401, "missing-key"]), json!([403, "missing-role"]), json!({ "activated": false })]);
    assert_eq!((&seen[5]["status"], &seen[5]["caller"]), (&json!("completed"), &json!("psp")));
    assert_eq!(seen[6]["status"], "payment-timed-out");
    assert_eq!(seen[7], "bad-input");
}

/// Workflows are synchronous: an `async` main or step in Python or JavaScript fails its
/// run with a message that names the mistake (a coroutine or promise would never settle).
#[tokio::test]
async fn async_code_is_refused_in_python_and_javascript() {
    for (suffix, returned) in [("-py", "returned a coroutine"), ("-js", "returned a promise")] {
        let latch = server_with("async-refused", suffix, &[]).await;
        for input in [json!({ "in": "main" }), json!({ "in": "step" })] {
            let id = latch.start_run("async-refused", input.clone()).await;
            let run = latch.wait_for(&id, "failed").await;
            let message = run["error"]["message"].as_str().unwrap_or_default();
            assert_eq!(run["error"]["code"], "trap", "{suffix} {input}: {run}");
            assert!(message.contains(returned) && message.contains("must not be async"), "{suffix} {input}: {message}");
        }
    }
}
