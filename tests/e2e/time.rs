//! Durable timers: sleeps and races survive a SIGKILL; a call on a webhook that lost a
//! race is kept.

use serde_json::json;

use crate::harness::start_with;

#[tokio::test]
async fn a_sleep_survives_a_sigkill_and_ends_on_time() {
    let mut latch = start_with(&["--hot-hold-ms", "0"]).await;
    latch.upload_plugin("wait-patterns").await;
    let id = latch.start_run("wait-patterns", json!({ "pattern": "sleep", "ms": 1500 })).await;
    let run = latch.wait_for(&id, "waiting").await;
    assert!(run["wake_at_ms"].is_u64(), "a sleeping run shows when it wakes: {run}");
    latch.restart().await;
    let run = latch.wait_for(&id, "completed").await;
    let slept = run["output"]["slept_ms"].as_u64().expect("slept_ms");
    assert!((1500..5000).contains(&slept), "slept {slept} ms");
}

#[tokio::test]
async fn select_takes_the_first_call_and_keeps_the_other() {
    let latch = start_with(&[]).await;
    latch.upload_plugin("wait-patterns").await;
    let input = json!({ "pattern": "first-of-two", "tokens": ["race-a", "race-b"] });
    let id = latch.start_run("wait-patterns", input).await;
    latch.wait_for(&id, "waiting").await;
    latch.resume("race-b", &json!({ "from": "b" })).await;
    latch.resume("race-a", &json!({ "from": "a" })).await;
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["output"], json!({ "first_index": 1, "first": { "from": "b" }, "second": { "from": "a" } }));
}
