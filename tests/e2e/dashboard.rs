//! The web dashboard at `/ui`, clicked through in a real headless Chromium as a person
//! would. Screenshots land in `target/screenshots/` for a person to look at.

use latch_testkit::browser::{Browser, screenshot_dir};
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{ADMIN_KEY, start};

/// Where this target's screenshots go (the PostgreSQL run does not overwrite sled's).
fn screenshot(name: &str) -> std::path::PathBuf {
    let backend = if crate::harness::on_postgres() { "postgres-" } else { "" };
    screenshot_dir().join(format!("{backend}{name}.png"))
}

async fn sign_in(browser: &Browser, base: &str) {
    browser.goto(&format!("{base}/ui")).await;
    let key = browser.find("#admin-key").await;
    browser.type_into(&key, "not-the-key").await;
    browser.click(&browser.find("#sign-in").await).await;
    let refused = browser.wait_until("a sign-in error", || async {
        let error = browser.find("#sign-in-error").await;
        Some(browser.text(&error).await).filter(|text| !text.is_empty())
    });
    assert!(!refused.await.is_empty());
    browser.type_into(&browser.find("#admin-key").await, ADMIN_KEY).await;
    browser.click(&browser.find("#sign-in").await).await;
    // The navigation is on every page: signed in is when the sign-in form has gone.
    let signed_in = browser.wait_until("the sign-in form to go", || async {
        let gone = browser.execute("return document.querySelector('#admin-key') === null", json!([])).await;
        (gone == true).then_some(())
    });
    signed_in.await;
}

