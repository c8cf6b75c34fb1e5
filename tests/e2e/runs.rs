//! Runs from start to completion through their callback URLs.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{send, start};

#[tokio::test]
async fn order_completes_with_the_payment_callbacks_data() {
    let latch = start().await;
    latch.upload_plugin("order-payment").await;
    let id = latch.start_run("order-payment", json!({ "order_id": "o-1", "amount": 42 })).await;

    let url = latch.waiting_url(&id).await;
    let payment = json!({ "status": "succeeded", "transaction": "tx-9" });
    let (status, _) = send(latch.http.post(&url).json(&payment)).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["output"]["order_id"], "o-1");
    assert_eq!(run["output"]["status"], "paid");
    assert_eq!(run["output"]["payment"], payment);
    assert_eq!(run["waiting_on"], json!([]));

    let kinds: Vec<Value> = latch.events(&id).await.iter().map(|e| e["type"].clone()).collect();
    for kind in ["started", "webhook-created", "log", "wait-started", "wait-ended", "completed"] {
        assert!(kinds.contains(&json!(kind)), "no {kind} event in {kinds:?}");
    }
}

#[tokio::test]
async fn a_failed_payment_is_reported_in_the_output() {
    let latch = start().await;
    latch.upload_plugin("order-payment").await;
    let id = latch.start_run("order-payment", json!({ "order_id": "o-2", "amount": 5 })).await;
    let url = latch.waiting_url(&id).await;
    send(latch.http.post(&url).json(&json!({ "status": "failed" }))).await;
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["output"]["status"], "payment-failed");
}

#[tokio::test]
async fn bad_input_fails_the_run_with_the_guests_error() {
    let latch = start().await;
    latch.upload_plugin("order-payment").await;
    let id = latch.start_run("order-payment", json!({ "amount": 5 })).await;
    let run = latch.wait_for(&id, "failed").await;
    assert_eq!(run["error"]["code"], "bad-input");
}

#[tokio::test]
async fn ticket_triage_shows_its_url_and_takes_a_callback_that_came_before_its_wait() {
    let latch = start().await;
    latch.upload_plugin("ticket-triage").await;
    let id = latch.start_run("ticket-triage", json!({ "ticket_id": "T-7", "subject": "printer on fire" })).await;

    // The run waits on its SLA callback; the URL is in its status and in its log.
    let sla_url = latch.waiting_url(&id).await;
    let run = latch.run(&id).await;
    let resolved_url = run["webhooks"]
        .as_array()
        .and_then(|w| w.iter().map(|w| w["url"].as_str().unwrap_or_default()).find(|u| *u != sla_url))
        .expect("a second callback URL")
        .to_string();
    let logs: Vec<String> = latch
        .events(&id)
        .await
        .iter()
        .filter(|e| e["type"] == "log")
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(logs.iter().any(|l| l.contains(&sla_url)), "SLA URL not logged: {logs:?}");

    // The ticketing system resolves the ticket before it reports the SLA: the call is kept.
    let resolution = json!({ "resolved_by": "ana" });
    let (status, _) = send(latch.http.post(&resolved_url).json(&resolution)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let run = latch.wait_for(&id, "waiting").await;
    assert_eq!(run["waiting_on"][0]["url"], sla_url, "still waits on the SLA callback");

    let sla = json!({ "sla_hours": 4, "tier": "gold" });
    send(latch.http.post(&sla_url).json(&sla)).await;
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(
        run["output"],
        json!({ "ticket_id": "T-7", "priority": "urgent", "sla": sla, "resolution": resolution })
    );
}

#[tokio::test]
async fn a_gets_query_parameters_become_the_runs_data() {
    let latch = start().await;
    latch.upload_plugin("ticket-triage").await;
    let id = latch.start_run("ticket-triage", json!({ "ticket_id": "T-8" })).await;
    let sla_url = latch.waiting_url(&id).await;
    send(latch.http.post(&sla_url).json(&json!({ "sla_hours": 48 }))).await;
    let resolved_url = latch.waiting_url_other_than(&id, &sla_url).await;
    let (status, _) = send(latch.http.get(format!("{resolved_url}?resolved_by=ana&note=fixed%20it"))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["output"]["priority"], "normal");
    assert_eq!(run["output"]["resolution"], json!({ "resolved_by": "ana", "note": "fixed it" }));
}

#[tokio::test]
async fn a_run_finishes_on_the_version_it_started_with() {
    let latch = start().await;
    let (_, first) = latch.upload("orders", crate::harness::plugin("order-payment")).await;
    let id = latch.start_run("orders", json!({ "order_id": "o-7", "amount": 3 })).await;
    let url = latch.waiting_url(&id).await;
    let (status, second) = latch.upload("orders", crate::harness::plugin("ticket-triage")).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    send(latch.http.post(&url).json(&json!({ "paid": true }))).await;
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["version"], first["version"]["version"]);
    assert_eq!(run["output"]["order_id"], "o-7", "order-payment's code finished the run");
    let (_, module) = latch.get("/v1/modules/orders").await;
    let versions: Vec<_> =
        module["versions"].as_array().expect("versions").iter().map(|v| v["version"].clone()).collect();
    assert_eq!(versions, vec![first["version"]["version"].clone(), second["version"]["version"].clone()]);
}

