//! Nobody exhausts the server: idle, partial and stalled connections are closed on time;
//! past its descriptors it keeps serving; runs past a cap queue and past a queue new work
//! gets 429; a run past its quotas fails alone; WASI sleeps obey cancellation and the CPU
//! budget; runs reach no internal address; ended runs are deleted and their space given back.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{ADMIN_KEY, Latch, error_code, send, start_with};
use crate::vendor::{Behaviour, Vendor};

fn address(latch: &Latch) -> String {
    latch.base.trim_start_matches("http://").to_string()
}

/// An `order-payment` run waiting on its callback URL: `(run id, URL)`.
async fn waiting_order(latch: &Latch) -> (String, String) {
    let id = latch.start_run("order-payment", json!({ "order_id": "o-1", "amount": 1 })).await;
    let url = latch.waiting_url(&id).await;
    (id, url)
}

/// Reads until the server closes the connection; `None` if it keeps it open past `wait`.
async fn until_closed(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut read = Vec::new();
    let closed = tokio::time::timeout(wait, stream.read_to_end(&mut read)).await;
    closed.ok().map(|_| String::from_utf8_lossy(&read).into_owned())
}

#[tokio::test]
async fn idle_partial_and_stalled_connections_are_closed_on_time() {
    let latch = start_with(&["--header-timeout-ms", "500", "--body-timeout-ms", "500"]).await;
    latch.upload_plugin("order-payment").await;
    let mut idle = TcpStream::connect(address(&latch)).await.expect("connects");
    let mut partial = TcpStream::connect(address(&latch)).await.expect("connects");
    partial.write_all(b"POST /v1/modules/order-payment/runs HTTP/1.1\r\nHost: latch\r\n").await.expect("sent");
    let mut stalled = TcpStream::connect(address(&latch)).await.expect("connects");
    let head = format!(
        "POST /v1/modules/order-payment/runs HTTP/1.1\r\nHost: latch\r\nAuthorization: Bearer {ADMIN_KEY}\r\n\
         Content-Length: 1000\r\n\r\n{{\"order_id\":"
    );
    stalled.write_all(head.as_bytes()).await.expect("sent");
    // A keep-alive connection left idle after its answer.
    let mut kept_alive = TcpStream::connect(address(&latch)).await.expect("connects");
    kept_alive.write_all(b"GET /healthz HTTP/1.1\r\nHost: latch\r\n\r\n").await.expect("sent");
    // A body that keeps coming, far slower than 64 KiB/s.
    let mut trickle = TcpStream::connect(address(&latch)).await.expect("connects");
    let head = head.replace("Content-Length: 1000", "Content-Length: 100000");
    trickle.write_all(head.as_bytes()).await.expect("sent");
    let (mut trickle_read, mut trickle_write) = trickle.into_split();
    let trickling = tokio::spawn(async move {
        for _ in 0..100 {
            if trickle_write.write_all(b"          ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let began = Instant::now();
    assert!(until_closed(&mut idle, Duration::from_secs(5)).await.is_some(), "idle connection kept open");
    let answered = until_closed(&mut kept_alive, Duration::from_secs(5)).await.expect("kept-alive connection kept open");
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), trickle_read.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "a trickling body kept its connection open");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408") && answer.contains("body-timeout"), "{answer}");
    trickling.abort();
    assert!(until_closed(&mut partial, Duration::from_secs(5)).await.is_some(), "partial head kept open");
    let answer = until_closed(&mut stalled, Duration::from_secs(5)).await.expect("stalled body kept open");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body-timeout"), "{answer}");
    assert!(began.elapsed() < Duration::from_secs(4), "closed after {:?}", began.elapsed());
    assert_eq!(send(latch.http.get(format!("{}/healthz", latch.base))).await.0, StatusCode::OK);
}

#[tokio::test]
async fn past_its_descriptors_the_server_keeps_serving() {
    let binary = env!("CARGO_BIN_EXE_latch");
    let backend = crate::harness::backend_args().await;
    let args: Vec<&str> =
        ["--header-timeout-ms", "1000"].into_iter().chain(backend.iter().map(String::as_str)).collect();
    let latch = Latch::start_with_descriptor_limit(binary.as_ref(), &args, 256).await;
    latch.upload_plugin("order-payment").await;
    // More idle sockets than the process may open.
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(address(&latch)).await.expect("the kernel takes the connection"));
    }
    let began = Instant::now();
    let (id, url) = waiting_order(&latch).await;
    assert_eq!(send(latch.http.post(&url).json(&json!({ "paid": 1 }))).await.0, StatusCode::ACCEPTED);
    latch.wait_for(&id, "completed").await;
    assert!(began.elapsed() < Duration::from_secs(30), "served after {:?}", began.elapsed());
    drop(idle);
}

