//! Several `latch` nodes on one PostgreSQL database: any node takes any call, one leads
//! (drives the runs, fires the timers), and when it is killed another takes over within
//! seconds, without losing an acknowledged call or repeating one. PostgreSQL only: sled is
//! one process's files.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::crash::{Ledger, Target, caller, retry_unanswered, settle_and_check, starter};
use crate::harness::{Latch, send};
use crate::vendor::{Behaviour, Vendor};

/// Nodes on one database, and a session of its own to see which one leads.
struct Cluster {
    nodes: Vec<Latch>,
    database: tokio_postgres::Client,
}

impl Cluster {
    /// `count` nodes on a fresh database (runs may call loopback); the first one leads.
    async fn start(count: usize) -> Cluster {
        Cluster::start_with(&vec![&[][..]; count]).await
    }

    /// A node for each entry of `flags`, with those flags of its own; the first one leads.
    async fn start_with(flags: &[&[&str]]) -> Cluster {
        let url = latch_testkit::postgres_database().await;
        let mut nodes = Vec::new();
        for own in flags {
            let mut args = vec!["--database-url", url.as_str(), "--allow-http", "127.0.0.1:*"];
            args.extend_from_slice(own);
            nodes.push(Latch::start_checking_answers(env!("CARGO_BIN_EXE_latch").as_ref(), &args).await);
        }
        let (database, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connects");
        tokio::spawn(connection);
        Cluster { nodes, database }
    }

    /// The live node that leads, waiting (at most 10 s) for one to take over.
    async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let row = self.database.query_opt("SELECT value FROM settings WHERE key = 'leader-url'", &[]).await;
            let url: Option<String> = row.expect("reads").map(|row| row.get(0));
            let live = |n: &usize| self.nodes[*n].pid().is_some() && Some(&self.nodes[*n].base) == url.as_ref();
            if let Some(leader) = (0..self.nodes.len()).find(live) {
                return leader;
            }
            assert!(Instant::now() < deadline, "no live node took over within 10 s (the last leader: {url:?})");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn calls_spread_over_three_nodes_survive_the_leader_killed_in_each_round() {
    let mut cluster = Cluster::start(3).await;
    assert_eq!(cluster.leader().await, 0);
    // Uploads through nodes that do not lead reach the one that does.
    cluster.nodes[1].upload_plugin("order-payment").await;
    cluster.nodes[2].upload_plugin("blink-callback").await;
    cluster.nodes[2].upload_plugin("flaky-charge").await;
    let payments = Vendor::start(Behaviour::FailTimes(0)).await;
    let ledger = Arc::new(Ledger::default());
    let mut many_call_runs = Vec::new();
    let mut charges = Vec::new();
    for round in 0..3u64 {
        let lead = cluster.leader().await;
        let follower = &cluster.nodes[(lead + 1) % 3];
        retry_unanswered(&Target::of(follower), &ledger).await;
        let id = follower.start_run("blink-callback", json!({ "auth": "none", "calls": 120 })).await;
        let url = follower.waiting_url(&id).await;
        many_call_runs.push((id, url.clone()));
        // Callers on every node: a node that does not lead passes them to the one that does.
        let mut callers = Vec::new();
        for (n, node) in cluster.nodes.iter().enumerate() {
            for _ in 0..3 {
                callers.push(tokio::spawn(starter(Target::of(node), ledger.clone())));
            }
            let url = cluster.nodes[n].rebase(&url);
            callers.push(tokio::spawn(caller(Target::of(node), ledger.clone(), url)));
        }
        // Runs whose step calls an outside API, some of them cut off by the kill.
        for n in 0..10 {
            let input =
                json!({ "charge_url": payments.url, "amount": round * 100 + n, "attempts": 3, "backoff_ms": 50 });
            charges.push(cluster.nodes[(lead + 1 + n as usize % 2) % 3].start_run("flaky-charge", input).await);
        }
        tokio::time::sleep(Duration::from_millis(300 + round * 211)).await;
        let killed_at = Instant::now();
        cluster.nodes[lead].kill();
        // The calls on the other nodes get 503 `no-leader` (and retry) until one leads.
        let next = cluster.leader().await;
        eprintln!("round {round}: node {next} leads {:?} after node {lead} was killed", killed_at.elapsed());
        assert_ne!(next, lead);
        tokio::time::sleep(Duration::from_millis(500)).await;
        ledger.stop.store(true, Ordering::SeqCst);
        for caller in callers {
            caller.await.expect("a caller");
        }
        ledger.stop.store(false, Ordering::SeqCst);
        cluster.nodes[lead].restart().await;
    }

    let lead = cluster.leader().await;
    let some_follower = &cluster.nodes[(lead + 2) % 3];
    retry_unanswered(&Target::of(some_follower), &ledger).await;
    settle_and_check(some_follower, &ledger, &many_call_runs, 120).await;

    // Each step's outcome is in its run's log once, whatever the kills cut short; the API
    // was called at least once for each (again only when a kill fell between its call
    // and the step's record).
    let charged: Vec<u64> = payments.received().iter().filter_map(|body| body["amount"].as_u64()).collect();
    for id in &charges {
        let run = some_follower.wait_for(id, "completed").await;
        let attempts: Vec<_> =
            some_follower.events(id).await.into_iter().filter(|e| e["type"] == "step-attempt").collect();
        assert_eq!(attempts.len(), 1, "one attempt recorded for run {id}: {attempts:?}");
        assert!(attempts[0]["outcome"]["Ok"].is_object(), "{attempts:?}");
        let amount = run["input"]["amount"].as_u64().expect("amount");
        assert!(charged.contains(&amount), "the charge of run {id} reached the API");
    }
    eprintln!("{} charges, {} calls to the payment API", charges.len(), charged.len());
}

#[tokio::test]
async fn a_caller_held_on_one_node_gets_the_answer_the_run_gives_on_another_and_a_timer_fires_once() {
    let mut cluster = Cluster::start(3).await;
    cluster.nodes[1].upload_plugin("payment-ledger").await;
    cluster.nodes[1].upload_plugin("wait-patterns").await;

    // The run answers the caller itself: the answer travels back through the node that
    // holds the caller.
    let (follower, holder) = (&cluster.nodes[1], &cluster.nodes[2]);
    let id = follower.start_run("payment-ledger", json!({ "order_id": "o-cluster" })).await;
    let url = holder.rebase(&follower.waiting_url(&id).await);
    let held = send(holder.http.post(&url).json(&json!({ "type": "payment.succeeded" }))).await;
    assert_eq!(held, (StatusCode::OK, json!({ "ack": true, "action": "captured" })));
    follower.wait_for(&id, "completed").await;
    // An event stream flows through a node that does not lead, to the run's end.
    let follow = holder.http.get(format!("{}/v1/runs/{id}/events?follow=true", holder.base));
    let stream = follow.bearer_auth(crate::harness::ADMIN_KEY).send().await.expect("answered");
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let text = stream.text().await.expect("the stream ends with the run");
    assert!(text.contains("event: completed"), "{text}");

    // A durable timer set under one leader fires once, under the next.
    let sleeper = cluster.nodes[1].start_run("wait-patterns", json!({ "pattern": "sleep", "ms": 1500 })).await;
    cluster.nodes[1].wait_for(&sleeper, "waiting").await;
    cluster.nodes[0].kill();
    // Until a node leads again, the others ask callers to retry.
    loop {
        let (status, body) = cluster.nodes[1].get("/v1/runs?limit=1").await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("no-leader")));
    }
    assert_ne!(cluster.leader().await, 0);
    let run = cluster.nodes[2].wait_for(&sleeper, "completed").await;
    assert!(run["output"]["slept_ms"].as_u64() >= Some(1500), "{run}");
    let events = cluster.nodes[2].events(&sleeper).await;
    let ended: Vec<_> = events.iter().filter(|e| e["type"] == "wait-ended").collect();
    assert_eq!(ended.len(), 1, "the timer fired once: {events:?}");
}

