//! The API's description: `/openapi.json`, and the check (in the harness, for every test)
//! that each answer a server gives is one the document lists.

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{ADMIN_KEY, start};

#[tokio::test]
async fn the_openapi_document_is_served_without_a_key_and_is_what_latch_openapi_prints() {
    let latch = start().await;
    let response = latch.http.get(format!("{}/openapi.json", latch.base)).send().await.expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    let served: Value = response.json().await.expect("JSON");
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_latch")).arg("openapi").output().expect("runs");
    let printed: Value = serde_json::from_slice(&printed.stdout).expect("JSON");
    assert_eq!(served, printed);
    assert_eq!(served["openapi"], "3.1.0");
    let paths = served["paths"].as_object().expect("paths");
    for route in ["/v1/runs", "/v1/runs/{id}/events", "/hooks/{token}", "/t/{module}/{trigger}", "/metrics"] {
        assert!(paths.contains_key(route), "{route} is described");
    }
    let error = &served["components"]["schemas"]["ErrorDetail"]["properties"];
    assert!(error.get("code").is_some() && error.get("message").is_some(), "the error shape: {error}");
}

#[tokio::test]
async fn each_answer_is_logged_with_its_route_and_one_the_document_lacks_is_reported() {
    let latch = start().await;
    let unknown = latch.http.get(format!("{}/v1/runs/no-such-run", latch.base)).bearer_auth(ADMIN_KEY);
    assert_eq!(unknown.send().await.expect("answered").status(), StatusCode::NOT_FOUND);
    let wrong_method = latch.http.delete(format!("{}/v1/runs", latch.base)).bearer_auth(ADMIN_KEY);
    assert_eq!(wrong_method.send().await.expect("answered").status(), StatusCode::METHOD_NOT_ALLOWED);

    let answers = latch_testkit::api_document::logged_answers(&latch.log());
    assert!(answers.contains(&"get /v1/runs/{id} -> 404".to_string()), "{answers:?}");
    assert!(answers.contains(&"delete /v1/runs -> 405".to_string()), "{answers:?}");

    let made_up = format!("{}\n", latch.log().replace("status=404", "status=418"));
    let undocumented = latch_testkit::api_document::undocumented_answers(
        env!("CARGO_BIN_EXE_latch").as_ref(),
        std::iter::once(made_up),
    );
    assert_eq!(undocumented, vec!["get /v1/runs/{id} -> 418".to_string()]);
}
