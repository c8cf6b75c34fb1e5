//! What every backend must do, tested the same way on each: the durability and recovery
//! rules of the module's doc, each multi-record write cut short where a crash could cut it.

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;

use serde_json::{Value, json};

use super::records::{
    ApiKeyRecord, Caller, Event, EventRecord, HookAuth, HookRecord, HookState, HttpResponse, IdempotencyRecord, Method,
    ModuleRecord, NotTakenReason, NotTakenRecord, OnAuthFailure, RequestRecord, ResponseMode, RunRecord, RunStatus,
    WaitOutcome, WebhookInfo,
};
use super::{Channel, Delivery, Inbox, Registry, RunLog, RunQuery, Storage, Store, StoreError, Timers, event_record};
use crate::ids::{KeyName, ModuleName, RunId, Token, TriggerName, WebhookId};

pub(super) const NOW: u64 = 1_000_000;

/// A fresh store of every backend: sled in its own directory, PostgreSQL in its own
/// database on the test process's throwaway server.
async fn backends() -> Vec<(Option<tempfile::TempDir>, Store)> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sled = Store::open(dir.path(), 8 << 20).expect("the store opens");
    let url = latch_testkit::postgres_database().await;
    let postgres = Store::connect(&url).await.expect("the database connects");
    vec![(Some(dir), sled), (None, postgres)]
}

pub(super) fn run_record(id: RunId) -> RunRecord {
    RunRecord {
        id,
        module: ModuleName::parse("orders").unwrap(),
        version: "v1".into(),
        status: RunStatus::Running,
        input: json!({}),
        output: None,
        error: None,
        created_at_ms: NOW,
        updated_at_ms: NOW,
        waiting_on: Vec::new(),
        wake_at_ms: None,
    }
}

pub(super) fn started() -> EventRecord {
    event_record(0, NOW, Event::Started { input: json!({}), start_ms: NOW, seed: 7, trigger: None })
}

async fn new_run<S: Storage>(store: &S) -> RunId {
    let id = RunId::new();
    store.create_run(&run_record(id), &started()).await.unwrap();
    id
}

pub(super) fn hook(run: RunId, number: u32, token: &str, single_use: bool) -> HookRecord {
    HookRecord {
        token: Token::parse(token).unwrap(),
        run_id: run,
        number,
        methods: vec![Method::Post],
        single_use,
        state: HookState::Open,
        auth: HookAuth::None,
        on_auth_failure: OnAuthFailure::Error,
        schema: None,
        condition: None,
        response: ResponseMode::Automatic {
            response: HttpResponse { status: 202, headers: vec![], body: String::new() },
        },
        expires_at_ms: None,
        chosen_token: false,
    }
}

pub(super) async fn request<S: Storage>(store: &S, data: Value) -> RequestRecord {
    RequestRecord {
        id: format!("rq-{}", store.next_id().await.unwrap()),
        webhook: "wh-1".into(),
        method: Method::Post,
        path: "/hooks/t".into(),
        query: Vec::new(),
        headers: Vec::new(),
        data: data.into(),
        caller: Caller::Anonymous,
        received_at_ms: NOW,
    }
}

/// The event that takes a claimed call into the run's log.
fn taking_event(seq: u64, request: &RequestRecord) -> EventRecord {
    let result = WaitOutcome::Request { request: Box::new(request.clone()) };
    event_record(seq, NOW, Event::WaitEnded { index: 0, result })
}

fn webhook(number: u32) -> Channel {
    Channel::Webhook(WebhookId(number))
}