#[tokio::test]
async fn latch_database_url_in_the_environment_puts_the_server_on_that_database() {
    let url = latch_testkit::postgres_database().await;
    let data = tempfile::tempdir().expect("temp dir");
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_latch"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .env("LATCH_DATABASE_URL", &url)
        .env("LATCH_ADMIN_KEY", crate::harness::ADMIN_KEY)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("latch starts");
    let stdout = server.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).map(|_| line)
    });
    let line = line.await.expect("task").expect("a line");
    let _ = server.kill();
    let _ = server.wait();
    assert!(line.starts_with("latch listening on") && line.contains("leading"), "{line}");
    let (database, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connects");
    tokio::spawn(connection);
    let row = database.query_one("SELECT value FROM settings WHERE key = 'leader-url'", &[]).await;
    let address = line.split_whitespace().nth(3).expect("address");
    assert_eq!(row.expect("the server wrote to the database").get::<_, String>(0), format!("http://{address}"));
    assert!(!data.path().join("sled").exists(), "no sled store beside the database");
}

#[tokio::test]
async fn a_leader_whose_lease_ends_stops_and_another_node_leads() {
    let mut cluster = Cluster::start(2).await;
    assert_eq!(cluster.leader().await, 0);
    // The database ends the session that holds the lease, as a network cut would.
    let ended = "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted \
        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
    let terminated = cluster.database.query(ended, &[]).await.expect("terminates");
    assert_eq!(terminated.len(), 1, "one session holds the lease");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cluster.nodes[0].has_exited() {
        assert!(Instant::now() < deadline, "the leader went on without its lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cluster.nodes[0].log().contains("lost its lease"), "{}", cluster.nodes[0].log());
    cluster.nodes[0].kill();
    assert_eq!(cluster.leader().await, 1);
    let (status, _) = cluster.nodes[1].get("/v1/runs").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_node_that_does_not_lead_passes_a_call_on_once_and_bounds_its_body() {
    let cluster = Cluster::start(2).await;
    // The database names the follower itself as the leader (as when a node restarts under
    // the old leader's address before the new one has said where it is).
    let follower = &cluster.nodes[1];
    let own = "UPDATE settings SET value = $1 WHERE key = 'leader-url'";
    cluster.database.execute(own, &[&follower.base]).await.expect("updates");
    let began = Instant::now();
    let answer = follower.http.get(format!("{}/v1/runs", follower.base)).bearer_auth(crate::harness::ADMIN_KEY);
    let answer = answer.send().await.expect("answered");
    assert!(began.elapsed() < Duration::from_secs(5), "no loop: {:?}", began.elapsed());
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"), "retry in a second");
    let body: serde_json::Value = answer.json().await.expect("a JSON error");
    assert_eq!(body["error"]["code"], "no-leader", "{body}");

    // A call's body is bounded as the leader bounds it, before it is passed on.
    let url = format!("{}/hooks/some-token", follower.base);
    let (status, body) = send(follower.http.post(url).body(vec![b' '; 2 << 20])).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("body-too-large")));
}

#[tokio::test]
async fn a_node_listening_on_every_address_needs_node_url() {
    let url = latch_testkit::postgres_database().await;
    let data = tempfile::tempdir().expect("temp dir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_latch"))
        .args(["serve", "--listen", "0.0.0.0:0", "--database-url", &url, "--data"])
        .arg(data.path())
        .env("LATCH_ADMIN_KEY", crate::harness::ADMIN_KEY)
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--node-url is needed"), "{stderr}");
}

