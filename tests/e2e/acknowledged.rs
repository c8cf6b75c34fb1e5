//! What a 2xx promises, under many callers at once and across a SIGKILL: a call answered
//! 2xx is in its run (taken into its log, or kept for it and listed); a call its run will
//! not take gets an error and is not delivered later.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{ADMIN_KEY, Latch, error_code, send, start, start_with};

fn named(latch: &Latch, execution: &str) -> String {
    format!("{}/t/order-approval/payment-confirmed?execution={execution}", latch.base)
}

async fn waiting_approvals(latch: &Latch, count: usize) -> Vec<String> {
    let ids = join_all((0..count).map(|n| latch.start_run("order-approval", json!({ "order_id": format!("o-{n}") }))));
    let ids = ids.await;
    for id in &ids {
        latch.wait_for(id, "waiting").await;
    }
    ids
}


#[tokio::test]
async fn concurrent_any_calls_each_claim_a_distinct_waiting_run() {
    let latch = start().await;
    latch.upload_plugin("order-approval").await;
    let ids = waiting_approvals(&latch, 8).await;
    let calls = (0..8).map(|n| send(latch.http.post(named(&latch, "any")).json(&json!({ "n": n }))));
    let answers = join_all(calls).await;
    for (status, body) in &answers {
        assert_eq!((*status, body), (StatusCode::OK, &json!({ "resumed": 1 })), "one run per `any` call");
    }
    // Each run took a different call: every caller's body is in exactly one run.
    let mut taken = BTreeSet::new();
    for id in &ids {
        let payment = latch.wait_for(id, "completed").await["output"]["payment"].clone();
        assert!(taken.insert(payment["n"].as_u64().expect("a caller's body")), "{id} took a call another run took");
    }
    assert_eq!(taken, (0..8).collect(), "every call was taken once");
    let (status, body) = send(latch.http.post(named(&latch, "any")).json(&json!({}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "nothing-waiting"));
}

#[tokio::test]
async fn right_after_a_restart_any_and_all_name_different_runs() {
    let mut latch = start_with(&["--hot-hold-ms", "0"]).await;
    latch.upload_plugin("order-approval").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let id = latch.start_run("order-approval", json!({ "order_id": format!("o-{n}") })).await;
        latch.wait_for(&id, "waiting").await;
        ids.push(id);
    }
    // Killed straight after the runs parked: what shows them waiting may not be on disk.
    latch.restart().await;
    let (status, body) = send(latch.http.post(named(&latch, "any")).json(&json!({ "via": "any" }))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "resumed": 1 })));
    let (status, body) = send(latch.http.post(named(&latch, "all")).json(&json!({ "via": "all" }))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "resumed": 2 })));
    // The longest waiting took `any`; the others took `all`.
    for (id, via) in [(&ids[0], "any"), (&ids[1], "all"), (&ids[2], "all")] {
        assert_eq!(latch.wait_for(id, "completed").await["output"]["payment"], json!({ "via": via }));
    }
}

#[tokio::test]
async fn a_many_call_webhook_acknowledges_exactly_the_calls_its_run_takes() {
    let latch = start().await;
    latch.upload_plugin("blink-callback").await;
    let latch = &latch;
    let ids = join_all((0..20).map(|_| latch.start_run("blink-callback", json!({ "auth": "none", "calls": 3 })))).await;
    let urls = join_all(ids.iter().map(|id| latch.waiting_url(id))).await;
    // Eight callers at once on each of the twenty webhooks.
    let calls = urls.iter().enumerate().flat_map(|(run, url)| {
        (0..8).map(move |n| async move {
            let (status, body) = send(latch.http.post(url).json(&json!({ "run": run, "n": n }))).await;
            (run, n, status, body)
        })
    });
    let answers = join_all(calls).await;
    for (run, id) in ids.iter().enumerate() {
        let mut acknowledged = BTreeSet::new();
        for (_, n, status, body) in answers.iter().filter(|(r, ..)| *r == run) {
            match *status {
                StatusCode::ACCEPTED => assert!(acknowledged.insert(*n)),
                StatusCode::GONE => assert_eq!(error_code(body), "gone"),
                other => panic!("run {run} call {n}: {other} {body}"),
            }
        }
        let output = latch.wait_for(id, "completed").await["output"].clone();
        let calls = output["calls"].as_array().expect("calls");
        let taken: BTreeSet<u64> = calls.iter().filter_map(|c| c["data"]["n"].as_u64()).collect();
        assert_eq!(taken, acknowledged.iter().map(|n| *n as u64).collect(), "run {run}: {output}");
        assert_eq!(acknowledged.len(), 3);
        // What reached the run and was not taken stays listed, as not acknowledged.
        not_taken_are_unacknowledged(latch, id, 3).await;
    }
}

