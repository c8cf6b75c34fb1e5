//! Moving waiting runs to another version of their module, checked by replay
//! (`POST /v1/modules/{name}/upgrade`), with the four versions of `order-discount`:
//! 1 the original, 2 a compatible fix, 3 a divergent change, 4 that change behind `patched`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{ADMIN_KEY, Latch, error_code, send, start, start_with};

/// Uploads version `n` of `order-discount`; returns its version id.
async fn upload_version(latch: &Latch, n: u32) -> String {
    let (status, body) = latch.upload("order-discount", latch_testkit::plugin(&format!("order-discount-v{n}"))).await;
    assert!(status.is_success(), "{status} {body}");
    body["version"]["version"].as_str().or(body["version"].as_str()).expect("a version").to_string()
}

/// `POST /v1/modules/order-discount/upgrade`: the status, and the lines of its answer.
async fn upgrade(latch: &Latch, request: Value) -> (StatusCode, Vec<Value>) {
    let url = format!("{}/v1/modules/order-discount/upgrade", latch.base);
    let response = latch.http.post(url).bearer_auth(ADMIN_KEY).json(&request).send().await.expect("answered");
    let status = response.status();
    let text = response.text().await.expect("text");
    (status, text.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect())
}

/// The one run's line of an upgrade's answer, and its summary.
async fn upgrade_one(latch: &Latch, id: &str, to: &str, dry_run: bool) -> Value {
    let (status, lines) = upgrade(latch, json!({ "to": to, "runs": [id], "dry_run": dry_run })).await;
    assert_eq!(status, StatusCode::OK, "{lines:?}");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["run"], id);
    assert!(lines[1]["summary"].is_object(), "{lines:?}");
    lines[0].clone()
}

async fn waiting_run(latch: &Latch, input: Value) -> String {
    let id = latch.start_run("order-discount", input).await;
    latch.wait_for(&id, "waiting").await;
    id
}