/// A node that does not lead holds a call's body against its own budget for bodies until
/// the leader answers: held callers passed on cannot fill its memory either.
#[tokio::test]
async fn a_node_that_does_not_lead_counts_the_bodies_it_passes_on_until_answered() {
    let cluster = Cluster::start_with(&[&[], &["--max-body-buffer-mib", "1"]]).await;
    let (leader, follower) = (&cluster.nodes[0], &cluster.nodes[1]);
    assert_eq!(cluster.leader().await, 0);
    let (id, url, _slow) = crate::exhaustion::ledger_busy(follower, 6000).await;
    let url = follower.rebase(&url);
    let big = json!({ "type": "payment.created", "pad": "x".repeat(600_000) });
    let first = tokio::spawn(send(follower.http.post(&url).json(&big)));
    crate::exhaustion::listed(leader, &id, "queued", 1).await;
    // The first call's 600 kB are still held here: a second does not fit in 1 MiB.
    let (status, body) = send(follower.http.post(&url).json(&big)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("overloaded")), "{body}");
    assert_eq!(first.await.expect("the first caller").0, StatusCode::OK, "the first call is taken");
    // Answered: its bytes are given back.
    assert_eq!(send(follower.http.post(&url).json(&big)).await.0, StatusCode::OK);
}

/// A call the leader had when it was killed is answered `502 leader-lost` by the node that
/// passed it on; its retry under the same `Idempotency-Key`, once another node leads, is
/// delivered once.
#[tokio::test]
async fn a_call_the_leader_had_when_it_died_is_leader_lost_and_its_retry_is_delivered_once() {
    let mut cluster = Cluster::start(2).await;
    assert_eq!(cluster.leader().await, 0);
    let (id, url, _slow) = crate::exhaustion::ledger_busy(&cluster.nodes[1], 3000).await;
    let url = cluster.nodes[1].rebase(&url);
    let call = |node: &Latch| {
        node.http.post(&url).header("Idempotency-Key", "k-1").json(&json!({ "type": "payment.created" }))
    };
    let held = tokio::spawn(send(call(&cluster.nodes[1])));
    crate::exhaustion::listed(&cluster.nodes[1], &id, "queued", 1).await;
    cluster.nodes[0].kill();
    let (status, body) = held.await.expect("the held caller");
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_GATEWAY, Some("leader-lost")), "{body}");
    assert_eq!(cluster.leader().await, 1);
    let follower = &cluster.nodes[1];
    assert_eq!(send(call(follower)).await.0, StatusCode::OK, "the retry is taken");
    let done = follower.http.post(&url).json(&json!({ "type": "payment.succeeded" }));
    assert_eq!(send(done).await.0, StatusCode::OK);
    let run = follower.wait_for(&id, "completed").await;
    let ledger = run["output"]["ledger"].as_array().cloned().unwrap_or_default();
    assert_eq!(ledger.iter().filter(|e| e["type"] == "payment.created").count(), 1, "{run}");
}