/// A caller that stops reading a large answer is cut off once the answer makes no progress
/// for `--header-timeout-ms`, instead of holding its connection and the answer for ever.
#[tokio::test]
async fn a_caller_that_stops_reading_its_answer_is_cut_off() {
    let latch = start_with(&["--header-timeout-ms", "1000", "--max-run-log-mib", "24"]).await;
    latch.upload_plugin("misbehave").await;
    let id = latch.start_run("misbehave", json!({ "do": "log-spam" })).await;
    latch.wait_for(&id, "failed").await;
    let whole = latch.http.get(format!("{}/v1/runs/{id}/events", latch.base)).bearer_auth(ADMIN_KEY);
    let whole = whole.send().await.expect("answered").bytes().await.expect("read").len();
    // Larger than what the kernel's buffers on both ends can hold.
    assert!(whole > 20 << 20, "a large answer: {whole} bytes");

    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("a small receive buffer");
    let mut stream = socket.connect(address(&latch).parse().expect("address")).await.expect("connects");
    let request = format!("GET /v1/runs/{id}/events HTTP/1.1\r\nHost: latch\r\nAuthorization: Bearer {ADMIN_KEY}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("sent");
    // Not read for three times the timeout: the server's writes stall.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut read = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut read)).await;
    assert!(ended.is_ok(), "the stalled connection was kept open");
    assert!(read.len() < whole, "the answer was cut short: {} of {whole} bytes", read.len());
}

/// Bodies being read hold their bytes against `--max-body-buffer-mib`: past it a body is
/// refused with 429 instead of growing the server's memory; one within it is read.
#[tokio::test]
async fn bodies_being_read_are_bounded_together() {
    let latch = start_with(&["--max-body-buffer-mib", "1", "--body-timeout-ms", "30000"]).await;
    latch.upload_plugin("order-payment").await;
    let (id, url) = waiting_order(&latch).await;
    let target = url.trim_start_matches(&latch.base).to_string();
    // Each sends 700 kB of a 900 kB body, then stalls: two do not fit in 1 MiB.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let stream = TcpStream::connect(address(&latch)).await.expect("connects");
        let (mut reading, mut writing) = stream.into_split();
        let head = format!("POST {target} HTTP/1.1\r\nHost: latch\r\nContent-Type: application/json\r\nContent-Length: 900000\r\n\r\n");
        let writer = tokio::spawn(async move {
            let _ = writing.write_all(head.as_bytes()).await;
            let _ = writing.write_all(&vec![b' '; 700_000]).await;
            std::future::pending::<()>().await;
        });
        slow.push((reading_answer(&mut reading).await, writer));
    }
    let refused: Vec<_> = slow.iter().filter_map(|(answer, _)| answer.as_ref()).collect();
    assert_eq!(refused.len(), 1, "one of the two bodies is refused: {refused:?}");
    assert!(refused[0].starts_with("HTTP/1.1 429") && refused[0].contains("overloaded"), "{}", refused[0]);
    // A small call still fits, and its run takes it.
    assert_eq!(send(latch.http.post(&url).json(&json!({ "paid": 1 }))).await.0, StatusCode::ACCEPTED);
    latch.wait_for(&id, "completed").await;
    for (_, writer) in slow {
        writer.abort();
    }
}

/// What the server answered on `reading` within two seconds, if anything.
async fn reading_answer(reading: &mut tokio::net::tcp::OwnedReadHalf) -> Option<String> {
    let mut buffer = vec![0; 4096];
    match tokio::time::timeout(Duration::from_secs(2), reading.read(&mut buffer)).await {
        Ok(Ok(read)) if read > 0 => Some(String::from_utf8_lossy(&buffer[..read]).into_owned()),
        _ => None,
    }
}

/// Past `--max-connections`, a new connection waits in the kernel's backlog, unserved,
/// until one of those open closes.
#[tokio::test]
async fn past_the_connection_cap_new_connections_wait_their_turn() {
    let latch = start_with(&["--max-connections", "8", "--header-timeout-ms", "60000"]).await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(address(&latch)).await.expect("the kernel takes the connection"));
    }
    let fresh = || reqwest::Client::builder().timeout(Duration::from_millis(1500)).build().expect("client");
    let healthz = format!("{}/healthz", latch.base);
    let past_the_cap = fresh().get(&healthz).send().await;
    assert!(past_the_cap.as_ref().is_err_and(reqwest::Error::is_timeout), "waits unserved, not refused: {past_the_cap:?}");
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(answer) = fresh().get(&healthz).send().await {
            assert_eq!(answer.status(), StatusCode::OK);
            break;
        }
        assert!(Instant::now() < deadline, "never served once the idle connections closed");
    }
}

#[tokio::test]
async fn a_body_is_read_only_once_its_target_is_known() {
    let latch = start_with(&["--max-body-bytes", "1000"]).await;
    latch.upload_plugin("order-approval").await;
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(4000));
    for (path, code) in [
        ("/t/no-such-module/x?execution=any", "unknown-module"),
        ("/t/order-approval/not-declared?execution=any", "unknown-trigger"),
        ("/hooks/no-such-token", "unknown-webhook"),
        ("/t/order-approval/no-such-suffix", "unknown-trigger"),
        ("/v1/hooks/no-such-token", "missing-key"),
    ] {
        let (status, answer) = send(latch.http.post(format!("{}{path}", latch.base)).body(body.clone())).await;
        assert!(status == StatusCode::NOT_FOUND || status == StatusCode::UNAUTHORIZED, "{path}: {status}");
        assert_eq!(error_code(&answer), code, "{path}");
    }
    // The admin routes too, with their key: an unknown module is a 404, not a 413.
    for path in ["/v1/modules/no-such-module/runs", "/v1/modules/no-such-module/upgrade"] {
        let call = latch.http.post(format!("{}{path}", latch.base)).bearer_auth(ADMIN_KEY).body(body.clone());
        let (status, answer) = send(call).await;
        assert_eq!((status, error_code(&answer)), (StatusCode::NOT_FOUND, "unknown-module"), "{path}");
    }
}

