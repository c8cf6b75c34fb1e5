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

/// While one webhook cannot be closed, the run's others are closed and its end is not
/// recorded (an ended run has no open webhook); once the fault passes, the close is tried
/// again and the run ends.
#[tokio::test]
async fn a_run_whose_webhook_cannot_be_closed_is_not_shown_ended_until_it_is() {
    let (latch, database) = with_fault(&[], "wait-patterns", REFUSE_CLOSING_RACE_A).await;

    let id = racing_run(&latch).await;
    assert_eq!(latch.resume("race-a", &json!({})).await.0, StatusCode::ACCEPTED);
    // Its other webhook takes no call, though the first one's close failed.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = latch.resume("race-b", &json!({})).await;
        if !status.is_success() {
            break;
        }
        assert!(Instant::now() < deadline, "the run's other webhook was never closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = latch.run(&id).await["status"].clone();
    assert!(
        !["completed", "failed"].contains(&status.as_str().unwrap_or_default()),
        "shown {status} with a webhook open"
    );
    database.batch_execute("DROP TRIGGER refuse_close ON hooks").await.expect("the fault is removed");
    latch.wait_for(&id, "completed").await;
    let (status, body) = latch.resume("race-a", &json!({})).await;
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

/// Makes the first run put back at a named trigger fail to be written.
const REFUSE_ONE_PUT_BACK: &str = r#"
CREATE SEQUENCE put_backs;
CREATE FUNCTION refuse_one_put_back() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('put_backs') <= 1 THEN
        RAISE EXCEPTION 'injected fault: the run cannot be put back at the trigger';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_one_put_back BEFORE INSERT ON trigger_waiters FOR EACH ROW
    EXECUTE FUNCTION refuse_one_put_back();
"#;

/// A call to all runs that none took in time puts each back at the trigger: one that cannot
/// be written keeps the others from nothing, and the caller hears what became of the call.
#[tokio::test]
async fn a_run_that_cannot_be_put_back_at_a_trigger_keeps_no_other_from_its_place() {
    let args = ["--max-active-runs", "1", "--cpu-budget-ms", "5000", "--take-timeout-ms", "1500"];
    let (latch, database) = with_fault(&args, "order-approval", "").await;
    latch.upload_plugin("misbehave").await;
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(latch.start_run("order-approval", json!({ "order_id": format!("o-{n}") })).await);
    }
    for id in &ids {
        latch.wait_for(id, "waiting").await;
    }
    // The one slot is busy: no run takes the call in time, and each is put back.
    let spinning = latch.start_run("misbehave", json!({ "do": "spin" })).await;
    latch.wait_for(&spinning, "running").await;
    database.batch_execute(REFUSE_ONE_PUT_BACK).await.expect("the fault is installed");
    let url = format!("{}/t/order-approval/payment-confirmed?execution=all", latch.base);
    let (status, body) = send(latch.http.post(&url).json(&json!({ "paid": 1 }))).await;
    assert_eq!((status, crate::harness::error_code(&body)), (StatusCode::SERVICE_UNAVAILABLE, "not-taken"), "{body}");
    latch.wait_for(&spinning, "failed").await;
    // Every run takes a later call (the one not put back waits there again once driven).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut resumed = 0;
    while resumed < ids.len() {
        assert!(Instant::now() < deadline, "only {resumed} runs took a later call");
        let (status, answer) = send(latch.http.post(&url).json(&json!({ "paid": 2 }))).await;
        if status == StatusCode::OK {
            resumed += answer["resumed"].as_u64().unwrap_or(0) as usize;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in &ids {
        assert_eq!(latch.wait_for(id, "completed").await["output"]["payment"], json!({ "paid": 2 }));
    }
}

/// Makes the first write of a run's log that takes a call fail, as a lost connection would
/// fail it: the call was claimed from the inbox, and its event is not in the log.
const REFUSE_ONE_TAKE: &str = r#"
CREATE SEQUENCE takes;
CREATE FUNCTION refuse_one_take() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind = 'wait-ended' AND position('"rq-' in convert_from(NEW.record, 'UTF8')) > 0
        AND nextval('takes') <= 1 THEN
        RAISE EXCEPTION 'injected fault: the take cannot be written';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_one_take BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse_one_take();
"#;

/// A run whose write of a take fails ends (`storage`), and the call it was taking is
/// settled with it: a held caller hears at once that its call was not delivered, and an
/// acknowledged call is listed as not taken. Before, the ledger's take was finished by
/// the write of its failure, so that the call was gone from everywhere and its caller
/// waited a minute for a 500; and an acknowledged call stayed `queued` for the ended run
/// until the next start.
#[tokio::test]
async fn a_call_whose_take_could_not_be_written_is_refused_or_listed_as_the_run_ends() {
    let (latch, _) = with_fault(&["--take-timeout-ms", "60000"], "payment-ledger", REFUSE_ONE_TAKE).await;
    let id = latch.start_run("payment-ledger", json!({ "order_id": "o-1", "answer_within_ms": 60_000 })).await;
    let hook = latch.waiting_url(&id).await;
    let call = send(latch.http.post(&hook).json(&json!({ "type": "payment.created" })));
    let (status, body) = tokio::time::timeout(Duration::from_secs(30), call).await.expect("answered in time");
    assert_eq!((status, crate::harness::error_code(&body)), (StatusCode::GONE, "gone"), "{body}");
    assert_eq!(latch.wait_for(&id, "failed").await["error"]["code"], "storage");
    assert_eq!(listed_states(&latch, &id).await, vec![("not-taken".to_string(), false)]);

    let (latch, _) = with_fault(&[], "order-payment", REFUSE_ONE_TAKE).await;
    let id = latch.start_run("order-payment", json!({ "order_id": "o-1", "amount": 1 })).await;
    let callback = latch.waiting_url(&id).await;
    assert_eq!(send(latch.http.post(&callback).json(&json!({ "paid": 1 }))).await.0, StatusCode::ACCEPTED);
    assert_eq!(latch.wait_for(&id, "failed").await["error"]["code"], "storage");
    assert_eq!(listed_states(&latch, &id).await, vec![("not-taken".to_string(), true)], "the acknowledged call");

    // A many-call webhook answered automatically: the run takes the call and waits for the
    // next one, and that wait's write (the take's) fails. Its caller was told 2xx before.
    let (latch, _) = with_fault(&[], "blink-callback", REFUSE_ONE_TAKE).await;
    let id = latch.start_run("blink-callback", json!({ "auth": "none", "calls": 2 })).await;
    let hook = latch.waiting_url(&id).await;
    let (status, body) = send(latch.http.post(&hook).json(&json!({ "n": 1 }))).await;
    assert_eq!((status, crate::harness::error_code(&body)), (StatusCode::GONE, "gone"), "{body}");
    assert_eq!(latch.wait_for(&id, "failed").await["error"]["code"], "storage");
    assert_eq!(listed_states(&latch, &id).await, vec![("not-taken".to_string(), false)]);
}

/// Each call listed for a run: its state, and whether its caller was acknowledged.
async fn listed_states(latch: &Latch, id: &str) -> Vec<(String, bool)> {
    let (_, listed) = latch.get(&format!("/v1/runs/{id}/requests")).await;
    let requests = listed["requests"].as_array().cloned().unwrap_or_default();
    let state = |r: &serde_json::Value| r["state"].as_str().unwrap_or_default().to_string();
    requests.iter().map(|r| (state(r), r["acknowledged"].as_bool().unwrap_or(false))).collect()
}