#[tokio::test]
async fn a_run_is_its_record_and_its_log_and_a_creation_cut_short_is_removed() {
    for (_dir, store) in backends().await {
        let run = new_run(&store).await;
        assert_eq!(store.run(run).await.unwrap().unwrap().id, run);
        store.append(run, &[event_record(1, NOW, Event::Now { ms: NOW })]).await.unwrap();
        let (events, _) = store.events(run).await.unwrap();
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![0, 1]);

        // A record whose `started` event never made it: nobody was told of the run.
        let cut_short = RunId::new();
        store.put_run(&run_record(cut_short)).await.unwrap();
        store.repair_inbox(NOW).await.unwrap();
        assert!(store.run(cut_short).await.unwrap().is_none());
        assert!(store.run(run).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn of_two_calls_racing_for_a_single_use_webhook_one_is_accepted() {
    for (_dir, store) in backends().await {
        let run = new_run(&store).await;
        let hook = hook(run, 1, "tok-single", true);
        store.create_hook(&hook, NOW).await.unwrap();
        let (a, b) = (request(&store, json!(1)).await, request(&store, json!(2)).await);
        let (first, second) =
            tokio::join!(store.deliver(&hook, &a, false, NOW, &|| {}), store.deliver(&hook, &b, false, NOW, &|| {}));
        let accepted = [first.unwrap(), second.unwrap()].iter().filter(|d| matches!(d, Delivery::Accepted)).count();
        assert_eq!(accepted, 1);
        assert_eq!(store.queued(run).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn a_taken_single_use_call_leaves_a_mark_that_refuses_any_other() {
    for (_dir, store) in backends().await {
        let run = new_run(&store).await;
        let hook = hook(run, 1, "tok-mark", true);
        store.create_hook(&hook, NOW).await.unwrap();
        let call = request(&store, json!({"n": 1})).await;
        assert!(matches!(store.deliver(&hook, &call, false, NOW, &|| {}).await.unwrap(), Delivery::Accepted));
        let claimed = store.claim(run, &webhook(1)).await.unwrap().expect("the call is claimed");
        assert!(claimed.slot);
        store.append(run, &[taking_event(1, &call)]).await.unwrap();
        store.taken(run, &claimed).await.unwrap();
        assert!(store.queued(run).await.unwrap().is_empty());
        let again = request(&store, json!({"n": 2})).await;
        assert!(matches!(store.deliver(&hook, &again, false, NOW, &|| {}).await.unwrap(), Delivery::Gone));
    }
}

#[tokio::test]
async fn a_claimed_call_cannot_be_withdrawn_and_a_withdrawn_one_cannot_be_claimed() {
    for (_dir, store) in backends().await {
        let run = new_run(&store).await;
        let hook = hook(run, 1, "tok-withdraw", false);
        store.create_hook(&hook, NOW).await.unwrap();
        let (a, b) = (request(&store, json!("a")).await, request(&store, json!("b")).await);
        store.deliver(&hook, &a, true, NOW, &|| {}).await.unwrap();
        store.deliver(&hook, &b, true, NOW, &|| {}).await.unwrap();

        let claimed = store.claim(run, &webhook(1)).await.unwrap().unwrap();
        assert_eq!(claimed.entry.request.id, a.id);
        assert!(!store.withdraw(run, &webhook(1), &a, NOW).await.unwrap(), "claimed: the run has it");

        assert!(store.withdraw(run, &webhook(1), &b, NOW).await.unwrap());
        assert!(store.claim(run, &webhook(1)).await.unwrap().is_none(), "withdrawn: gone from the inbox");
        let not_taken = store.not_taken(run).await.unwrap();
        assert_eq!(not_taken.len(), 1);
        assert_eq!((not_taken[0].request.id.as_str(), not_taken[0].reason), (b.id.as_str(), NotTakenReason::TimedOut));
        assert!(!not_taken[0].acknowledged, "its caller was told it was not delivered");
        let kept = NotTakenRecord::refused(b.clone(), NotTakenReason::TimedOut, NOW).request;
        assert_eq!(not_taken[0].request, kept, "what identifies it, without its contents");
    }
}

#[tokio::test]
async fn a_withdrawn_single_use_call_frees_the_slot_for_the_senders_retry() {
    for (_dir, store) in backends().await {
        let run = new_run(&store).await;
        let hook = hook(run, 1, "tok-retry", true);
        store.create_hook(&hook, NOW).await.unwrap();
        let first = request(&store, json!(1)).await;
        store.deliver(&hook, &first, true, NOW, &|| {}).await.unwrap();
        assert!(store.withdraw(run, &webhook(1), &first, NOW).await.unwrap());
        let retry = request(&store, json!(1)).await;
        assert!(matches!(store.deliver(&hook, &retry, true, NOW, &|| {}).await.unwrap(), Delivery::Accepted));
    }
}

#[tokio::test]
async fn a_take_cut_short_before_its_event_goes_back_to_the_inbox_and_after_it_is_finished() {
    for (_dir, store) in backends().await {
        let run = new_run(&store).await;
        let hook = hook(run, 1, "tok-repair", false);
        store.create_hook(&hook, NOW).await.unwrap();
        let (a, b) = (request(&store, json!("a")).await, request(&store, json!("b")).await);
        store.deliver(&hook, &a, false, NOW, &|| {}).await.unwrap();
        store.deliver(&hook, &b, false, NOW, &|| {}).await.unwrap();

        // `a`: claimed, its event appended, the crash before the entry was removed.
        store.claim(run, &webhook(1)).await.unwrap().unwrap();
        store.append(run, &[taking_event(1, &a)]).await.unwrap();
        // `b`: claimed, the crash before its event.
        store.claim(run, &webhook(1)).await.unwrap().unwrap();

        assert_eq!(store.repair_inbox(NOW).await.unwrap(), 0);
        let queued = store.queued(run).await.unwrap();
        assert_eq!(queued.len(), 1, "the call in the log is not delivered again");
        assert_eq!((queued[0].request.id.as_str(), queued[0].taking), (b.id.as_str(), false));
        assert!(store.has_any_request(run).await.unwrap());
        assert_eq!(store.claim(run, &webhook(1)).await.unwrap().unwrap().entry.request.id, b.id);
    }
}

/// A run whose commit failed ends with takes unfinished: they are settled as at start-up,
/// but a held call goes back to the inbox (its caller still waits, and is told by the
/// close that follows), on a webhook and at a named trigger alike.
#[tokio::test]
async fn takes_a_failed_commit_left_are_settled_as_the_run_ends() {
    for (_dir, store) in backends().await {
        let run = new_run(&store).await;
        let hook = hook(run, 1, "tok-settle", false);
        store.create_hook(&hook, NOW).await.unwrap();
        let (a, b) = (request(&store, json!("a")).await, request(&store, json!("b")).await);
        store.deliver(&hook, &a, true, NOW, &|| {}).await.unwrap();
        store.deliver(&hook, &b, true, NOW, &|| {}).await.unwrap();
        let name = TriggerName::parse("paid").unwrap();
        let c = request(&store, json!("c")).await;
        store.deliver_to_trigger(run, &name, &c).await.unwrap();

        // `a`: its event written, the entry not removed; `b` and `c`: no event.
        store.claim(run, &webhook(1)).await.unwrap().unwrap();
        store.append(run, &[taking_event(1, &a)]).await.unwrap();
        store.claim(run, &webhook(1)).await.unwrap().unwrap();
        store.claim(run, &Channel::Trigger(name.clone())).await.unwrap().unwrap();

        assert_eq!(store.settle_takes(run).await.unwrap(), vec![a.id.clone()], "in the log: taken");
        let queued = store.queued(run).await.unwrap();
        let left: Vec<_> = queued.iter().map(|e| (e.request.id.clone(), e.held, e.taking)).collect();
        assert_eq!(left, vec![(b.id.clone(), true, false), (c.id.clone(), true, false)], "the call in the log is gone");
        // Not taking any more: the close refuses them.
        let refused = store.close_hook(&hook.token, run, WebhookId(1), NotTakenReason::RunEnded, NOW).await.unwrap();
        assert_eq!(refused.iter().map(|e| e.request.id.clone()).collect::<Vec<_>>(), vec![b.id.clone()]);
        let refused = store.refuse_trigger_calls(run, NotTakenReason::RunEnded, NOW).await.unwrap();
        assert_eq!(refused.iter().map(|e| e.request.id.clone()).collect::<Vec<_>>(), vec![c.id.clone()]);
        assert!(store.queued(run).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn held_calls_are_refused_at_start_up_and_acknowledged_ones_are_kept() {
    for (_dir, store) in backends().await {
        let run = new_run(&store).await;
        let hook = hook(run, 1, "tok-held", false);
        store.create_hook(&hook, NOW).await.unwrap();
        let (held, acked) = (request(&store, json!("held")).await, request(&store, json!("acked")).await);
        store.deliver(&hook, &held, true, NOW, &|| {}).await.unwrap();
        store.deliver(&hook, &acked, false, NOW, &|| {}).await.unwrap();
        let name = TriggerName::parse("paid").unwrap();
        let at_trigger = request(&store, json!("trigger")).await;
        store.deliver_to_trigger(run, &name, &at_trigger).await.unwrap();

        assert_eq!(store.repair_inbox(NOW).await.unwrap(), 2);
        let queued = store.queued(run).await.unwrap();
        assert_eq!(queued.iter().map(|e| e.request.id.clone()).collect::<Vec<_>>(), vec![acked.id]);
        let refused = store.not_taken(run).await.unwrap();
        assert!(refused.iter().all(|n| n.reason == NotTakenReason::Restarted && !n.acknowledged));
        assert_eq!(refused.len(), 2);
    }
}

#[tokio::test]
async fn a_live_token_is_refused_to_another_webhook_and_taken_over_by_its_own() {
    for (_dir, store) in backends().await {
        let (one, two) = (new_run(&store).await, new_run(&store).await);
        store.create_hook(&hook(one, 1, "shared-token", false), NOW).await.unwrap();
        let taken = store.create_hook(&hook(two, 1, "shared-token", false), NOW).await;
        assert!(matches!(taken, Err(StoreError::TokenTaken)));
        // The same webhook again (a replay after a crash) takes its record over.
        store.create_hook(&hook(one, 1, "shared-token", false), NOW).await.unwrap();

        // Closed, it is free for another run.
        let token = Token::parse("shared-token").unwrap();
        store.close_hook(&token, one, WebhookId(1), NotTakenReason::WebhookClosed, NOW).await.unwrap();
        store.create_hook(&hook(two, 1, "shared-token", false), NOW).await.unwrap();
        assert_eq!(store.hook(&token).await.unwrap().unwrap().run_id, two);

        // Expired, too.
        let mut expiring = hook(one, 2, "expiring", false);
        expiring.expires_at_ms = Some(NOW + 10);
        store.create_hook(&expiring, NOW).await.unwrap();
        assert!(matches!(store.create_hook(&hook(two, 2, "expiring", false), NOW).await, Err(StoreError::TokenTaken)));
        store.create_hook(&hook(two, 2, "expiring", false), NOW + 11).await.unwrap();
    }
}

#[tokio::test]
async fn closing_a_webhook_lists_what_it_held_as_not_taken_and_refuses_later_calls() {
    for (_dir, store) in backends().await {
        let run = new_run(&store).await;
        let hook = hook(run, 3, "tok-close", false);
        store.create_hook(&hook, NOW).await.unwrap();
        let (acked, held) = (request(&store, json!(1)).await, request(&store, json!(2)).await);
        store.deliver(&hook, &acked, false, NOW, &|| {}).await.unwrap();
        store.deliver(&hook, &held, true, NOW, &|| {}).await.unwrap();
        let token = hook.token.clone();
        let left = store.close_hook(&token, run, WebhookId(3), NotTakenReason::RunEnded, NOW).await.unwrap();
        assert_eq!(left.len(), 2);
        // Closing again (recovery repeats a run's end) changes nothing.
        store.close_hook(&token, run, WebhookId(3), NotTakenReason::RunEnded, NOW).await.unwrap();
        let not_taken = store.not_taken(run).await.unwrap();
        assert_eq!(not_taken.len(), 2);
        assert!(not_taken.iter().any(|n| n.request.id == acked.id && n.acknowledged));
        let late = request(&store, json!(3)).await;
        assert!(matches!(store.deliver(&hook, &late, false, NOW, &|| {}).await.unwrap(), Delivery::Gone));
    }
}

#[tokio::test]
async fn the_oldest_call_across_channels_comes_first() {
    for (_dir, store) in backends().await {
        let run = new_run(&store).await;
        let (one, two) = (hook(run, 1, "tok-a", false), hook(run, 2, "tok-b", false));
        store.create_hook(&one, NOW).await.unwrap();
        store.create_hook(&two, NOW).await.unwrap();
        let first = request(&store, json!(1)).await;
        let second = request(&store, json!(2)).await;
        store.deliver(&two, &first, false, NOW, &|| {}).await.unwrap();
        store.deliver(&one, &second, false, NOW, &|| {}).await.unwrap();
        let channels = [webhook(1), webhook(2)];
        assert_eq!(store.first_arrival(run, &channels).await.unwrap(), Some(webhook(2)));
        assert_eq!(store.queued_load(run).await.unwrap().0, 2);
    }
}

#[tokio::test]
async fn trigger_waiters_queue_longest_first_and_each_is_claimed_once() {
    for (_dir, store) in backends().await {
        let module = ModuleName::parse("orders").unwrap();
        let name = TriggerName::parse("approved").unwrap();
        let (early, late) = (RunId::new(), RunId::new());
        store.add_trigger_waiter(&module, &name, late, NOW + 5).await.unwrap();
        store.add_trigger_waiter(&module, &name, early, NOW).await.unwrap();
        // Noted again (a replayed wait): keeps its place.
        store.add_trigger_waiter(&module, &name, late, NOW + 50).await.unwrap();
        let waiting = store.trigger_waiters(&module, &name).await.unwrap();
        assert_eq!(waiting, vec![(early, NOW), (late, NOW + 5)]);
        let (a, b) = tokio::join!(
            store.claim_trigger_waiter(&module, &name, early),
            store.claim_trigger_waiter(&module, &name, early)
        );
        assert!(a.unwrap() ^ b.unwrap());
    }
}

#[tokio::test]
async fn timers_come_due_in_order() {
    for (_dir, store) in backends().await {
        let (a, b) = (RunId::new(), RunId::new());
        store.add_timer(NOW + 20, b).await.unwrap();
        store.add_timer(NOW + 10, a).await.unwrap();
        let due = store.due_timers(NOW + 15).await.unwrap();
        assert_eq!((due.due, due.next_ms), (vec![(NOW + 10, a)], Some(NOW + 20)));
        store.remove_timer(NOW + 10, a).await.unwrap();
        assert!(!store.has_timer(NOW + 10, a).await.unwrap());
        assert_eq!(store.due_timers(NOW + 30).await.unwrap().due, vec![(NOW + 20, b)]);
    }
}

fn api_key(name: &KeyName, digest: impl Into<String>) -> ApiKeyRecord {
    ApiKeyRecord { name: name.clone(), roles: vec!["deploy".into()], key_sha256: digest.into(), created_at_ms: NOW }
}

#[tokio::test]
async fn an_api_key_name_is_taken_once_and_free_again_after_revoking() {
    for (_dir, store) in backends().await {
        let name = KeyName::parse("ci").unwrap();
        let key = |digest: &str| api_key(&name, digest);
        store.create_api_key(&key("d1")).await.unwrap();
        assert!(matches!(store.create_api_key(&key("d2")).await, Err(StoreError::NameTaken)));
        assert!(store.api_key("d2").await.unwrap().is_none(), "a refused key is not stored");
        assert_eq!(store.api_key("d1").await.unwrap().unwrap().name, name);
        assert!(store.revoke_api_key(&name).await.unwrap());
        assert!(store.api_key("d1").await.unwrap().is_none());
        assert!(!store.revoke_api_key(&name).await.unwrap());
        store.create_api_key(&key("d3")).await.unwrap();
        assert_eq!(store.api_keys().await.unwrap().len(), 1);
    }
}

/// A key revoked while another is made under its name: whichever wins, a key that
/// exists afterwards can be revoked by its name (none is left that its name cannot reach).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_made_while_its_name_is_revoked_stays_revocable() {
    for (_dir, store) in backends().await {
        let name = KeyName::parse("racing").unwrap();
        let key = |digest: String| api_key(&name, digest);
        for round in 0..100 {
            let (old, new) = (format!("old-{round}"), format!("new-{round}"));
            store.create_api_key(&key(old.clone())).await.unwrap();
            let (revoking, making) = (store.clone(), store.clone());
            let name_again = name.clone();
            let revoke = tokio::spawn(async move { revoking.revoke_api_key(&name_again).await.unwrap() });
            let made = key(new.clone());
            let make = tokio::spawn(async move { making.create_api_key(&made).await });
            let (revoked, made) = (revoke.await.unwrap(), make.await.unwrap());
            assert!(revoked, "round {round}: the old key was there to revoke");
            assert!(store.api_key(&old).await.unwrap().is_none(), "round {round}: the old key is gone");
            if made.is_ok() {
                assert!(store.revoke_api_key(&name).await.unwrap(), "round {round}: the new key is revocable by name");
            }
            assert!(store.api_keys().await.unwrap().is_empty(), "round {round}: no key is left unreachable");
        }
    }
}

/// Two keys made at once under one name: one is made, the other refused, and no key is
/// left that its name cannot revoke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_keys_made_at_once_under_one_name_one_is_made() {
    for (_dir, store) in backends().await {
        let name = KeyName::parse("twice").unwrap();
        let key = |digest: String| api_key(&name, digest);
        for round in 0..100 {
            let (one, other) = (store.clone(), store.clone());
            let (first, second) = (key(format!("a-{round}")), key(format!("b-{round}")));
            let first = tokio::spawn(async move { one.create_api_key(&first).await });
            let second = tokio::spawn(async move { other.create_api_key(&second).await });
            let made = [first.await.unwrap(), second.await.unwrap()];
            assert_eq!(made.iter().filter(|m| m.is_ok()).count(), 1, "round {round}: one is made");
            assert!(made.iter().any(|m| matches!(m, Err(StoreError::NameTaken))), "round {round}");
            assert!(store.revoke_api_key(&name).await.unwrap(), "round {round}: revocable by its name");
            assert!(store.api_keys().await.unwrap().is_empty(), "round {round}: no key is left unreachable");
        }
    }
}

#[tokio::test]
async fn a_message_id_is_noted_once_until_it_expires() {
    for (_dir, store) in backends().await {
        let record = IdempotencyRecord {
            fingerprint: "f".into(),
            deliveries: Vec::new(),
            accepted: false,
            answer: None,
            answer_from: Default::default(),
            created_at_ms: NOW,
            forget_at_ms: NOW + 100,
            capped: true,
        };
        assert!(store.begin_message("k", &record, NOW).await.unwrap().is_none());
        assert_eq!(store.begin_message("k", &record, NOW + 1).await.unwrap().unwrap().fingerprint, "f");
        // Past its time, the id is new again.
        assert!(store.begin_message("k", &record, NOW + 101).await.unwrap().is_none());
        assert_eq!(store.forget_expired_messages(NOW + 1_000, 10, 0).await.unwrap(), 1);
        assert!(store.message("k").await.unwrap().is_none());
    }
}

/// Past the most ids kept, the oldest are forgotten first, but never one younger than
/// `keep_after_ms` (a sender's quick retry must still be recognised).
#[tokio::test]
async fn past_the_most_message_ids_kept_the_oldest_are_forgotten_first() {
    for (_dir, store) in backends().await {
        for n in 0..6u64 {
            let record = IdempotencyRecord {
                fingerprint: format!("f{n}"),
                deliveries: Vec::new(),
                accepted: true,
                answer: None,
                answer_from: Default::default(),
                created_at_ms: NOW + n * 1_000,
                forget_at_ms: NOW + 1_000_000,
                capped: true,
            };
            assert!(store.begin_message(&format!("k{n}"), &record, NOW).await.unwrap().is_none());
        }
        // Keep 2; those noted at or after NOW + 5_000 are kept whatever the count.
        assert_eq!(store.forget_expired_messages(NOW + 10_000, 2, NOW + 5_000).await.unwrap(), 4);
        for n in 0..4 {
            assert!(store.message(&format!("k{n}")).await.unwrap().is_none(), "k{n}, among the oldest, is forgotten");
        }
        for n in 4..6 {
            assert!(store.message(&format!("k{n}")).await.unwrap().is_some(), "k{n}, among the newest, is kept");
        }
        // Over the cap, but all too young to forget.
        assert_eq!(store.forget_expired_messages(NOW + 10_000, 1, NOW).await.unwrap(), 0);
    }
}

/// Ids of callers that are not anyone (signed senders, API keys) neither count against the
/// cap nor go past it: a flood of open calls' ids cannot push one out before its time.
#[tokio::test]
async fn only_capped_message_ids_count_against_the_cap_and_go_past_it() {
    for (_dir, store) in backends().await {
        let note = |n: u64, capped: bool| IdempotencyRecord {
            fingerprint: format!("f{n}"),
            deliveries: Vec::new(),
            accepted: true,
            answer: None,
            answer_from: Default::default(),
            created_at_ms: NOW + n * 1_000,
            forget_at_ms: NOW + 1_000_000,
            capped,
        };
        // The oldest two are a signed sender's; then four open calls'.
        for n in 0..6u64 {
            assert!(store.begin_message(&format!("k{n}"), &note(n, n >= 2), NOW).await.unwrap().is_none());
        }
        // Keep 2 capped ids: the two oldest open calls' go, the signed ones stay.
        assert_eq!(store.forget_expired_messages(NOW + 10_000, 2, NOW + 10_000).await.unwrap(), 2);
        let mut kept = Vec::new();
        for n in 0..6 {
            kept.push(store.message(&format!("k{n}")).await.unwrap().is_some());
        }
        assert_eq!(kept, vec![true, true, false, false, true, true]);
        // Past their window, they go as any id does.
        assert_eq!(store.forget_expired_messages(NOW + 1_000_000, 2, NOW).await.unwrap(), 4);
    }
}

#[tokio::test]
async fn deep_data_accepted_at_ingress_reads_back() {
    for (_dir, store) in backends().await {
        let run = new_run(&store).await;
        let mut deep = json!("bottom");
        for _ in 0..crate::json::MAX_DEPTH {
            deep = json!([deep]);
        }
        let call = request(&store, deep.clone()).await;
        store.append(run, &[taking_event(1, &call)]).await.unwrap();
        let (events, _) = store.events(run).await.unwrap();
        match &events[1].event {
            Event::WaitEnded { result: WaitOutcome::Request { request }, .. } => assert_eq!(*request.data, deep),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn ids_keep_rising_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let store = Store::open(dir.path(), 8 << 20).unwrap();
        let id = store.next_id().await.unwrap();
        store.close().await.unwrap();
        id
    };
    let store = Store::open(dir.path(), 8 << 20).unwrap();
    assert!(store.next_id().await.unwrap() > before);
}

#[tokio::test]
async fn deleting_a_run_removes_everything_it_owns() {
    for (_dir, store) in backends().await {
        let run = new_run(&store).await;
        let hook = hook(run, 1, "tok-delete", false);
        store.create_hook(&hook, NOW).await.unwrap();
        let info = WebhookInfo { id: WebhookId(1), token: hook.token.clone(), url: "http://h/hooks/tok-delete".into() };
        store.append(run, &[event_record(1, NOW, Event::WebhookCreated { webhook: Ok(info) })]).await.unwrap();
        let call = request(&store, json!(1)).await;
        store.deliver(&hook, &call, false, NOW, &|| {}).await.unwrap();
        store.close_hook(&hook.token, run, WebhookId(1), NotTakenReason::RunEnded, NOW).await.unwrap();
        let mut ended = run_record(run);
        ended.status = RunStatus::Completed;
        store.put_run(&ended).await.unwrap();
        store.delete_run(run).await.unwrap();
        assert!(store.run(run).await.unwrap().is_none());
        assert!(store.events(run).await.unwrap().0.is_empty());
        assert!(store.not_taken(run).await.unwrap().is_empty());
        assert!(store.hook(&hook.token).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn modules_are_listed_by_name() {
    for (_dir, store) in backends().await {
        for name in ["zeta", "alpha"] {
            let module = ModuleRecord { name: ModuleName::parse(name).unwrap(), versions: Vec::new() };
            store.put_module(&module).await.unwrap();
        }
        let names: Vec<String> = store.modules().await.unwrap().into_iter().map(|m| m.name.to_string()).collect();
        assert_eq!(names, ["alpha", "zeta"]);
    }
}

#[tokio::test]
async fn runs_are_paged_newest_first_and_filtered() {
    for (_dir, store) in backends().await {
        let mut ids = Vec::new();
        for n in 0..5u64 {
            // Ids sort by creation to the millisecond.
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            let mut run = run_record(RunId::new());
            run.module = ModuleName::parse(if n % 2 == 0 { "orders" } else { "billing" }).unwrap();
            run.created_at_ms = NOW + n;
            store.create_run(&run, &started()).await.unwrap();
            ids.push(run.id);
        }
        let newest_first: Vec<RunId> = ids.iter().rev().copied().collect();
        let all = RunQuery { status: None, module: None, since_ms: None, before: None, limit: 2 };
        let mut seen = Vec::new();
        let mut query = all.clone();
        loop {
            let page = store.run_page(&query).await.unwrap();
            assert!(page.runs.len() <= 2);
            seen.extend(page.runs.iter().map(|run| run.id));
            match page.next {
                Some(next) => query.before = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, newest_first);

        let orders = RunQuery { module: Some(ModuleName::parse("orders").unwrap()), limit: 10, ..all.clone() };
        let page = store.run_page(&orders).await.unwrap();
        assert_eq!(page.runs.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[4], ids[2], ids[0]]);
        assert!(page.next.is_none());
        let recent = RunQuery { since_ms: Some(NOW + 3), limit: 10, ..all.clone() };
        assert_eq!(store.run_page(&recent).await.unwrap().runs.len(), 2);
        let ended = RunQuery { status: Some(RunStatus::Completed), limit: 10, ..all };
        assert!(store.run_page(&ended).await.unwrap().runs.is_empty());
    }
}

#[tokio::test]
async fn calls_left_on_two_single_use_webhooks_are_both_listed_as_not_taken() {
    for (_dir, store) in backends().await {
        let run = new_run(&store).await;
        for number in [1, 2] {
            let hook = hook(run, number, &format!("tok-single-{number}"), true);
            store.create_hook(&hook, NOW).await.unwrap();
            let call = request(&store, json!(number)).await;
            assert!(matches!(store.deliver(&hook, &call, false, NOW, &|| {}).await.unwrap(), Delivery::Accepted));
            store.close_hook(&hook.token, run, WebhookId(number), NotTakenReason::RunEnded, NOW).await.unwrap();
        }
        let listed: Vec<Value> =
            store.not_taken(run).await.unwrap().into_iter().map(|r| Value::clone(&r.request.data)).collect();
        assert_eq!(listed, [json!(1), json!(2)]);
    }
}

#[tokio::test]
async fn a_delivery_tells_when_its_call_is_written_and_a_refused_one_never() {
    for (_dir, store) in backends().await {
        let run = new_run(&store).await;
        let hook = hook(run, 1, "tok-written", true);
        store.create_hook(&hook, NOW).await.unwrap();
        let told = AtomicUsize::new(0);
        let written = || {
            told.fetch_add(1, SeqCst);
        };
        let call = request(&store, json!(1)).await;
        assert!(matches!(store.deliver(&hook, &call, false, NOW, &written).await.unwrap(), Delivery::Accepted));
        assert_eq!(told.load(SeqCst), 1);
        // The slot is used: the second call is refused, and nobody is told of a write.
        let again = request(&store, json!(2)).await;
        assert!(matches!(store.deliver(&hook, &again, false, NOW, &written).await.unwrap(), Delivery::Gone));
        assert_eq!(told.load(SeqCst), 1);
    }
}

/// A call racing its webhook's close is either refused or listed as not taken once the
/// close is done: none is accepted and then left in the inbox of a closed webhook, where
/// no run would ever take it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_racing_its_webhooks_close_is_refused_or_listed_never_stranded() {
    for (_dir, store) in backends().await {
        // Without a look after the write, sled stranded a call within a few hundred rounds.
        for round in 0..1500 {
            let run = new_run(&store).await;
            let single_use = round % 2 == 0;
            let hook = hook(run, 1, &format!("tok-race-{round}"), single_use);
            store.create_hook(&hook, NOW).await.unwrap();
            let call = request(&store, json!(round)).await;
            let (delivering, closing) = (store.clone(), store.clone());
            let token = hook.token.clone();
            let deliver = tokio::spawn(async move { delivering.deliver(&hook, &call, false, NOW, &|| {}).await });
            let close = tokio::spawn(async move {
                closing.close_hook(&token, run, WebhookId(1), NotTakenReason::RunEnded, NOW).await
            });
            let (delivered, _) = (deliver.await.unwrap().unwrap(), close.await.unwrap().unwrap());
            assert!(store.queued(run).await.unwrap().is_empty(), "round {round}: a call is left in a closed webhook");
            let listed = store.not_taken(run).await.unwrap().len();
            let accepted = usize::from(matches!(delivered, Delivery::Accepted));
            assert_eq!(listed, accepted, "round {round}: an accepted call is listed, a refused one is not");
        }
    }
}