/// The run's calls once it ended: `delivered` of them taken, the rest listed as not taken
/// and not acknowledged (their callers were refused), none left queued.
async fn not_taken_are_unacknowledged(latch: &Latch, id: &str, delivered: usize) {
    let (_, listed) = latch.get(&format!("/v1/runs/{id}/requests")).await;
    let requests = listed["requests"].as_array().expect("requests");
    assert_eq!(requests.iter().filter(|r| r["state"] == "delivered").count(), delivered, "{listed}");
    for request in requests.iter().filter(|r| r["state"] != "delivered") {
        assert_eq!((&request["state"], &request["acknowledged"]), (&json!("not-taken"), &json!(false)), "{listed}");
    }
}

#[tokio::test]
async fn a_terminal_event_ends_a_ledger_and_only_callers_it_took_are_acknowledged() {
    let latch = start().await;
    latch.upload_plugin("payment-ledger").await;
    let id = latch.start_run("payment-ledger", json!({ "order_id": "o-1" })).await;
    let url = latch.waiting_url(&id).await;
    let kinds = ["payment.succeeded", "payment.created", "payment.created", "payment.failed", "payment.created"];
    let calls =
        kinds.iter().enumerate().map(|(n, kind)| send(latch.http.post(&url).json(&json!({ "type": kind, "n": n }))));
    let answers = join_all(calls).await;
    let ledger = latch.wait_for(&id, "completed").await["output"]["ledger"].clone();
    let recorded = ledger.as_array().expect("ledger");
    assert_eq!(recorded.last().map(|e| e["type"].clone()), Some(json!("payment.succeeded")));
    let answered = answers.iter().filter(|(status, _)| *status == StatusCode::OK).count();
    assert_eq!(answered, recorded.len(), "every caller answered by the run is in the ledger: {answers:?}");
    for (status, body) in answers.iter().filter(|(status, _)| *status != StatusCode::OK) {
        assert_eq!((*status, error_code(body)), (StatusCode::GONE, "gone"));
    }
    not_taken_are_unacknowledged(&latch, &id, recorded.len()).await;
}

/// Polls the run's calls until `ready` accepts them.
async fn requests_until(latch: &Latch, id: &str, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, listed) = latch.get(&format!("/v1/runs/{id}/requests")).await;
        let requests = listed["requests"].as_array().cloned().unwrap_or_default();
        if ready(&requests) {
            return requests;
        }
        assert!(Instant::now() < deadline, "run {id}'s calls never got there: {requests:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn cancelling_a_run_refuses_its_held_callers_and_lists_the_call_it_did_not_take() {
    let latch = start().await;
    latch.upload_plugin("payment-ledger").await;
    let id = latch.start_run("payment-ledger", json!({ "order_id": "o-2", "answer_within_ms": 20_000 })).await;
    let url = latch.waiting_url(&id).await;
    // The run takes the slow event and sleeps before answering it; the next caller waits.
    let slow = tokio::spawn(send(latch.http.post(&url).json(&json!({ "type": "slow", "ms": 60_000 }))));
    requests_until(&latch, &id, |r| r.iter().any(|r| r["state"] == "delivered")).await;
    let next = tokio::spawn(send(latch.http.post(&url).json(&json!({ "type": "payment.created" }))));
    requests_until(&latch, &id, |r| r.iter().any(|r| r["state"] == "queued" && r["held"] == true)).await;

    let cancel = latch.http.post(format!("{}/v1/runs/{id}/cancel", latch.base)).bearer_auth(ADMIN_KEY);
    assert_eq!(send(cancel).await.0, StatusCode::OK);
    let started = Instant::now();
    let (status, body) = next.await.expect("caller");
    assert_eq!((status, error_code(&body)), (StatusCode::GONE, "gone"), "{body}");
    let (status, body) = slow.await.expect("caller");
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_GATEWAY, "no-answer"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(10), "the callers were told at once");

    let requests = requests_until(&latch, &id, |r| r.iter().any(|r| r["state"] == "not-taken")).await;
    let not_taken = requests.iter().find(|r| r["state"] == "not-taken").expect("listed");
    assert_eq!((not_taken["reason"].clone(), not_taken["acknowledged"].clone()), (json!("run-ended"), json!(false)));
    assert!(not_taken["data"].is_null(), "a refused call keeps no body: {not_taken}");
}