fn rss_mib(latch: &Latch) -> u64 {
    let pid = latch.pid().expect("running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or_default();
    line.split_whitespace().nth(1).and_then(|kib| kib.parse::<u64>().ok()).unwrap_or(0) / 1024
}

#[tokio::test]
async fn a_hot_parked_instance_gives_its_slot_up_as_soon_as_another_run_waits() {
    // One slot, and a hot hold of a minute: without the give-up the second run would wait
    // that minute.
    let latch = start_with(&["--max-active-runs", "1", "--hot-hold-ms", "60000"]).await;
    latch.upload_plugin("order-payment").await;
    let first = latch.start_run("order-payment", json!({ "order_id": "o-1", "amount": 1 })).await;
    let first_url = latch.waiting_url(&first).await;
    let began = Instant::now();
    let second = latch.start_run("order-payment", json!({ "order_id": "o-2", "amount": 2 })).await;
    let second_url = latch.waiting_url(&second).await;
    assert!(began.elapsed() < Duration::from_secs(20), "the slot was held for {:?}", began.elapsed());
    // Both go on: the first is driven again from its log.
    for (id, url) in [(&first, &first_url), (&second, &second_url)] {
        assert_eq!(send(latch.http.post(url).json(&json!({ "paid": 1 }))).await.0, StatusCode::ACCEPTED);
        latch.wait_for(id, "completed").await;
    }
}

#[tokio::test]
async fn runs_past_the_active_cap_queue_and_guest_memory_stays_bounded() {
    let latch = start_with(&["--max-active-runs", "2", "--cpu-budget-ms", "1500"]).await;
    latch.upload_plugin("misbehave").await;
    let base = rss_mib(&latch);
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(latch.start_run("misbehave", json!({ "do": "hold-memory", "mib": 96 })).await);
    }
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        peak = peak.max(rss_mib(&latch));
        let (_, failed) = latch.get("/v1/runs?status=failed").await;
        if failed["runs"].as_array().map_or(0, Vec::len) == ids.len() {
            break;
        }
        assert!(Instant::now() < deadline, "the queued runs never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in &ids {
        assert_eq!(latch.run(id).await["error"]["code"], "cpu-limit");
    }
    // Two runs' memory at a time, not six.
    assert!(peak < base + 3 * 100, "peak RSS {peak} MiB over an idle {base} MiB");
}

#[tokio::test]
async fn past_the_queue_new_runs_and_calls_are_refused_with_429() {
    let latch = start_with(&["--max-active-runs", "1", "--max-queued-runs", "1", "--cpu-budget-ms", "3000"]).await;
    latch.upload_plugin("misbehave").await;
    latch.upload_plugin("order-payment").await;
    latch.upload_plugin("order-approval").await;
    latch.upload_plugin("webhook-response").await;
    let order = latch.start_run("order-payment", json!({ "order_id": "o-0", "amount": 1 })).await;
    let order_url = latch.waiting_url(&order).await;
    let approval = latch.start_run("order-approval", json!({ "order_id": "o-0" })).await;
    latch.wait_for(&approval, "waiting").await;
    // Its timer fires while the server refuses new work: it is still woken, and ends.
    latch.upload_plugin("wait-patterns").await;
    let sleeper = latch.start_run("wait-patterns", json!({ "pattern": "sleep", "ms": 1000 })).await;
    latch.wait_for(&sleeper, "waiting").await;
    let spinning = latch.start_run("misbehave", json!({ "do": "spin" })).await;
    // The parked run may hold its slot for a moment after its URL shows (a slower store
    // widens that moment): until it lets go, the spinning run is the one queued.
    let queued = start_when_admitted(&latch, json!({ "do": "spin" })).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let request = latch.http.post(format!("{}/v1/modules/order-payment/runs", latch.base)).bearer_auth(ADMIN_KEY);
    let response = request.json(&json!({ "order_id": "o-1", "amount": 1 })).send().await.expect("answered");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("retry-after").is_some());
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(error_code(&body), "overloaded");
    // A call that would wake a run is refused too, and is not delivered later.
    let (status, body) = send(latch.http.post(&order_url).json(&json!({ "paid": "too soon" }))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::TOO_MANY_REQUESTS, "overloaded"));
    // So are calls to a start trigger and to a named trigger.
    let start_trigger = latch.http.post(format!("{}/t/webhook-response/orders/new", latch.base));
    let (status, body) = send(start_trigger.header("x-shop", "s-1").json(&json!({ "order_id": "too soon" }))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::TOO_MANY_REQUESTS, "overloaded"), "{body}");
    let named = format!("{}/t/order-approval/payment-confirmed?execution=any", latch.base);
    let (status, body) = send(latch.http.post(&named).json(&json!({ "paid": "too soon" }))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::TOO_MANY_REQUESTS, "overloaded"), "{body}");
    for id in [&spinning, &queued] {
        assert_eq!(latch.wait_for(id, "failed").await["error"]["code"], "cpu-limit");
    }
    // New work is taken again. The woken sleeper and the new run hold the one slot and the
    // one queue place until they end or park (a 429 then is right), so wait for both.
    let later = latch.start_run("order-payment", json!({ "order_id": "o-1", "amount": 1 })).await;
    assert!(latch.wait_for(&sleeper, "completed").await["output"]["slept_ms"].as_u64() >= Some(1000));
    latch.wait_for(&later, "waiting").await;
    assert_eq!(send(latch.http.post(&order_url).json(&json!({ "paid": 1 }))).await.0, StatusCode::ACCEPTED);
    assert_eq!(latch.wait_for(&order, "completed").await["output"]["payment"], json!({ "paid": 1 }));
    assert_eq!(latch.run(&approval).await["status"], "waiting", "the refused named call was not delivered");
    let (status, _) = send(latch.http.post(&named).json(&json!({ "paid": 1 }))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(latch.wait_for(&approval, "completed").await["output"]["payment"], json!({ "paid": 1 }));
    let started = latch.all_runs(None).await.iter().filter(|r| r["module"] == "webhook-response").count();
    assert_eq!(started, 0, "the refused start-trigger call started nothing");
}