#[tokio::test]
async fn an_operator_sees_what_arrived_delivered_or_queued_with_credentials_redacted() {
    let latch = start().await;
    latch.upload_plugin("ticket-triage").await;
    let id = latch.start_run("ticket-triage", json!({ "ticket_id": "T-3" })).await;
    let sla_url = latch.waiting_url(&id).await;
    let run = latch.run(&id).await;
    let resolved_url = run["webhooks"][1]["url"].as_str().expect("second webhook").to_string();
    let resolution = latch.http.post(&resolved_url).bearer_auth("token-of-the-ticketing-system");
    send(resolution.json(&json!({ "resolved_by": "ana" }))).await;

    let (_, listed) = latch.get(&format!("/v1/runs/{id}/requests?webhook=wh-2")).await;
    let queued = &listed["requests"][0];
    assert_eq!((queued["state"].clone(), queued["data"].clone()), (json!("queued"), json!({ "resolved_by": "ana" })));
    let authorization = queued["headers"].as_array().expect("headers").iter().find(|h| h[0] == "authorization");
    assert_eq!(authorization.map(|h| h[1].clone()), Some(json!("[redacted]")));

    send(latch.http.post(&sla_url).json(&json!({ "sla_hours": 8 }))).await;
    latch.wait_for(&id, "completed").await;
    let (_, listed) = latch.get(&format!("/v1/runs/{id}/requests")).await;
    let states: Vec<_> = listed["requests"].as_array().expect("requests").iter().map(|r| r["state"].clone()).collect();
    assert_eq!(states, vec![json!("delivered"), json!("delivered")]);
}

/// Reads one sample of `/metrics` (0 when the series is not there yet).
async fn metric(latch: &crate::harness::Latch, series: &str) -> u64 {
    let request = latch.http.get(format!("{}/metrics", latch.base)).bearer_auth(crate::harness::ADMIN_KEY);
    let response = request.send().await.expect("metrics");
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("text");
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0, |value| value.trim().parse().expect("a count"))
}

