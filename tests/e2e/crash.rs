//! SIGKILL at many points of the hot path while runs are being started and calls accepted
//! and taken: after each kill the server starts again on the same data, the callers retry
//! what they were not answered (with the same `Idempotency-Key`, as senders do), and in
//! the end every acknowledged call is in its run's log exactly once and every run finishes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{ADMIN_KEY, Latch, start};

/// What the callers were told, and what they tried.
#[derive(Default)]
pub(crate) struct Ledger {
    /// Runs whose start was acknowledged, with the amount their callback carries.
    pub(crate) started: Mutex<BTreeMap<String, u64>>,
    /// Runs whose callback was acknowledged.
    pub(crate) paid: Mutex<BTreeSet<String>>,
    /// Calls to the many-call webhooks: tried, and acknowledged.
    pub(crate) tried: Mutex<BTreeMap<u64, String>>,
    pub(crate) acknowledged: Mutex<BTreeSet<u64>>,
    /// Calls cut off by a kill, unanswered.
    pub(crate) interrupted: AtomicU64,
    pub(crate) next: AtomicU64,
    /// Set to end the callers of a round whose server stays up.
    pub(crate) stop: std::sync::atomic::AtomicBool,
}

/// The server as one round of callers sees it: its address and a client of its own.
#[derive(Clone)]
pub(crate) struct Target {
    base: String,
    http: reqwest::Client,
}

impl Target {
    pub(crate) fn of(latch: &Latch) -> Target {
        Target { base: latch.base.clone(), http: latch.http.clone() }
    }

    /// A status, or `None` when the server went away mid-call.
    async fn post(&self, url: &str, body: &Value, key: Option<&str>) -> Option<(StatusCode, Value)> {
        let mut request = self.http.post(url).json(body).timeout(Duration::from_secs(20));
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await.ok()?;
        let status = response.status();
        Some((status, response.json().await.unwrap_or(Value::Null)))
    }

    async fn start_run(&self, module: &str, input: &Value) -> Option<String> {
        let url = format!("{}/v1/modules/{module}/runs", self.base);
        let request = self.http.post(url).bearer_auth(ADMIN_KEY).json(input).timeout(Duration::from_secs(20));
        let response = request.send().await.ok()?;
        let body: Value = response.json().await.ok()?;
        body["id"].as_str().map(String::from)
    }