#[tokio::test]
async fn a_run_past_its_quotas_fails_alone() {
    let args = ["--max-run-events", "40", "--max-run-webhooks", "5", "--max-run-timers", "6", "--max-run-log-mib", "1"];
    let latch = start_with(&args).await;
    latch.upload_plugin("misbehave").await;
    latch.upload_plugin("bench-echo").await;
    latch.upload_plugin("order-payment").await;
    for (module, input, what) in [
        ("bench-echo", json!({ "history": 100 }), "40 events"),
        ("misbehave", json!({ "do": "many-webhooks" }), "5 webhooks"),
        ("misbehave", json!({ "do": "many-timers" }), "6 timers"),
        ("misbehave", json!({ "do": "log-spam" }), "bytes"),
        ("misbehave", json!({ "do": "huge-log", "mib": 2 }), "bytes"),
    ] {
        let id = latch.start_run(module, input.clone()).await;
        let run = latch.wait_for(&id, "failed").await;
        assert_eq!(run["error"]["code"], "quota-exceeded", "{run}");
        assert!(run["error"]["message"].as_str().is_some_and(|m| m.contains(what)), "{run}");
        // Nothing past the quota was kept: not even one event larger than what was left.
        let kept = serde_json::to_vec(&latch.events(&id).await).map_or(0, |events| events.len());
        assert!(kept < 1 << 20, "{module} {input}: {kept} bytes of log kept past a 1 MiB quota");
    }
    let (id, url) = waiting_order(&latch).await;
    send(latch.http.post(&url).json(&json!({ "paid": 1 }))).await;
    latch.wait_for(&id, "completed").await;
}

/// A `payment-ledger` run busy with a slow event for `ms` (it took it and sleeps, its
/// caller held for the answer): what comes next waits in its inbox. `(run id, URL, the slow
/// event's caller)`.
pub(crate) async fn ledger_busy(latch: &Latch, ms: u64) -> (String, String, tokio::task::JoinHandle<(StatusCode, serde_json::Value)>) {
    latch.upload_plugin("payment-ledger").await;
    let id = latch.start_run("payment-ledger", json!({ "order_id": "o-1", "answer_within_ms": 60_000 })).await;
    let url = latch.waiting_url(&id).await;
    let slow = tokio::spawn(send(latch.http.post(&url).json(&json!({ "type": "slow", "ms": ms }))));
    listed(latch, &id, "delivered", 1).await;
    (id, url, slow)
}