#[tokio::test]
async fn metrics_count_runs_and_the_answers_callers_got_and_need_the_admin_key() {
    let latch = start().await;
    latch.upload_plugin("order-payment").await;
    let anonymous = latch.http.get(format!("{}/metrics", latch.base)).send().await.expect("metrics");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let id = latch.start_run("order-payment", json!({ "order_id": "o-m", "amount": 1 })).await;
    let url = latch.waiting_url(&id).await;
    assert_eq!(metric(&latch, "latch_runs_started_total").await, 1);
    assert_eq!(metric(&latch, "latch_waits_parked_total").await, 1);
    let (status, _) = send(latch.http.post(&url).json(&json!({ "status": "succeeded" }))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = send(latch.http.post(&url).json(&json!({ "status": "succeeded" }))).await;
    assert_eq!(status, StatusCode::GONE);
    latch.wait_for(&id, "completed").await;

    assert_eq!(metric(&latch, r#"latch_runs_ended_total{status="completed"}"#).await, 1);
    assert_eq!(metric(&latch, r#"latch_calls_total{class="2xx",code="accepted"}"#).await, 1);
    assert_eq!(metric(&latch, r#"latch_calls_total{class="4xx",code="gone"}"#).await, 1);
    assert_eq!(metric(&latch, "latch_resume_seconds_count").await, 1, "the callback was taken once");
    assert!(metric(&latch, "latch_activations_total").await >= 1);
    let commits = metric(&latch, "latch_store_commit_seconds_count").await;
    assert!(commits >= 3, "the run's start, the call and the run's end were each committed: {commits}");

    let failing = latch.start_run("order-payment", json!({ "amount": 1 })).await;
    latch.wait_for(&failing, "failed").await;
    assert_eq!(metric(&latch, r#"latch_runs_failed_total{code="guest"}"#).await, 1, "bad-input is the guest's code");
}

#[tokio::test]
async fn runs_are_listed_newest_first_a_page_at_a_time_and_filtered() {
    let latch = start().await;
    latch.upload_plugin("order-payment").await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let id = latch.start_run("order-payment", json!({ "order_id": format!("o-{n}"), "amount": 1 })).await;
        latch.waiting_url(&id).await;
        ids.push(id);
    }
    let mut listed = Vec::new();
    let mut path = "/v1/runs?limit=2".to_string();
    loop {
        let (status, page) = latch.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let runs = page["runs"].as_array().expect("runs");
        assert!(runs.len() <= 2);
        listed.extend(runs.iter().map(|run| run["id"].as_str().expect("id").to_string()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/runs?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(listed, ids.iter().rev().cloned().collect::<Vec<_>>());

    let (_, waiting) = latch.get("/v1/runs?module=order-payment&status=waiting").await;
    assert_eq!(waiting["runs"].as_array().map(Vec::len), Some(5));
    let (_, other) = latch.get("/v1/runs?module=ticket-triage").await;
    assert_eq!(other["runs"], json!([]));
    let (_, later) = latch.get("/v1/runs?since_ms=99999999999999").await;
    assert_eq!(later["runs"], json!([]));
    let hostile = [
        ("limit=0", "bad-limit"),
        ("limit=1001", "bad-limit"),
        ("cursor=zzz", "bad-cursor"),
        ("module=Orders", "bad-module-name"),
    ];
    for (query, code) in hostile {
        let (status, body) = latch.get(&format!("/v1/runs?{query}")).await;
        assert_eq!((status, crate::harness::error_code(&body)), (StatusCode::BAD_REQUEST, code), "{query}");
    }
}

#[tokio::test]
async fn events_follow_as_server_sent_events_until_the_run_ends_and_resume_from_the_last_id() {
    let latch = start().await;
    latch.upload_plugin("order-payment").await;
    let id = latch.start_run("order-payment", json!({ "order_id": "o-sse", "amount": 2 })).await;
    let url = latch.waiting_url(&id).await;
    let follow = latch
        .http
        .get(format!("{}/v1/runs/{id}/events?follow=true", latch.base))
        .bearer_auth(crate::harness::ADMIN_KEY)
        .send()
        .await
        .expect("a stream");
    assert_eq!(follow.status(), StatusCode::OK);
    assert_eq!(follow.headers()["content-type"], "text/event-stream");
    // The stream is open while the run waits; the callback ends the run and the stream.
    let streamed = tokio::spawn(async move { follow.text().await.expect("the stream ends") });
    send(latch.http.post(&url).json(&json!({ "status": "succeeded" }))).await;
    let text = tokio::time::timeout(std::time::Duration::from_secs(30), streamed).await.expect("ended").expect("task");
    let kinds: Vec<&str> = text.lines().filter_map(|line| line.strip_prefix("event: ")).collect();
    assert_eq!(kinds.first(), Some(&"started"));
    assert_eq!(kinds.last(), Some(&"completed"));
    assert!(kinds.contains(&"wait-ended"), "{text}");

    // Resuming after the event with id 1 sends only the later ones.
    let resumed = latch
        .http
        .get(format!("{}/v1/runs/{id}/events?follow=true", latch.base))
        .bearer_auth(crate::harness::ADMIN_KEY)
        .header("last-event-id", "1")
        .send()
        .await
        .expect("a stream");
    let text = resumed.text().await.expect("it ends at once: the run has ended");
    let ids: Vec<u64> = text.lines().filter_map(|line| line.strip_prefix("id: ")).map(|id| id.parse().unwrap()).collect();
    assert!(!ids.is_empty() && ids.iter().all(|&seq| seq > 1), "{text}");
    let (status, _) = latch.get("/v1/runs/00000000-0000-7000-8000-000000000000/events?follow=true").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn json_logs_are_one_object_a_line_carrying_the_runs_id() {
    let latch = crate::harness::start_with(&["--log-format", "json"]).await;
    latch.upload_plugin("order-payment").await;
    // A run that fails logs a warning while it is being driven.
    let id = latch.start_run("order-payment", json!({ "amount": 1 })).await;
    latch.wait_for(&id, "failed").await;
    let log = latch.log();
    let lines: Vec<Value> = log
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let failed = lines.iter().find(|line| line["fields"]["message"].as_str().is_some_and(|m| m.starts_with("run failed")));
    let failed = failed.unwrap_or_else(|| panic!("no `run failed` line in {log}"));
    assert_eq!(failed["span"]["name"], "run");
    assert_eq!(failed["span"]["run"], id.as_str(), "{failed}");
}