    /// The URL of a run's first webhook, once it has one (a run that took its call and
    /// ended still lists it); `None` if the server went away first.
    async fn webhook_url(&self, id: &str) -> Option<String> {
        loop {
            let request = self.http.get(format!("{}/v1/runs/{id}", self.base)).bearer_auth(ADMIN_KEY);
            let response = request.send().await.ok()?;
            // A node with no leader to pass the call to, or whose leader went away with it
            // (several nodes, one killed).
            if response.status().is_server_error() {
                return None;
            }
            let run: Value = response.json().await.ok()?;
            if let Some(url) = run["webhooks"][0]["url"].as_str() {
                return Some(format!("{}{}", self.base, &url[url.find("/hooks/")?..]));
            }
            assert!(matches!(run["status"].as_str(), Some("running" | "waiting")), "run {id} ended: {run}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Pays a run: its callback, keyed by the run, so that a retry is the same message.
pub(crate) async fn pay(target: &Target, ledger: &Ledger, id: &str, amount: u64) -> Option<()> {
    let url = target.webhook_url(id).await?;
    let (status, body) = target.post(&url, &json!({ "paid": amount }), Some(&format!("pay-{id}"))).await?;
    assert!(
        status == StatusCode::ACCEPTED || status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS,
        "callback of {id}: {status} {body}"
    );
    if status == StatusCode::ACCEPTED {
        ledger.paid.lock().unwrap().insert(id.to_string());
    }
    Some(())
}

/// Starts runs and pays them until the server goes away.
pub(crate) async fn starter(target: Target, ledger: Arc<Ledger>) {
    while !ledger.stop.load(Ordering::SeqCst) {
        let amount = ledger.next.fetch_add(1, Ordering::SeqCst);
        let input = json!({ "order_id": format!("o-{amount}"), "amount": amount });
        let Some(id) = target.start_run("order-payment", &input).await else {
            ledger.interrupted.fetch_add(1, Ordering::SeqCst);
            return;
        };
        ledger.started.lock().unwrap().insert(id.clone(), amount);
        if pay(&target, &ledger, &id, amount).await.is_none() {
            ledger.interrupted.fetch_add(1, Ordering::SeqCst);
            return;
        }
    }
}

/// Calls a many-call webhook until the server goes away or its run has all it wants.
pub(crate) async fn caller(target: Target, ledger: Arc<Ledger>, url: String) {
    while !ledger.stop.load(Ordering::SeqCst) {
        let n = ledger.next.fetch_add(1, Ordering::SeqCst);
        ledger.tried.lock().unwrap().insert(n, url.clone());
        if !call(&target, &ledger, &url, n).await {
            return;
        }
    }
}

/// One call to a many-call webhook, keyed by its number; false once it is pointless to
/// go on (the server went away, or the run took all it wanted).
pub(crate) async fn call(target: &Target, ledger: &Ledger, url: &str, n: u64) -> bool {
    let Some((status, body)) = target.post(url, &json!({ "n": n }), Some(&format!("call-{n}"))).await else {
        ledger.interrupted.fetch_add(1, Ordering::SeqCst);
        return false;
    };
    match status {
        StatusCode::ACCEPTED => {
            ledger.acknowledged.lock().unwrap().insert(n);
            ledger.tried.lock().unwrap().remove(&n);
            true
        }
        // Never delivered: the run ended first.
        StatusCode::GONE => {
            ledger.tried.lock().unwrap().remove(&n);
            false
        }
        status if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => true,
        status => panic!("call {n}: {status} {body}"),
    }
}

/// Retries what the last round's callers were not answered, as their senders would.
pub(crate) async fn retry_unanswered(target: &Target, ledger: &Ledger) {
    let started = ledger.started.lock().unwrap().clone();
    let paid = ledger.paid.lock().unwrap().clone();
    for (id, amount) in started.into_iter().filter(|(id, _)| !paid.contains(id)) {
        pay(target, ledger, &id, amount).await;
    }
    let tried = ledger.tried.lock().unwrap().clone();
    for (n, url) in tried {
        call(target, ledger, &url, n).await;
    }
}

#[tokio::test]
async fn sigkill_at_many_points_of_the_hot_path_loses_nothing_acknowledged_and_repeats_nothing() {
    let mut latch = start().await;
    latch.upload_plugin("order-payment").await;
    latch.upload_plugin("blink-callback").await;
    let ledger = Arc::new(Ledger::default());
    let mut ledger_runs = Vec::new();
    for round in 0..8u64 {
        let target = Target::of(&latch);
        retry_unanswered(&target, &ledger).await;
        // Each round feeds a many-call webhook of its own, whose run takes 150 calls.
        let id = latch.start_run("blink-callback", json!({ "auth": "none", "calls": 150 })).await;
        let url = latch.rebase(&latch.waiting_url(&id).await);
        ledger_runs.push((id, url.clone()));
        let mut callers = Vec::new();
        for _ in 0..8 {
            callers.push(tokio::spawn(starter(target.clone(), ledger.clone())));
        }
        for _ in 0..4 {
            callers.push(tokio::spawn(caller(target.clone(), ledger.clone(), url.clone())));
        }
        // A different moment of the flood each round.
        tokio::time::sleep(Duration::from_millis(150 + round * 137 % 500)).await;
        latch.kill();
        for caller in callers {
            caller.await.expect("a caller");
        }
        latch.restart().await;
    }

    let target = Target::of(&latch);
    retry_unanswered(&target, &ledger).await;
    assert!(ledger.interrupted.load(Ordering::SeqCst) >= 8, "the kills should cut calls off");
    settle_and_check(&latch, &ledger, &ledger_runs, 150).await;
}

/// After the kills: every run is paid and every many-call run fed until it has all it
/// wants; then each run took the callback it was paid with, and each acknowledged call is
/// in its run exactly once.
pub(crate) async fn settle_and_check(latch: &Latch, ledger: &Ledger, many_call_runs: &[(String, String)], calls: usize) {
    let target = Target::of(latch);
    eprintln!(
        "after the kills: {} calls cut off, {} runs started, {} paid, {} calls acknowledged, {} unanswered",
        ledger.interrupted.load(Ordering::SeqCst),
        ledger.started.lock().unwrap().len(),
        ledger.paid.lock().unwrap().len(),
        ledger.acknowledged.lock().unwrap().len(),
        ledger.tried.lock().unwrap().len()
    );
    assert!(ledger.paid.lock().unwrap().len() > 20, "the rounds acknowledged too few callbacks to prove anything");
    assert!(ledger.acknowledged.lock().unwrap().len() > 20, "too few calls to the many-call webhooks");

    // Every run finishes: runs whose start was never acknowledged are paid too, and every
    // many-call run gets new calls until it has all it wants.
    let runs = latch.all_runs(None).await;
    let started = ledger.started.lock().unwrap().clone();
    for run in runs.iter().filter(|run| run["module"] == "order-payment") {
        let id = run["id"].as_str().expect("id");
        if !ledger.paid.lock().unwrap().contains(id) {
            let amount = started.get(id).copied().unwrap_or(u64::MAX);
            pay(&target, ledger, id, amount).await.expect("the server is up");
        }
    }
    for (_, url) in many_call_runs {
        let url = latch.rebase(url);
        while call(&target, ledger, &url, ledger.next.fetch_add(1, Ordering::SeqCst)).await {}
    }

    // Each run took the callback it was paid with; its single-use webhook took no other.
    let paid = ledger.paid.lock().unwrap().clone();
    let finished = all_finished(latch).await;
    for (id, amount) in &started {
        assert!(paid.contains(id), "run {id} was never paid");
        let run = finished.get(id).unwrap_or_else(|| panic!("run {id} is gone"));
        assert_eq!(run["output"]["payment"], json!({ "paid": amount }), "{run}");
    }
    // Each acknowledged call to a many-call webhook is in its run once; none is there twice.
    let acknowledged = ledger.acknowledged.lock().unwrap().clone();
    let mut taken = Vec::new();
    for (id, _) in many_call_runs {
        let calls_taken = finished[id]["output"]["calls"].as_array().expect("calls").clone();
        assert_eq!(calls_taken.len(), calls);
        taken.extend(calls_taken.iter().filter_map(|c| c["data"]["n"].as_u64()));
    }
    let distinct: BTreeSet<u64> = taken.iter().copied().collect();
    assert_eq!(distinct.len(), taken.len(), "no call was taken twice");
    let lost: Vec<_> = acknowledged.difference(&distinct).collect();
    assert!(lost.is_empty(), "acknowledged calls missing from their runs: {lost:?}");
}

/// Every run, once every one has completed (each was paid), by id.
pub(crate) async fn all_finished(latch: &Latch) -> BTreeMap<String, Value> {
    for _ in 0..600 {
        let runs = latch.all_runs(None).await;
        if runs.iter().all(|run| run["status"] == "completed") {
            return runs.iter().map(|run| (run["id"].as_str().expect("id").to_string(), run.clone())).collect();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unfinished: Vec<Value> =
        latch.all_runs(None).await.into_iter().filter(|run| run["status"] != "completed").collect();
    panic!("every run finishes: {unfinished:?}");
}

/// The quiet case the flood above hides (there, the next caller's write makes an earlier
/// one durable too): one callback, kept for a run that sleeps, answered, then SIGKILL at
/// once, with no other write after it. Its 2xx must have followed its own fsync.
#[tokio::test]
async fn a_callback_kept_for_a_sleeping_run_survives_a_sigkill_right_after_its_answer() {
    let mut latch = start().await;
    latch.upload_plugin("wait-patterns").await;
    let input =
        json!({ "pattern": "first-of-two", "tokens": ["quiet-a", "quiet-b"], "only_first": true, "sleep_ms": 1500 });
    let id = latch.start_run("wait-patterns", input).await;
    latch.wait_for(&id, "waiting").await;
    let (status, body) = latch.resume("quiet-b", &json!({ "n": "b" })).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    latch.kill();
    latch.restart().await;
    let output = latch.wait_for(&id, "completed").await["output"].clone();
    assert_eq!((output["first_index"].clone(), output["first"].clone()), (json!(1), json!({ "n": "b" })));
}
