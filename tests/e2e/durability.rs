//! Nothing acknowledged is lost: SIGKILL while runs wait, and many runs waiting at once.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{send, start, start_with};

#[tokio::test]
async fn sigkill_while_runs_wait_loses_no_run_and_no_acknowledged_callback() {
    let mut latch = start().await;
    latch.upload_plugin("order-payment").await;
    let mut orders = Vec::new();
    for n in 0..6 {
        let id = latch.start_run("order-payment", json!({ "order_id": format!("o-{n}"), "amount": n })).await;
        orders.push(id);
    }
    let mut urls = Vec::new();
    for id in &orders {
        urls.push(latch.waiting_url(id).await);
    }

    // Half the callbacks are acknowledged right before the kill; the engine may not have
    // handed them to their runs yet.
    for (n, url) in urls.iter().enumerate().take(3) {
        let (status, _) = send(latch.http.post(url).json(&json!({ "paid": n }))).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    latch.restart().await;

    for (n, url) in urls.iter().enumerate().skip(3) {
        let (status, body) = send(latch.http.post(latch.rebase(url)).json(&json!({ "paid": n }))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    for (n, id) in orders.iter().enumerate() {
        let run = latch.wait_for(id, "completed").await;
        assert_eq!(run["output"]["order_id"], format!("o-{n}"));
        assert_eq!(run["output"]["payment"], json!({ "paid": n }));
    }
}

#[tokio::test]
async fn a_run_started_right_before_a_sigkill_resumes_at_start_up() {
    let mut latch = start().await;
    latch.upload_plugin("ticket-triage").await;
    let id = latch.start_run("ticket-triage", json!({ "ticket_id": "T-9" })).await;
    latch.restart().await;
    let url = latch.waiting_url(&id).await;
    send(latch.http.post(&url).json(&json!({ "sla_hours": 24 }))).await;
    // It moves on to the resolution callback.
    latch.waiting_url_other_than(&id, &url).await;
}

#[tokio::test]
async fn two_hundred_waiting_runs_all_resume_correctly() {
    // A short hot hold makes most of the runs suspend (no instance) before their call.
    let latch = start_with(&["--hot-hold-ms", "50"]).await;
    latch.upload_plugin("order-payment").await;
    let latch = &latch;
    let ids = join_all((0..200).map(|n| async move {
        latch.start_run("order-payment", json!({ "order_id": format!("o-{n}"), "amount": n })).await
    }))
    .await;
    let urls = join_all(ids.iter().map(|id| latch.waiting_url(id))).await;
    let answers = join_all(
        urls.iter()
            .enumerate()
            .map(|(n, url)| async move { send(latch.http.post(url).json(&json!({ "receipt": n }))).await.0 }),
    )
    .await;
    assert!(answers.iter().all(|s| *s == StatusCode::ACCEPTED), "{answers:?}");
    for (n, id) in ids.iter().enumerate() {
        let run = latch.wait_for(id, "completed").await;
        assert_eq!(run["output"]["order_id"], format!("o-{n}"));
        assert_eq!(run["output"]["payment"], json!({ "receipt": n }));
    }
}
