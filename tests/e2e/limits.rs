//! A guest that loops, hoards memory or panics fails alone; the engine serves the rest.

use serde_json::json;

use crate::harness::{Latch, send, start_with};

async fn failure_of(latch: &Latch, action: &str) -> serde_json::Value {
    let id = latch.start_run("misbehave", json!({ "do": action })).await;
    latch.wait_for(&id, "failed").await["error"].clone()
}

/// An order run that waits, then completes after its callback: the engine still works.
async fn an_order_completes(latch: &Latch) {
    let id = latch.start_run("order-payment", json!({ "order_id": "o-1", "amount": 1 })).await;
    let url = latch.waiting_url(&id).await;
    send(latch.http.post(&url).json(&json!({ "paid": true }))).await;
    latch.wait_for(&id, "completed").await;
}

#[tokio::test]
async fn an_endless_loop_fails_as_cpu_limit_while_other_runs_go_on() {
    // A budget the order's activation stays far below even on a loaded machine.
    let latch = start_with(&["--cpu-budget-ms", "1000"]).await;
    latch.upload_plugin("misbehave").await;
    latch.upload_plugin("order-payment").await;
    // Two spinners: one per core, which would hold every tokio worker if they never yielded.
    let spinners = [
        latch.start_run("misbehave", json!({ "do": "spin" })).await,
        latch.start_run("misbehave", json!({ "do": "spin" })).await,
    ];
    an_order_completes(&latch).await;
    for id in spinners {
        let error = latch.wait_for(&id, "failed").await["error"].clone();
        assert_eq!(error["code"], "cpu-limit", "{error}");
    }
}

#[tokio::test]
async fn hoarding_memory_fails_as_memory_limit() {
    let latch = start_with(&["--memory-limit-mib", "48"]).await;
    latch.upload_plugin("misbehave").await;
    latch.upload_plugin("order-payment").await;
    let error = failure_of(&latch, "hoard-memory").await;
    assert_eq!(error["code"], "memory-limit", "{error}");
    an_order_completes(&latch).await;
}

#[tokio::test]
async fn a_panic_fails_the_run_with_its_message() {
    let latch = start_with(&[]).await;
    latch.upload_plugin("misbehave").await;
    let error = failure_of(&latch, "panic").await;
    assert_eq!(error["code"], "trap", "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("the workflow gave up on purpose"), "{message}");
}

#[tokio::test]
async fn a_run_whose_log_diverges_from_its_code_fails_as_nondeterminism() {
    if crate::harness::reads_sled_files() {
        return;
    }
    use latch::store::records::Event;

    let mut latch = start_with(&["--hot-hold-ms", "0"]).await;
    latch.upload_plugin("order-payment").await;
    let id = latch.start_run("order-payment", json!({ "order_id": "o-1", "amount": 1 })).await;
    let url = latch.waiting_url(&id).await;
    latch.kill();
    // What a module swapped under a running run would meet: the log says the run logged
    // a line where the code now creates its webhook.
    {
        use latch::store::{Registry, RunLog};
        let store = latch::store::Store::open(latch.data_dir(), 1 << 20).expect("store opens");
        let run = latch::ids::RunId::parse(&id).expect("a run id");
        let (events, _) = store.events(run).await.expect("events");
        let mut record = events.into_iter().find(|e| e.event.kind() == "webhook-created").expect("created");
        record.event = Event::Log { level: "info".into(), message: "something else".into() };
        store.append(run, &[record]).await.expect("rewritten");
        store.close().await.expect("durable");
    }
    // The store's flushing thread lets go of the data dir as it ends.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    latch.restart().await;
    send(latch.http.post(latch.rebase(&url)).json(&json!({ "paid": true }))).await;
    let run = latch.wait_for(&id, "failed").await;
    assert_eq!(run["error"]["code"], "nondeterminism", "{run}");
}