#[tokio::test]
async fn a_waiting_run_moved_to_a_compatible_fix_completes_with_the_new_behaviour() {
    let latch = start().await;
    let v1 = upload_version(&latch, 1).await;
    let id = waiting_run(&latch, json!({ "order_id": "o-1", "amount": 200.0, "discount_percent": 10.0 })).await;
    let url = latch.waiting_url(&id).await;
    let v2 = upload_version(&latch, 2).await;

    // The dry run replays the log on version 2 and changes nothing.
    let before = latch.events(&id).await;
    let checked = upgrade_one(&latch, &id, &v2, true).await;
    assert_eq!((checked["result"].as_str(), checked["from"].as_str()), (Some("compatible"), Some(v1.as_str())));
    assert_eq!(latch.events(&id).await, before, "a dry run records nothing");
    assert_eq!(latch.run(&id).await["version"], v1);

    let moved = upgrade_one(&latch, &id, &v2, false).await;
    assert_eq!(moved["result"], "upgraded", "{moved}");
    assert_eq!(latch.run(&id).await["version"], v2);
    let note = latch.events(&id).await.into_iter().find(|e| e["type"] == "upgraded").expect("an upgraded event");
    assert_eq!((note["from"].as_str(), note["to"].as_str()), (Some(v1.as_str()), Some(v2.as_str())));

    // Its webhook is the same; the new code takes the call.
    let (status, _) = send(latch.http.post(&url).json(&json!({ "approved": true }))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let run = latch.wait_for(&id, "completed").await;
    assert_eq!((run["output"]["version"].as_u64(), run["output"]["total"].as_f64()), (Some(2), Some(180.0)));

    // Moving back works the same way (a run that has ended is not moved).
    let id = waiting_run(&latch, json!({ "order_id": "o-2", "amount": 50.0 })).await;
    assert_eq!(latch.run(&id).await["version"], v2, "a new run starts on the newest version");
    assert_eq!(upgrade_one(&latch, &id, &v1, false).await["result"], "upgraded");
    assert_eq!(upgrade_one(&latch, &id, &v2, false).await["result"], "upgraded");
    assert_eq!(upgrade_one(&latch, &id, &v1, false).await["result"], "upgraded");
    assert_eq!(latch.run(&id).await["version"], v1);
    let ended = upgrade_one(&latch, run["id"].as_str().expect("id"), &v1, false).await;
    assert_eq!(ended["result"], "skipped", "{ended}");
}

#[tokio::test]
async fn a_divergent_version_is_refused_with_the_first_event_where_it_differs() {
    let latch = start().await;
    let v1 = upload_version(&latch, 1).await;
    let id = waiting_run(&latch, json!({ "order_id": "o-3", "amount": 10.0 })).await;
    let at_trigger = waiting_run(&latch, json!({ "order_id": "o-t", "amount": 1.0, "wait": "trigger" })).await;
    let v3 = upload_version(&latch, 3).await;
    for dry_run in [true, false] {
        let refused = upgrade_one(&latch, &id, &v3, dry_run).await;
        assert_eq!(refused["result"], "diverges", "{refused}");
        // Event 0 is `started`; version 1 created its webhook next, where version 3 asks the time.
        assert_eq!(
            refused["divergence"],
            json!({ "seq": 1, "recorded": "webhook-created", "asked": "a `now` call" }),
            "{refused}"
        );
    }
    assert_eq!(latch.run(&id).await["version"], v1, "a run never moves onto code that leaves its log");

    // Waiting at a named trigger the new version no longer declares: no call could reach it.
    let v4 = upload_version(&latch, 4).await;
    let refused = upgrade_one(&latch, &at_trigger, &v4, true).await;
    assert_eq!(refused["result"], "diverges", "{refused}");
    assert_eq!(refused["divergence"]["recorded"], "wait-started", "{refused}");
    assert!(refused["divergence"]["asked"].as_str().unwrap_or_default().contains("does not declare"), "{refused}");
    let url = latch.waiting_url(&id).await;
    send(latch.http.post(&url).json(&json!({}))).await;
    assert_eq!(latch.wait_for(&id, "completed").await["output"]["version"], 1);
}

#[tokio::test]
async fn patched_makes_a_divergent_change_replay_the_old_path_for_old_runs_and_the_new_for_new_ones() {
    // No instance is kept between activations: every step below replays the log.
    let latch = start_with(&["--hot-hold-ms", "0"]).await;
    upload_version(&latch, 1).await;
    let old = waiting_run(&latch, json!({ "order_id": "o-old", "amount": 10.0 })).await;
    let v4 = upload_version(&latch, 4).await;
    assert_eq!(upgrade_one(&latch, &old, &v4, false).await["result"], "upgraded");
    let fresh = waiting_run(&latch, json!({ "order_id": "o-new", "amount": 10.0 })).await;
    assert_eq!(latch.run(&fresh).await["version"], v4, "new runs start on the newest version");
    for id in [&old, &fresh] {
        let url = latch.waiting_url(id).await;
        send(latch.http.post(&url).json(&json!({}))).await;
    }
    let old_run = latch.wait_for(&old, "completed").await;
    let new_run = latch.wait_for(&fresh, "completed").await;
    assert_eq!((old_run["output"]["version"].as_u64(), old_run["output"]["stamped"].as_bool()), (Some(4), Some(false)));
    assert_eq!((new_run["output"]["version"].as_u64(), new_run["output"]["stamped"].as_bool()), (Some(4), Some(true)));
    let patched = |events: Vec<Value>| events.iter().filter(|e| e["type"] == "patched").count();
    assert_eq!(patched(latch.events(&fresh).await), 1, "the new run recorded its path once");
    assert_eq!(patched(latch.events(&old).await), 0);
}

#[tokio::test]
async fn patched_works_the_same_in_python_and_javascript() {
    let latch = start_with(&["--hot-hold-ms", "0"]).await;
    for language in ["py", "js"] {
        let module = format!("patch-demo-{language}");
        let upload = |n: u32| {
            let bytes = latch_testkit::plugin(&format!("patch-demo-{language}-v{n}"));
            let module = module.clone();
            let latch = &latch;
            async move {
                let (status, body) = latch.upload(&module, bytes).await;
                assert!(status.is_success(), "{status} {body}");
                body["version"]["version"].as_str().or(body["version"].as_str()).expect("version").to_string()
            }
        };
        upload(1).await;
        let old = latch.start_run(&module, json!({})).await;
        let old_url = latch.waiting_url(&old).await;
        let v2 = upload(2).await;
        let url = format!("{}/v1/modules/{module}/upgrade", latch.base);
        let request = latch.http.post(&url).bearer_auth(ADMIN_KEY).json(&json!({ "to": v2, "runs": [old] }));
        let answer = request.send().await.expect("answered").text().await.expect("text");
        assert!(answer.contains(r#""result":"upgraded""#), "{language}: {answer}");
        let fresh = latch.start_run(&module, json!({})).await;
        let fresh_url = latch.waiting_url(&fresh).await;
        for url in [&old_url, &fresh_url] {
            send(latch.http.post(url).json(&json!({ "n": 1 }))).await;
        }
        let old = latch.wait_for(&old, "completed").await;
        let fresh = latch.wait_for(&fresh, "completed").await;
        assert_eq!((old["output"]["version"].as_u64(), old["output"]["stamped"].as_bool()), (Some(2), Some(false)), "{language}");
        assert_eq!((fresh["output"]["version"].as_u64(), fresh["output"]["stamped"].as_bool()), (Some(2), Some(true)), "{language}");
    }
}

#[tokio::test]
async fn an_upgrade_is_refused_clearly_for_an_unknown_version_another_modules_or_a_bad_request() {
    let latch = start().await;
    let own = upload_version(&latch, 1).await;
    latch.upload_plugin("order-payment").await;
    let (_, module) = latch.get("/v1/modules/order-payment").await;
    let other = module["versions"][0]["version"].as_str().expect("a version").to_string();
    let url = format!("{}/v1/modules/order-discount/upgrade", latch.base);
    let post = |body: Value| send(latch.http.post(&url).bearer_auth(ADMIN_KEY).json(&body));
    let (status, body) = post(json!({ "to": other, "runs": "all-waiting" })).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "version-of-another-module"), "{body}");
    let (status, body) = post(json!({ "to": "0".repeat(64), "runs": "all-waiting" })).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "unknown-version"), "{body}");
    // A version is named by its id or a start of it of 8 characters or more.
    let (status, lines) = upgrade(&latch, json!({ "to": &own[..8], "runs": [], "dry_run": true })).await;
    assert_eq!(status, StatusCode::OK, "{lines:?}");
    let (status, body) = post(json!({ "to": &own[..7], "runs": [], "dry_run": true })).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "unknown-version"), "{body}");
    let (status, body) = post(json!({ "to": other, "runs": 7 })).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "bad-upgrade-request"), "{body}");
    let request = latch.http.post(format!("{}/v1/modules/nope/upgrade", latch.base)).bearer_auth(ADMIN_KEY);
    let (status, body) = send(request.json(&json!({ "to": other, "runs": [] }))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "unknown-module"), "{body}");
}