#[tokio::test]
async fn a_waiting_run_is_seen_its_url_copied_its_test_call_sent_from_the_page_and_it_completes() {
    let latch = start().await;
    latch.upload_plugin("order-payment").await;
    let id = latch.start_run("order-payment", json!({ "order_id": "o-ui", "amount": 12 })).await;
    let url = latch.waiting_url(&id).await;

    let browser = Browser::start().await;
    sign_in(&browser, &latch.base).await;
    let cookies = browser.execute("return document.cookie", json!([])).await;
    assert_eq!(cookies, "", "the admin key is not kept in a cookie");
    let kept = browser.execute("return Object.values(sessionStorage).includes(arguments[0])", json!([ADMIN_KEY])).await;
    assert_eq!(kept, true, "the admin key is kept in the tab's session storage");

    // The runs list shows the run waiting; its row leads to the run's page.
    browser.wait_for_text(&format!("tr[data-run-id='{id}'] td.status"), "waiting").await;
    browser.screenshot(&screenshot("runs")).await;
    browser.click(&browser.find(&format!("tr[data-run-id='{id}'] a")).await).await;
    browser.wait_for_text("#run-status", "waiting").await;

    // The URL it waits on, with a copy button and a form for a test call.
    let wait = browser.find(".wait-url").await;
    assert_eq!(browser.attribute(&wait, "data-url").await.as_deref(), Some(url.as_str()));
    let copy = browser.find(".wait-url button.copy-url").await;
    browser.click(&copy).await;
    browser.wait_for_text(".wait-url button.copy-url", "Copied").await;
    let body = browser.find(".wait-url form.test-call textarea[name=body]").await;
    browser.type_into(&body, r#"{"status": "succeeded", "transaction": "tx-from-the-page"}"#).await;
    browser.screenshot(&screenshot("run-waiting")).await;
    browser.click(&browser.find(".wait-url form.test-call button[type=submit]").await).await;
    let answered = browser.wait_until("the test call's answer", || async {
        let result = browser.try_find(".test-call-result").await?;
        browser.attribute(&result, "data-status").await
    });
    assert_eq!(answered.await, "202");

    // Live: the page follows the run to its end.
    browser.wait_for_text("#run-status", "completed").await;
    browser.find("#run-events li[data-event-type='completed']").await;
    let output = browser.text(&browser.find("#run-output").await).await;
    assert!(output.contains("tx-from-the-page") && output.contains("paid"), "{output}");
    let requests = browser.text(&browser.find("#run-requests").await).await;
    assert!(!requests.is_empty(), "the call that arrived is listed");
    browser.screenshot(&screenshot("run-completed")).await;

    // What the page sent is what the API recorded.
    let (status, listed) = latch.get(&format!("/v1/runs/{id}/requests")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["requests"][0]["state"], "delivered", "{listed}");

    // At a phone's width the page fits the screen.
    browser.resize(390, 844).await;
    let fits = browser.execute("return document.documentElement.scrollWidth <= window.innerWidth", json!([])).await;
    browser.screenshot(&screenshot("run-phone")).await;
    assert_eq!(fits, true, "no sideways scrolling at 390 px");

    // With the system in dark mode, the page is dark.
    browser.prefer_dark().await;
    let background = browser.execute("return getComputedStyle(document.body).backgroundColor", json!([])).await;
    browser.screenshot(&screenshot("run-phone-dark")).await;
    let channels: Vec<u32> = background
        .as_str()
        .unwrap_or_default()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(channels.len() >= 3 && channels[..3].iter().all(|c| *c < 80), "a dark background: {background}");

    // The runs list is live: a run started and completed elsewhere shows up, then ends,
    // without a reload.
    browser.resize(1280, 900).await;
    browser.click(&browser.find("#nav-runs").await).await;
    let other = latch.start_run("order-payment", json!({ "order_id": "o-live", "amount": 1 })).await;
    browser.wait_for_text(&format!("tr[data-run-id='{other}'] td.status"), "waiting").await;
    let callback = latch.waiting_url(&other).await;
    let paid = latch.http.post(&callback).json(&json!({ "status": "succeeded", "transaction": "tx-live" }));
    assert_eq!(crate::harness::send(paid).await.0, StatusCode::ACCEPTED);
    browser.wait_for_text(&format!("tr[data-run-id='{other}'] td.status"), "completed").await;

    // Everything the pages loaded came from the server itself.
    let script = "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith(arguments[0]))";
    let foreign = browser.execute(script, json!([latch.base])).await;
    assert_eq!(foreign, json!([]), "nothing is loaded from another host");
    browser.quit().await;
}

#[tokio::test]
async fn modules_runs_filters_cancel_keys_and_secrets_work_from_the_dashboard() {
    let latch = start().await;
    latch.upload_plugin("order-payment").await;
    let waiting = latch.start_run("order-payment", json!({ "order_id": "o-c", "amount": 1 })).await;
    latch.waiting_url(&waiting).await;
    let failed = latch.start_run("order-payment", json!({ "amount": 1 })).await;
    latch.wait_for(&failed, "failed").await;

    let browser = Browser::start().await;
    sign_in(&browser, &latch.base).await;

    // Filtered by status, the list holds only the failed run.
    browser.wait_for_text(&format!("tr[data-run-id='{failed}'] td.status"), "failed").await;
    let filter = browser.find("#status-filter").await;
    browser.execute(
        "arguments[0].value = 'failed'; arguments[0].dispatchEvent(new Event('change', { bubbles: true }))",
        json!([{ "element-6066-11e4-a52e-4f735466cecf": filter.id() }]),
    )
    .await;
    browser
        .wait_until("only the failed run listed", || async {
            let rows = browser.execute("return document.querySelectorAll('#runs tr[data-run-id]').length", json!([]));
            let gone = browser.try_find(&format!("tr[data-run-id='{waiting}']")).await.is_none();
            (rows.await == 1 && gone).then_some(())
        })
        .await;

    // A run cancelled from its page, after the button asks once more.
    browser.goto(&format!("{}/ui#/runs/{waiting}", latch.base)).await;
    browser.wait_for_text("#run-status", "waiting").await;
    let cancel = browser.find("#cancel-run").await;
    browser.click(&cancel).await;
    browser.wait_for_text("#cancel-run", "Confirm cancel").await;
    browser.click(&browser.find("#cancel-run").await).await;
    browser.wait_for_text("#run-status", "cancelled").await;
    latch.wait_for(&waiting, "cancelled").await;

    // Modules, with what the module says of itself.
    browser.click(&browser.find("#nav-modules").await).await;
    let module = browser.text(&browser.find("tr[data-module='order-payment']").await).await;
    assert!(module.contains("order-payment"), "{module}");
    browser.screenshot(&screenshot("modules")).await;

    // A run started from the module's page, which then shows that run.
    browser.click(&browser.find("tr[data-module='order-payment'] a").await).await;
    let description = browser.text(&browser.find("#module").await).await;
    assert!(description.contains("payment provider's callback"), "what describe() said: {description}");
    let input = browser.find("#start-run textarea[name=input]").await;
    browser.type_into(&input, r#"{"order_id": "o-form", "amount": 3}"#).await;
    browser.click(&browser.find("#start-run button[type=submit]").await).await;
    browser.wait_for_text("#run-status", "waiting").await;
    let (_, runs) = latch.get("/v1/runs?module=order-payment&status=waiting").await;
    assert_eq!(runs["runs"][0]["input"]["order_id"], "o-form", "{runs}");

    // A key made, shown once, listed, and revoked.
    browser.click(&browser.find("#nav-keys").await).await;
    browser.type_into(&browser.find("#new-key input[name=name]").await, "ui-key").await;
    browser.click(&browser.find("#new-key button[type=submit]").await).await;
    let key = browser
        .wait_until("the new key", || async {
            let shown = browser.text(&browser.find("#new-key-value").await).await;
            (!shown.is_empty()).then_some(shown)
        })
        .await;
    browser.find("tr[data-key='ui-key']").await;
    let resume = latch.http.post(format!("{}/v1/hooks/no-such-token", latch.base)).bearer_auth(&key).json(&json!({}));
    assert_eq!(resume.send().await.expect("answered").status(), StatusCode::NOT_FOUND, "the key is real");
    browser.click(&browser.find("tr[data-key='ui-key'] button.revoke-key").await).await;
    browser.click(&browser.find("tr[data-key='ui-key'] button.revoke-key").await).await;
    browser.wait_until("the key gone", || async { browser.try_find("tr[data-key='ui-key']").await.is_none().then_some(()) }).await;
    let (_, keys) = latch.get("/v1/keys").await;
    assert_eq!(keys["keys"].as_array().map(Vec::len), Some(0), "{keys}");

    // A secret set, listed by name only, and deleted.
    browser.click(&browser.find("#nav-secrets").await).await;
    browser.type_into(&browser.find("#new-secret input[name=name]").await, "shop-signing").await;
    browser.type_into(&browser.find("#new-secret input[name=value]").await, "s3cret-value-never-shown").await;
    browser.click(&browser.find("#new-secret button[type=submit]").await).await;
    browser.find("tr[data-secret='shop-signing']").await;
    let page = browser.execute("return document.documentElement.outerHTML", json!([])).await;
    assert!(!page.as_str().unwrap_or_default().contains("s3cret-value-never-shown"), "the value is not shown");
    browser.screenshot(&screenshot("secrets")).await;
    browser.click(&browser.find("tr[data-secret='shop-signing'] button.delete-secret").await).await;
    browser.click(&browser.find("tr[data-secret='shop-signing'] button.delete-secret").await).await;
    browser
        .wait_until("the secret gone", || async {
            browser.try_find("tr[data-secret='shop-signing']").await.is_none().then_some(())
        })
        .await;
    let (_, secrets) = latch.get("/v1/secrets").await;
    assert_eq!(secrets["secrets"], json!([]));
    browser.quit().await;
}