#[tokio::test]
async fn a_callback_acknowledged_before_its_wait_stays_listed_when_the_run_ends_without_it() {
    let latch = start().await;
    latch.upload_plugin("wait-patterns").await;
    latch.upload_plugin("ticket-triage").await;
    // Completion: both callbacks come while the run sleeps; it takes the first and ends.
    let input =
        json!({ "pattern": "first-of-two", "tokens": ["left-a", "left-b"], "only_first": true, "sleep_ms": 1500 });
    let id = latch.start_run("wait-patterns", input).await;
    latch.wait_for(&id, "waiting").await;
    let answers =
        join_all([latch.resume("left-a", &json!({ "n": "a" })), latch.resume("left-b", &json!({ "n": "b" }))]).await;
    assert!(answers.iter().all(|(status, _)| *status == StatusCode::ACCEPTED), "{answers:?}");
    let output = latch.wait_for(&id, "completed").await["output"].clone();
    let requests = requests_until(&latch, &id, |r| r.len() == 2).await;
    let left = requests.iter().find(|r| r["state"] == "not-taken").expect("the other call is listed");
    assert_eq!(left["acknowledged"], true);
    assert_eq!(left["reason"], "run-ended");
    assert_ne!(left["data"], output["first"], "the one the run did not take, whole");
    assert!(left["data"]["n"].is_string());

    // Cancellation: a resolution that came before its wait.
    let id = latch.start_run("ticket-triage", json!({ "ticket_id": "T-4" })).await;
    latch.waiting_url(&id).await;
    let run = latch.run(&id).await;
    let resolved_url = run["webhooks"][1]["url"].as_str().expect("second webhook").to_string();
    assert_eq!(
        send(latch.http.post(&resolved_url).json(&json!({ "resolved_by": "ana" }))).await.0,
        StatusCode::ACCEPTED
    );
    let cancel = latch.http.post(format!("{}/v1/runs/{id}/cancel", latch.base)).bearer_auth(ADMIN_KEY);
    assert_eq!(send(cancel).await.0, StatusCode::OK);
    let requests = requests_until(&latch, &id, |r| r.iter().any(|r| r["state"] == "not-taken")).await;
    let left = requests.iter().find(|r| r["state"] == "not-taken").expect("listed");
    assert_eq!((left["data"].clone(), left["acknowledged"].clone()), (json!({ "resolved_by": "ana" }), json!(true)));
}

#[tokio::test]
async fn calls_acknowledged_on_a_many_call_webhook_are_in_the_run_once_each_across_a_sigkill() {
    let mut latch = start().await;
    latch.upload_plugin("blink-callback").await;
    let id = latch.start_run("blink-callback", json!({ "auth": "none", "calls": 30 })).await;
    let url = latch.waiting_url(&id).await;
    let callers: Vec<_> = (0..20)
        .map(|n| {
            let (http, url) = (latch.http.clone(), url.clone());
            tokio::spawn(async move {
                let answer = http.post(url).json(&json!({ "n": n })).send().await;
                (n, answer.map(|r| r.status()).ok())
            })
        })
        .collect();
    // Killed while calls are being taken, once some callers have had their answer.
    requests_until(&latch, &id, |r| r.iter().filter(|r| r["state"] == "delivered").count() >= 5).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while callers.iter().filter(|caller| caller.is_finished()).count() < 5 {
        assert!(Instant::now() < deadline, "five callers were never answered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    latch.restart().await;
    let mut acknowledged = BTreeSet::new();
    for caller in callers {
        let (n, status) = caller.await.expect("caller");
        if status.is_some_and(|s| s.is_success()) {
            acknowledged.insert(n);
        }
    }
    assert!(acknowledged.len() >= 5, "{acknowledged:?}");
    // New calls until the run has taken its thirty.
    let url = latch.rebase(&url);
    for n in 100.. {
        let (status, body) = send(latch.http.post(&url).json(&json!({ "n": n }))).await;
        if status == StatusCode::GONE {
            break;
        }
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let calls = latch.wait_for(&id, "completed").await["output"]["calls"].clone();
    let taken: Vec<u64> = calls.as_array().expect("calls").iter().filter_map(|c| c["data"]["n"].as_u64()).collect();
    let distinct: BTreeSet<u64> = taken.iter().copied().collect();
    assert_eq!(distinct.len(), taken.len(), "no call was delivered twice: {taken:?}");
    for n in acknowledged {
        assert!(distinct.contains(&n), "acknowledged call {n} is missing from {taken:?}");
    }
}
