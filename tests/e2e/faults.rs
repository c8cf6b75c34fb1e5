//! Faults of the store injected with SQL: a write PostgreSQL refuses hurts only the run or
//! the call that made it, and loses or repeats nothing acknowledged. PostgreSQL only: sled
//! has no way to refuse one write from outside.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Latch, send, start_with};

/// A fresh server with `plugin` uploaded and the fault `sql` installed in its database;
/// a session of its own on that database, to look at it.
async fn with_fault(args: &[&str], plugin: &str, sql: &str) -> (Latch, tokio_postgres::Client) {
    let latch = start_with(args).await;
    latch.upload_plugin(plugin).await;
    let url = latch.flag("--database-url").expect("a PostgreSQL server");
    let (database, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connects");
    tokio::spawn(connection);
    database.batch_execute(sql).await.expect("the fault is installed");
    (latch, database)
}

/// A run waiting on webhooks `race-a` and `race-b`, which ends after the first call.
async fn racing_run(latch: &Latch) -> String {
    let input = json!({ "pattern": "first-of-two", "tokens": ["race-a", "race-b"], "only_first": true });
    let id = latch.start_run("wait-patterns", input).await;
    latch.wait_for(&id, "waiting").await;
    id
}

/// Makes every write that shows a run waiting fail, as a full disk or a lost connection
/// would fail it half-way through a park (its timer is written just before).
const REFUSE_WAITING_RUNS: &str = r#"
CREATE FUNCTION refuse_waiting() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF position('"status":"waiting"' in convert_from(NEW.record, 'UTF8')) > 0 THEN
        RAISE EXCEPTION 'injected fault: no run may wait';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_waiting BEFORE INSERT OR UPDATE ON runs FOR EACH ROW EXECUTE FUNCTION refuse_waiting();
"#;

#[tokio::test]
async fn a_run_whose_park_fails_half_way_ends_failed_and_leaves_no_timer_behind() {
    let (latch, database) = with_fault(&["--hot-hold-ms", "0"], "wait-patterns", REFUSE_WAITING_RUNS).await;

    let id = latch.start_run("wait-patterns", json!({ "pattern": "sleep", "ms": 3_600_000 })).await;
    let run = latch.wait_for(&id, "failed").await;
    assert_eq!(run["error"]["code"], "storage", "the failed park is the run's failure: {run}");
    let run_id = uuid::Uuid::parse_str(&id).expect("a uuid");
    let timers: i64 = database
        .query_one("SELECT count(*) FROM timers WHERE run = $1", &[&run_id.as_bytes().as_slice()])
        .await
        .expect("counted")
        .get(0);
    assert_eq!(timers, 0, "the timer the failed park wrote went with the run's end");

    // The fault hurt that run alone: with it gone, the next run sleeps and wakes.
    database.batch_execute("DROP TRIGGER refuse_waiting ON runs").await.expect("the fault is removed");
    let next = latch.start_run("wait-patterns", json!({ "pattern": "sleep", "ms": 200 })).await;
    latch.wait_for(&next, "completed").await;
}

/// Makes closing webhook `race-a` fail, as a lost connection would fail it.
const REFUSE_CLOSING_RACE_A: &str = r#"
CREATE FUNCTION refuse_close() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'injected fault: webhook race-a cannot be closed';
END $$;
CREATE TRIGGER refuse_close BEFORE UPDATE ON hooks FOR EACH ROW
    WHEN (NEW.token = 'race-a' AND position('"state":"closed"' in convert_from(NEW.record, 'UTF8')) > 0)
    EXECUTE FUNCTION refuse_close();
"#;

#[tokio::test]
async fn a_webhook_that_cannot_be_closed_leaves_the_runs_other_webhooks_closed() {
    let (latch, _) = with_fault(&[], "wait-patterns", REFUSE_CLOSING_RACE_A).await;

    let id = racing_run(&latch).await;
    assert_eq!(latch.resume("race-a", &json!({})).await.0, StatusCode::ACCEPTED);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !["completed", "failed"].contains(&latch.run(&id).await["status"].as_str().unwrap_or_default()) {
        assert!(Instant::now() < deadline, "the run never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The run has ended: its other webhook takes no call, though the first one's close failed.
    let (status, body) = latch.resume("race-b", &json!({})).await;
    assert!(!status.is_success(), "a call to an ended run's webhook was accepted: {status} {body}");
}

/// Makes the first two closes of webhook `race-a` fail, as a passing outage would (a
/// sequence counts them: it is not rolled back with the failed write).
const REFUSE_CLOSING_RACE_A_TWICE: &str = r#"
CREATE SEQUENCE close_attempts;
CREATE FUNCTION refuse_close_twice() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('close_attempts') <= 2 THEN
        RAISE EXCEPTION 'injected fault: webhook race-a cannot be closed yet';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_close_twice BEFORE UPDATE ON hooks FOR EACH ROW
    WHEN (NEW.token = 'race-a' AND position('"state":"closed"' in convert_from(NEW.record, 'UTF8')) > 0)
    EXECUTE FUNCTION refuse_close_twice();
"#;

#[tokio::test]
async fn a_close_that_fails_for_a_while_is_tried_again_until_the_webhook_is_closed() {
    let (latch, database) = with_fault(&[], "wait-patterns", REFUSE_CLOSING_RACE_A_TWICE).await;

    let id = racing_run(&latch).await;
    assert_eq!(latch.resume("race-b", &json!({})).await.0, StatusCode::ACCEPTED);
    latch.wait_for(&id, "completed").await;
    // The webhook the run did not take a call on is closed in the end: no call is accepted.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempts: i64 =
            database.query_one("SELECT last_value FROM close_attempts", &[]).await.expect("read").get(0);
        if attempts >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "the close was not tried again ({attempts} attempts)");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = latch.resume("race-a", &json!({})).await;
    assert!(!status.is_success(), "a call to an ended run's webhook was accepted: {status} {body}");
}

/// Makes the first withdrawal of a held call fail (its not-taken note cannot be written,
/// so the whole withdrawal is undone): the call stays in the inbox.
const REFUSE_ONE_WITHDRAWAL: &str = r#"
CREATE SEQUENCE withdrawals;
CREATE FUNCTION refuse_one_withdrawal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('withdrawals') <= 1 THEN
        RAISE EXCEPTION 'injected fault: the withdrawal cannot be written';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_one_withdrawal BEFORE INSERT ON not_taken FOR EACH ROW
    EXECUTE FUNCTION refuse_one_withdrawal();
"#;

/// A call whose withdrawal failed is still in its run: the caller got a 500, not a 2xx,
/// and its retry under the same Idempotency-Key is recognised, not delivered again.
#[tokio::test]
async fn a_retry_of_a_call_whose_fate_was_unknown_is_not_delivered_twice() {
    let (latch, _) = with_fault(&[], "payment-ledger", REFUSE_ONE_WITHDRAWAL).await;

    // The run answers each call within 300 ms, but is busy for 4 s with the first.
    let id = latch.start_run("payment-ledger", json!({ "order_id": "o-1", "answer_within_ms": 300 })).await;
    let hook = latch.waiting_url(&id).await;
    let slow = tokio::spawn(send(latch.http.post(&hook).json(&json!({ "type": "slow", "ms": 4000 }))));
    crate::exhaustion::listed(&latch, &id, "delivered", 1).await;
    let call =
        || latch.http.post(&hook).header("Idempotency-Key", "failed-1").json(&json!({ "type": "payment.failed" }));
    let (status, body) = send(call()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "the withdrawal failed: {body}");
    slow.await.expect("the slow caller");
    // The call stayed in the inbox, and the run takes it once it is free.
    crate::exhaustion::listed(&latch, &id, "delivered", 2).await;
    // The sender retries: it is told the call is in the run, and nothing is delivered again.
    let (status, body) = send(call()).await;
    assert!(status.is_success(), "the retry of a call in its run: {status} {body}");
    assert_eq!(send(latch.http.post(&hook).json(&json!({ "type": "payment.succeeded" }))).await.0, StatusCode::OK);
    let run = latch.wait_for(&id, "completed").await;
    let ledger = run["output"]["ledger"].as_array().expect("a ledger");
    assert_eq!(ledger.iter().filter(|e| e["type"] == "payment.failed").count(), 1, "{run}");
}