#[tokio::test]
async fn runs_waiting_on_a_timer_on_calls_to_come_and_with_a_caller_held_keep_them_across_the_move() {
    // Instances are let go of soon after each wait, so the move need not wait long.
    let latch = start_with(&["--hot-hold-ms", "200"]).await;
    upload_version(&latch, 1).await;
    let timer = json!({ "order_id": "t", "amount": 100.0, "discount_percent": 50.0, "wait": "timer", "ms": 4000 });
    let timer = waiting_run(&latch, timer).await;
    let calls = waiting_run(&latch, json!({ "order_id": "c", "amount": 100.0, "wait": "calls", "calls": 7 })).await;
    let held = json!({ "order_id": "h", "amount": 100.0, "discount_percent": 20.0, "wait": "held", "ms": 3000 });
    let held = waiting_run(&latch, held).await;
    let calls_url = latch.waiting_url(&calls).await;
    let held_url = latch.waiting_url(&held).await;
    for n in 0..3 {
        assert_eq!(send(latch.http.post(&calls_url).json(&json!({ "n": n }))).await.0, StatusCode::ACCEPTED);
    }
    // The held caller waits while its run sleeps before answering it.
    let caller = tokio::spawn(send(latch.http.post(&held_url).json(&json!({ "ask": "total" }))));
    tokio::time::sleep(Duration::from_millis(300)).await;
    latch.wait_for(&held, "waiting").await;
    let v2 = upload_version(&latch, 2).await;

    // Calls arrive while the runs are moved: each is kept for the run, whichever code takes it.
    let callers: Vec<_> =
        (3..6).map(|n| tokio::spawn(send(latch.http.post(&calls_url).json(&json!({ "n": n }))))).collect();
    // `all-waiting` is the runs waiting when it is asked: one taking a call just then is
    // moved by the next ask (the others are skipped, on that version already).
    let mut upgraded = 0;
    for _ in 0..50 {
        let (status, lines) = upgrade(&latch, json!({ "to": v2, "runs": "all-waiting" })).await;
        assert_eq!(status, StatusCode::OK);
        upgraded += lines.last().expect("summary")["summary"]["upgraded"].as_u64().expect("a count");
        if upgraded >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(upgraded, 3, "each run is moved once");
    for caller in callers {
        let (status, body) = caller.await.expect("caller");
        assert_eq!(status, StatusCode::ACCEPTED, "{body} {}", json!(latch.events(&calls).await));
    }
    assert_eq!(send(latch.http.post(&calls_url).json(&json!({ "n": 6 }))).await.0, StatusCode::ACCEPTED);

    let timer = latch.wait_for(&timer, "completed").await;
    assert_eq!((timer["output"]["version"].as_u64(), timer["output"]["total"].as_f64()), (Some(2), Some(50.0)));
    let calls = latch.wait_for(&calls, "completed").await;
    assert_eq!(calls["output"]["version"], 2);
    let taken: Vec<u64> =
        calls["output"]["approval"].as_array().expect("calls").iter().filter_map(|c| c["n"].as_u64()).collect();
    assert_eq!(taken.len(), 7, "every call taken once: {taken:?}");
    let (status, answer) = caller.await.expect("held caller");
    assert_eq!((status, answer), (StatusCode::OK, json!({ "version": 2, "total": 80.0 })));
    assert_eq!(latch.wait_for(&held, "completed").await["output"]["version"], 2);
}

#[tokio::test]
async fn an_upgrade_cut_by_sigkill_leaves_each_run_on_one_version_and_every_run_completes() {
    let mut latch = start().await;
    let v1 = upload_version(&latch, 1).await;
    let mut ids = Vec::new();
    for n in 0..200 {
        ids.push(latch.start_run("order-discount", json!({ "order_id": format!("k-{n}"), "amount": 10.0 })).await);
    }
    for id in &ids {
        latch.wait_for(id, "waiting").await;
    }
    let v2 = upload_version(&latch, 2).await;
    let url = format!("{}/v1/modules/order-discount/upgrade", latch.base);
    let request = latch.http.post(url).bearer_auth(ADMIN_KEY).json(&json!({ "to": v2, "runs": "all-waiting" }));
    let mut answer = request.send().await.expect("answered");
    // Killed once a few runs have moved.
    let mut seen = String::new();
    while seen.lines().count() < 5 {
        let chunk = answer.chunk().await.expect("a chunk").expect("more lines");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    latch.kill();
    latch.restart().await;

    let mut moved = 0;
    for id in &ids {
        let run = latch.run(id).await;
        let version = run["version"].as_str().expect("version").to_string();
        let notes: Vec<Value> = latch.events(id).await.into_iter().filter(|e| e["type"] == "upgraded").collect();
        match notes.last() {
            Some(note) => assert_eq!(note["to"], version, "the record and the log agree on {id}"),
            None => assert_eq!(version, v1, "{id} was not moved"),
        }
        moved += usize::from(version == v2);
        let url = latch.waiting_url(id).await;
        send(latch.http.post(&url).json(&json!({}))).await;
        let done = latch.wait_for(id, "completed").await;
        let expected = if version == v2 { 2 } else { 1 };
        assert_eq!(done["output"]["version"], expected, "{id} ran the code of the version it is on");
    }
    assert!((5..200).contains(&moved), "the kill came part way: {moved} of 200 moved");
}

#[tokio::test]
async fn upgrades_sent_at_once_move_each_run_once() {
    let latch = start().await;
    upload_version(&latch, 1).await;
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(waiting_run(&latch, json!({ "order_id": format!("c-{n}"), "amount": 1.0 })).await);
    }
    let v2 = upload_version(&latch, 2).await;
    let request = json!({ "to": v2, "runs": "all-waiting" });
    let answers = futures::future::join_all((0..4).map(|_| upgrade(&latch, request.clone()))).await;
    let moved: u64 = answers
        .iter()
        .map(|(status, lines)| {
            assert_eq!(*status, StatusCode::OK);
            lines.last().expect("summary")["summary"]["upgraded"].as_u64().expect("a count")
        })
        .sum();
    assert_eq!(moved, 20, "each run moved by one of the four: {answers:?}");
    for id in &ids {
        let notes = latch.events(id).await.into_iter().filter(|e| e["type"] == "upgraded").count();
        assert_eq!(notes, 1, "run {id}");
        assert_eq!(latch.run(id).await["version"], v2);
    }
}