/// Polls a run's calls until `count` of them are in `state`.
pub(crate) async fn listed(latch: &Latch, id: &str, state: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, listed) = latch.get(&format!("/v1/runs/{id}/requests")).await;
        let requests = listed["requests"].as_array().cloned().unwrap_or_default();
        if requests.iter().filter(|r| r["state"] == state).count() >= count {
            return;
        }
        assert!(Instant::now() < deadline, "never {count} {state}: {listed}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A wait that takes a call ends even when the call's size takes the log past its quota:
/// the call was claimed from the inbox, and must not be left there by a failed run.
#[tokio::test]
async fn a_call_larger_than_the_log_left_is_still_taken() {
    let latch = start_with(&["--max-run-log-mib", "2"]).await;
    latch.upload_plugin("blink-callback").await;
    let id = latch.start_run("blink-callback", json!({ "auth": "none", "calls": 3 })).await;
    let url = latch.waiting_url(&id).await;
    for n in 0..3 {
        let body = json!({ "n": n, "pad": "x".repeat(900_000) });
        assert_eq!(send(latch.http.post(&url).json(&body)).await.0, StatusCode::ACCEPTED, "call {n}");
    }
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["output"]["calls"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn a_full_inbox_refuses_calls_with_429() {
    let latch = start_with(&["--max-queued-calls", "2", "--take-timeout-ms", "60000"]).await;
    // The next two wait in the busy run's inbox.
    let (id, url, _slow) = ledger_busy(&latch, 8000).await;
    let waiting: Vec<_> =
        (0..2).map(|_| tokio::spawn(send(latch.http.post(&url).json(&json!({ "type": "payment.created" }))))).collect();
    listed(&latch, &id, "queued", 2).await;
    let (status, body) = send(latch.http.post(&url).json(&json!({ "type": "payment.created" }))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::TOO_MANY_REQUESTS, "run-inbox-full"), "{body}");
    for caller in waiting {
        assert_eq!(caller.await.expect("caller").0, StatusCode::OK, "the queued calls are taken");
    }
}

/// A held call its run does not take within `--take-timeout-ms` is withdrawn: `503
/// not-taken` with `Retry-After`, listed `not-taken`, never delivered later.
#[tokio::test]
async fn a_held_call_not_taken_in_time_is_503_with_retry_after_and_never_delivered() {
    let latch = start_with(&["--take-timeout-ms", "500"]).await;
    latch.upload_plugin("order-approval").await;
    let payments = latch.new_key("psp", &["payments"]).await;
    let id = latch.start_run("order-approval", json!({ "order_id": "o-1" })).await;
    latch.wait_for(&id, "waiting").await;
    // Held: the run waits at `payment-confirmed`, not at `payment-verified`.
    let verified = format!("{}/t/order-approval/payment-verified?execution={id}", latch.base);
    let call = latch.http.post(&verified).bearer_auth(&payments).json(&json!({ "status": "confirmed" }));
    let answer = call.send().await.expect("answered");
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let body: serde_json::Value = answer.json().await.expect("a JSON error");
    assert_eq!(error_code(&body), "not-taken", "{body}");
    listed(&latch, &id, "not-taken", 1).await;
    let (_, requests) = latch.get(&format!("/v1/runs/{id}/requests")).await;
    assert!(!requests["requests"].as_array().expect("requests").iter().any(|r| r["state"] == "queued"), "{requests}");
    // The run goes on; the withdrawn call never reaches it.
    let confirmed = format!("{}/t/order-approval/payment-confirmed?execution={id}", latch.base);
    assert_eq!(send(latch.http.post(confirmed).json(&json!({ "via": "confirmed" }))).await.0, StatusCode::OK);
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!(run["output"]["payment"], json!({ "via": "confirmed" }), "{run}");
}

/// A body may take longer than `--body-timeout-ms` while it keeps arriving faster than
/// 64 KiB/s; a head of 30 KiB or of 100 lines is read, one larger than 64 KiB or of 101 lines
/// is refused with 431.
#[tokio::test]
async fn a_steady_body_outlasts_the_timeout_and_a_huge_head_is_431() {
    let latch = start_with(&["--body-timeout-ms", "500"]).await;
    latch.upload_plugin("order-payment").await;
    let (id, url) = waiting_order(&latch).await;
    let target = url.trim_start_matches(&latch.base).to_string();
    let body = format!("{{\"paid\": 1, \"pad\": \"{}\"}}", "x".repeat(300_000));
    let mut stream = TcpStream::connect(address(&latch)).await.expect("connects");
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: latch\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("sent");
    // About 250 kB/s over 1.2 s: past the 500 ms timeout, yet faster than 64 KiB/s.
    let began = Instant::now();
    for chunk in body.as_bytes().chunks(50_000) {
        stream.write_all(chunk).await.expect("sent");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(began.elapsed() > Duration::from_millis(1000));
    let answer = until_closed(&mut stream, Duration::from_secs(10)).await.expect("answered");
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert_eq!(latch.wait_for(&id, "completed").await["output"]["payment"]["paid"], 1);

    for (pad, status) in [(30_000, "HTTP/1.1 200"), (70_000, "HTTP/1.1 431")] {
        assert!(head_answer(&latch, pad).await.starts_with(status), "a head of {pad} bytes");
    }
    for (lines, status) in [(100, "HTTP/1.1 200"), (101, "HTTP/1.1 431")] {
        assert!(head_lines_answer(&latch, lines).await.starts_with(status), "a head of {lines} header lines");
    }
    // Both bounds are the operator's: a stricter rate refuses the same body, a smaller
    // head buffer the same head.
    let strict = start_with(&["--body-timeout-ms", "500", "--min-body-rate-kib", "1024", "--max-head-kib", "8"]).await;
    strict.upload_plugin("order-payment").await;
    let (_, url) = waiting_order(&strict).await;
    let target = url.trim_start_matches(&strict.base).to_string();
    let mut stream = TcpStream::connect(address(&strict)).await.expect("connects");
    let head = format!("POST {target} HTTP/1.1\r\nHost: latch\r\nContent-Length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await.expect("sent");
    for chunk in body.as_bytes().chunks(50_000) {
        if stream.write_all(chunk).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let answer = until_closed(&mut stream, Duration::from_secs(10)).await.expect("answered");
    assert!(answer.starts_with("HTTP/1.1 408") && answer.contains("body-timeout"), "{answer}");
    assert!(head_answer(&strict, 30_000).await.starts_with("HTTP/1.1 431"));
}

/// The answer to a `GET /healthz` whose head carries `pad` bytes more.
async fn head_answer(latch: &Latch, pad: usize) -> String {
    let mut stream = TcpStream::connect(address(latch)).await.expect("connects");
    let head = format!("GET /healthz HTTP/1.1\r\nHost: latch\r\nConnection: close\r\nX-Pad: {}\r\n\r\n", "x".repeat(pad));
    let _ = stream.write_all(head.as_bytes()).await;
    until_closed(&mut stream, Duration::from_secs(5)).await.expect("answered and closed")
}

/// The answer to a small head of `lines` header lines, `Host` and `Connection` among them.
async fn head_lines_answer(latch: &Latch, lines: usize) -> String {
    let mut stream = TcpStream::connect(address(latch)).await.expect("connects");
    let padding: String = (2..lines).map(|n| format!("X-Pad-{n}: x\r\n")).collect();
    let head = format!("GET /healthz HTTP/1.1\r\nHost: latch\r\nConnection: close\r\n{padding}\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    until_closed(&mut stream, Duration::from_secs(5)).await.expect("answered and closed")
}

/// A run's inbox is bounded in bytes as well as in calls, and the server in callers it holds.
#[tokio::test]
async fn queued_bytes_and_held_callers_are_capped() {
    // 1 MiB of waiting calls: two of 600 kB are queued (the quota is checked before each),
    // the third is refused. Two held callers: the slow call's and one more.
    for (flags, refused, fit) in [
        (["--max-queued-mib", "1", "--max-held-calls", "100"], "run-inbox-full", 2),
        (["--max-queued-mib", "64", "--max-held-calls", "2"], "overloaded", 1),
    ] {
        let mut args = vec!["--take-timeout-ms", "60000"];
        args.extend(flags);
        let latch = start_with(&args).await;
        let (id, url, _slow) = ledger_busy(&latch, 6000).await;
        let big = json!({ "type": "payment.created", "pad": "x".repeat(600_000) });
        let mut accepted = Vec::new();
        let answer = loop {
            let caller = tokio::spawn(send(latch.http.post(&url).json(&big)));
            let deadline = Instant::now() + Duration::from_secs(10);
            let queued = loop {
                let (_, listed) = latch.get(&format!("/v1/runs/{id}/requests")).await;
                let queued = listed["requests"].as_array().map_or(0, |r| r.iter().filter(|r| r["state"] == "queued").count());
                if queued > accepted.len() || caller.is_finished() || Instant::now() > deadline {
                    break queued > accepted.len();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            if !queued {
                break caller.await.expect("caller");
            }
            accepted.push(caller);
            assert!(accepted.len() <= fit, "{flags:?}: more callers kept than the cap allows");
        };
        assert_eq!((answer.0, error_code(&answer.1)), (StatusCode::TOO_MANY_REQUESTS, refused), "{flags:?}");
        assert_eq!(accepted.len(), fit, "{flags:?}: what fits under the cap is kept");
        for caller in accepted {
            assert_eq!(caller.await.expect("caller").0, StatusCode::OK, "{flags:?}: the queued calls are taken");
        }
    }
}

/// A call's body counts against the budget for bodies as read and as parsed until it is
/// written to its run's inbox; a held caller keeps nothing of it. With room for one large
/// call at a time, large calls held one after another for a busy run are all queued (each
/// gave its share back once written), and all taken; one that alone would take more than
/// the budget is a 413.
#[tokio::test]
async fn callers_bodies_count_against_the_budget_until_written_and_held_callers_keep_none() {
    let args = ["--max-body-buffer-mib", "16", "--max-body-bytes", "8000000", "--take-timeout-ms", "60000"];
    let latch = start_with(&args).await;
    let (id, url, _slow) = ledger_busy(&latch, 6000).await;
    // 500 kB of text, about 8.5 MiB parsed: one fits in 16 MiB, two do not.
    let body = format!(r#"{{"type":"payment.created","zeros":[{}0]}}"#, "0,".repeat(250_000));
    let mut held = Vec::new();
    for n in 1..=3 {
        let request = latch.http.post(&url).header("content-type", "application/json").body(body.clone());
        held.push(tokio::spawn(send(request)));
        listed(&latch, &id, "queued", n).await;
    }
    for caller in held {
        assert_eq!(caller.await.expect("caller").0, StatusCode::OK, "each held call is taken");
    }
    // A body that alone would take more than the whole budget (4.4 MB of text, over 64 MiB
    // parsed) never fits: a 413, not a 429 to retry.
    let huge = format!(r#"{{"type":"payment.created","zeros":[{}0]}}"#, "0,".repeat(2_200_000));
    let (status, answer) = send(latch.http.post(&url).header("content-type", "application/json").body(huge)).await;
    assert_eq!((status, error_code(&answer)), (StatusCode::PAYLOAD_TOO_LARGE, "body-too-large"), "{answer}");
}

/// A call to `all` the runs at a trigger is one value in memory, however many runs it is
/// handed to (each run's record of it shares it).
#[tokio::test]
async fn a_call_to_all_runs_is_held_once_not_once_a_run() {
    let args = ["--max-active-runs", "1", "--cpu-budget-ms", "6000", "--take-timeout-ms", "3000"];
    let latch = start_with(&args).await;
    latch.upload_plugin("order-approval").await;
    latch.upload_plugin("misbehave").await;
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(latch.start_run("order-approval", json!({ "order_id": format!("o-{n}") })).await);
    }
    for id in &ids {
        latch.wait_for(id, "waiting").await;
    }
    // The one slot is busy: the call is handed to all 40 runs, and its caller held.
    let spinning = latch.start_run("misbehave", json!({ "do": "spin" })).await;
    latch.wait_for(&spinning, "running").await;
    let base = rss_mib(&latch);
    // 500 kB of text, about 8.5 MiB parsed: 40 copies would be 340 MiB.
    let body = format!(r#"{{"zeros":[{}0]}}"#, "0,".repeat(250_000));
    let url = format!("{}/t/order-approval/payment-confirmed?execution=all", latch.base);
    let call = tokio::spawn(send(latch.http.post(&url).header("content-type", "application/json").body(body)));
    let mut peak = 0;
    while !call.is_finished() {
        peak = peak.max(rss_mib(&latch));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, answer) = call.await.expect("caller");
    assert_eq!((status, error_code(&answer)), (StatusCode::SERVICE_UNAVAILABLE, "not-taken"), "{answer}");
    assert!(peak < base + 150, "peak RSS {peak} MiB over {base} MiB while the call was held for 40 runs");
    // Withdrawn from every run: they all wait still, and take the next call.
    latch.wait_for(&spinning, "failed").await;
    let (status, answer) = send(latch.http.post(&url).json(&json!({ "paid": 1 }))).await;
    assert_eq!((status, answer["resumed"].clone()), (StatusCode::OK, json!(40)), "{answer}");
}

#[tokio::test]
async fn a_guest_sleeping_in_wasi_poll_obeys_its_cpu_budget_and_cancellation() {
    let latch = start_with(&["--cpu-budget-ms", "1000"]).await;
    latch.upload_plugin("misbehave").await;
    let began = Instant::now();
    let id = latch.start_run("misbehave", json!({ "do": "wasi-sleep" })).await;
    assert_eq!(latch.wait_for(&id, "failed").await["error"]["code"], "cpu-limit");
    assert!(began.elapsed() < Duration::from_secs(10), "it slept {:?}", began.elapsed());

    let latch = start_with(&["--cpu-budget-ms", "600000"]).await;
    latch.upload_plugin("misbehave").await;
    let id = latch.start_run("misbehave", json!({ "do": "wasi-sleep" })).await;
    latch.wait_for(&id, "running").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancel = latch.http.post(format!("{}/v1/runs/{id}/cancel", latch.base)).bearer_auth(ADMIN_KEY);
    let (status, body) = send(cancel).await;
    assert_eq!((status, body["status"].clone()), (StatusCode::OK, json!("cancelled")), "{body}");
}

/// A run of async-verification submitting to `vendor_url`, and how it ended.
async fn submission(latch: &Latch, vendor_url: &str) -> serde_json::Value {
    let input = json!({ "document_id": "d-1", "vendor_url": vendor_url, "deadline_ms": 60_000 });
    let id = latch.start_run("async-verification", input).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = latch.run(&id).await;
        if run["status"] == "failed" || run["status"] == "waiting" {
            return run;
        }
        assert!(Instant::now() < deadline, "{run}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn runs_reach_internal_addresses_and_other_ports_only_when_named() {
    let vendor = Vendor::start(Behaviour::Silent).await;
    let port = vendor.url.split(':').nth(2).and_then(|p| p.split('/').next()).expect("port").to_string();
    let wildcard = start_with(&["--allow-http", "*", "--allow-http", "*:*"]).await;
    wildcard.upload_plugin("async-verification").await;
    for url in [
        vendor.url.clone(),
        format!("http://localhost:{port}/api"),
        "http://169.254.169.254/latest/meta-data".to_string(),
        format!("http://[::ffff:127.0.0.1]:{port}/api"),
        "http://0x7f.1/api".to_string(),
    ] {
        let run = submission(&wildcard, &url).await;
        assert_eq!(run["error"]["code"], "host-not-allowed", "{url}: {run}");
    }
    assert!(vendor.received().is_empty());

    let named = start_with(&["--allow-http", &format!("127.0.0.1:{port}")]).await;
    named.upload_plugin("async-verification").await;
    assert_eq!(submission(&named, &vendor.url).await["status"], "waiting", "the named address and port");
    assert_eq!(vendor.received().len(), 1);
    let other_port = format!("http://127.0.0.1:{}/api", port.parse::<u16>().expect("port") ^ 1);
    assert_eq!(submission(&named, &other_port).await["error"]["code"], "host-not-allowed");
}

/// No proxy from the environment: with every proxy variable naming a listener (and none
/// bypassed), a run's call still goes straight to its host, and the listener sees nothing.
#[tokio::test]
async fn outbound_calls_use_no_proxy_from_the_environment() {
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let proxy_url = format!("http://{}", proxy.local_addr().expect("address"));
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while proxy.accept().await.is_ok() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let vendor = Vendor::start(Behaviour::Silent).await;
    let proxy_url = proxy_url.as_str();
    let mut env: Vec<(&str, &str)> = ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        .into_iter()
        .map(|name| (name, proxy_url))
        .collect();
    env.extend([("NO_PROXY", ""), ("no_proxy", "")]);
    let latch = crate::harness::start_with_env(&["--allow-http", "127.0.0.1:*"], &env).await;
    latch.upload_plugin("async-verification").await;
    let run = submission(&latch, &vendor.url).await;
    assert_eq!(run["status"], "waiting", "{run}");
    assert_eq!(vendor.received().len(), 1, "the call went straight to its host");
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 0, "the proxy saw no connection");
}

#[tokio::test]
async fn outbound_calls_follow_no_redirect_and_a_cancellation_ends_one_in_flight() {
    let elsewhere = Vendor::start(Behaviour::Silent).await;
    let redirecting = Vendor::start(Behaviour::Redirect(elsewhere.url.clone())).await;
    let hanging = Vendor::start(Behaviour::Hang).await;
    let latch = start_with(&["--allow-http", "127.0.0.1:*"]).await;
    latch.upload_plugin("async-verification").await;
    let run = submission(&latch, &redirecting.url).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["error"]["message"].as_str().is_some_and(|m| m.contains("307")), "the step saw the 307: {run}");
    assert_eq!((redirecting.received().len(), elsewhere.received().len()), (1, 0), "the redirect was not followed");

    let input = json!({ "document_id": "d-2", "vendor_url": hanging.url, "deadline_ms": 60_000 });
    let id = latch.start_run("async-verification", input).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while hanging.received().is_empty() {
        assert!(Instant::now() < deadline, "the call never reached the vendor");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let began = Instant::now();
    let cancel = latch.http.post(format!("{}/v1/runs/{id}/cancel", latch.base)).bearer_auth(ADMIN_KEY);
    assert!(send(cancel).await.0.is_success());
    latch.wait_for(&id, "cancelled").await;
    assert!(began.elapsed() < Duration::from_secs(10), "the call in flight held the run {:?}", began.elapsed());
}

/// An outbound call that gets no answer ends at `--max-outbound-seconds`, below the 30 s a
/// call takes by default, as `timeout`.
#[tokio::test]
async fn an_outbound_call_past_its_time_is_a_timeout() {
    let hanging = Vendor::start(Behaviour::Hang).await;
    let latch = start_with(&["--allow-http", "127.0.0.1:*", "--max-outbound-seconds", "1"]).await;
    latch.upload_plugin("async-verification").await;
    let input = json!({ "document_id": "d-1", "vendor_url": hanging.url, "deadline_ms": 60_000 });
    let began = Instant::now();
    let id = latch.start_run("async-verification", input).await;
    // Retried as a step is, then failed.
    let run = latch.wait_for(&id, "failed").await;
    assert_eq!(run["error"]["code"], "timeout", "{run}");
    assert!(began.elapsed() < Duration::from_secs(25), "each attempt ended at 1 s: {:?}", began.elapsed());
}

/// An outbound answer larger than `--max-outbound-answer-mib` fails the call as `too-large`.
#[tokio::test]
async fn an_outbound_answer_past_its_limit_is_refused() {
    let large = Vendor::start(Behaviour::Large(2 << 20)).await;
    for (limit, refused) in [("1", true), ("3", false)] {
        let latch = start_with(&["--allow-http", "127.0.0.1:*", "--max-outbound-answer-mib", limit]).await;
        latch.upload_plugin("async-verification").await;
        let input = json!({ "document_id": "d-1", "vendor_url": large.url, "deadline_ms": 60_000 });
        let id = latch.start_run("async-verification", input).await;
        if refused {
            // Retried as a step is, then failed.
            let run = latch.wait_for(&id, "failed").await;
            assert_eq!(run["error"]["code"], "too-large", "{run}");
            assert!(run["error"]["message"].as_str().is_some_and(|m| m.contains("over 1048576 bytes")), "{run}");
        } else {
            // Taken: the run goes on to wait for the vendor's callback.
            let url = latch.waiting_url(&id).await;
            assert!(url.contains("/hooks/"), "a 2 MiB answer under a 3 MiB limit: {url}");
        }
    }
}

fn size_of(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| match entry.metadata() {
                    Ok(meta) if meta.is_dir() => size_of(&entry.path()),
                    Ok(meta) => meta.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn ended_runs_are_deleted_after_their_retention_and_the_data_dir_shrinks() {
    // On PostgreSQL the deletions are checked; the files' size is sled's (PostgreSQL's own
    // vacuum gives space back).
    let on_sled = !crate::harness::on_postgres();
    let mut latch = start_with(&["--retain", "3s"]).await;
    latch.upload_plugin("blink-callback").await;
    // A run that goes on across the compaction, with calls taken before it.
    let waiting = latch.start_run("blink-callback", json!({ "auth": "none", "calls": 3 })).await;
    let waiting_url = latch.waiting_url(&waiting).await;
    for n in 0..2 {
        assert_eq!(send(latch.http.post(&waiting_url).json(&json!({ "before": n }))).await.0, StatusCode::ACCEPTED);
    }
    let mut ended = Vec::new();
    let mut retries = Vec::new();
    for _ in 0..2 {
        let id = latch.start_run("blink-callback", json!({ "auth": "none", "calls": 20 })).await;
        let url = latch.waiting_url(&id).await;
        // A sender's message, to be retried once its run is gone.
        let message = || latch.http.post(&url).header("Idempotency-Key", "m-1").json(&json!({ "n": "m" }));
        let first = send(message()).await;
        assert_eq!(first.0, StatusCode::ACCEPTED);
        retries.push(message());
        for n in 0..19 {
            let body = json!({ "n": n, "pad": "x".repeat(900_000) });
            assert_eq!(send(latch.http.post(&url).json(&body)).await.0, StatusCode::ACCEPTED);
        }
        latch.wait_for(&id, "completed").await;
        ended.push(id);
    }
    let full = size_of(&latch.data_dir().join("sled"));
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in &ended {
        loop {
            let (status, _) = latch.get(&format!("/v1/runs/{id}")).await;
            if status == StatusCode::NOT_FOUND {
                for what in ["events", "requests"] {
                    let (status, _) = latch.get(&format!("/v1/runs/{id}/{what}")).await;
                    assert_eq!(status, StatusCode::NOT_FOUND, "{id}'s {what} outlived it");
                }
                break;
            }
            assert!(Instant::now() < deadline, "run {id} outlived its retention");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // A sender's retry that comes after the run was deleted finds nothing to deliver to.
    for retry in retries {
        let (status, body) = send(retry).await;
        assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "unknown-webhook"), "{body}");
    }
    // The space is given back at the next start; a run still waiting is untouched.
    latch.restart().await;
    if on_sled {
        let shrunk = size_of(&latch.data_dir().join("sled"));
        assert!(shrunk < full / 2, "{shrunk} bytes of {full}");
    }
    assert_eq!(latch.run(&waiting).await["status"], "waiting");
    let (status, _) = send(latch.http.post(latch.rebase(&waiting_url)).json(&json!({ "after": true }))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    latch.wait_for(&waiting, "completed").await;
    // Request ids go on rising across the compaction: the new call is numbered after the old.
    let (_, listed) = latch.get(&format!("/v1/runs/{waiting}/requests")).await;
    let ids: Vec<u64> = listed["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter_map(|r| r["id"].as_str()?.strip_prefix("rq-")?.parse().ok())
        .collect();
    assert_eq!(ids.len(), 3, "{listed}");
    assert!(ids[2] > ids[0].max(ids[1]), "{ids:?}");
}

/// Starts a `misbehave` run, retrying while the server answers 429 (for up to 5 s).
async fn start_when_admitted(latch: &Latch, input: serde_json::Value) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let request = latch.http.post(format!("{}/v1/modules/misbehave/runs", latch.base)).bearer_auth(ADMIN_KEY);
        let (status, body) = send(request.json(&input)).await;
        if status == StatusCode::CREATED {
            return body["id"].as_str().expect("run id").to_string();
        }
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert!(tokio::time::Instant::now() < deadline, "never admitted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
