//! Triggers at `/t/{module}/{suffix}`.
//!
//! - Start triggers: a call starts a run of the module's newest version whose start is
//!   that request (a Blink event-based webhook, FlowRunner's flow-starting External
//!   Callback, a Webhook listener with its Webhook Response).
//! - Named mid-flow triggers (FlowRunner): with `?execution=<run id>|any|all` (or
//!   `executionId`), the call resumes runs waiting at the trigger of that name: one run,
//!   the one waiting longest, or every one waiting.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::ingress::{
    admit, allowed_method, check_against, header_pairs, http_response, not_activated, query_object, redact_credentials,
    response_timeout,
};
use super::{ApiError, AppState, latest_info, parse_json, read_body};
use crate::clock::now_ms;
use crate::executor::ExecError;
use crate::rules::{self, CallView};
use crate::store::records::{Caller, HttpResponse, Method, NamedTriggerInfo, RequestRecord, ResponseMode, TriggerInfo};

fn trigger(app: &AppState, module: &str, suffix: &str) -> Result<TriggerInfo, ApiError> {
    let found = latest_info(app, module)?.triggers.into_iter().find(|t| t.suffix == suffix);
    found.ok_or_else(|| {
        ApiError::not_found("unknown-trigger", format!("module `{module}` has no trigger at `{suffix}`"))
    })
}

/// What a trigger's `expects` schema sees of a call.
fn expected_view(method: Method, headers: &[(String, String)], query: &[(String, String)], body: &Value) -> Value {
    let headers: Map<String, Value> =
        headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v.clone()))).collect();
    json!({ "method": method.as_str(), "headers": headers, "query": query_object(query), "body": body })
}

/// An automatic answer with `{{run_id}}`, `{{request_id}}` and `{{module}}` filled in.
fn fill(response: &HttpResponse, run_id: &str, request_id: &str, module: &str) -> HttpResponse {
    let fill = |text: &str| {
        text.replace("{{run_id}}", run_id).replace("{{request_id}}", request_id).replace("{{module}}", module)
    };
    HttpResponse {
        status: response.status,
        headers: response.headers.iter().map(|(k, v)| (k.clone(), fill(v))).collect(),
        body: fill(&response.body),
    }
}

pub async fn call_trigger(
    State(app): State<Arc<AppState>>,
    Path((module, suffix)): Path<(String, String)>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut query: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    if let Some(execution) = take_execution(&mut query) {
        return resume_named(&app, &module, &suffix, &execution, &method, query, &uri, &headers, body).await;
    }
    let trigger = trigger(&app, &module, &suffix)?;
    let method = allowed_method(&trigger.methods, &method)?;
    let body = read_body(body, app.limits.max_body_bytes).await?;
    let mut headers = header_pairs(&headers);
    let Some(caller) = admit(&app, &trigger.auth, trigger.on_auth_failure, &mut query, &headers, &body)? else {
        return Ok(not_activated());
    };
    redact_credentials(&mut headers);
    // A GET's query is its data; a body's JSON otherwise (query parameters stay readable).
    let data = match method {
        Method::Get | Method::Delete => query_object(&query),
        Method::Post | Method::Put | Method::Patch => parse_json(&body)?,
    };
    if app.store.take_listening(&module, &trigger.name)? {
        return capture_sample(&app, &module, &trigger.name, expected_view(method, &headers, &query, &data)).await;
    }
    if let Some(schema) = &trigger.expects {
        let view = expected_view(method, &headers, &query, &data);
        check_against(schema, &view, "the call does not match what the trigger expects")?;
    }
    let request = RequestRecord {
        id: format!("rq-{}", app.store.next_id()?),
        webhook: format!("trigger:{}", trigger.name),
        method,
        path: uri.path().to_string(),
        query,
        headers,
        data: data.clone(),
        caller,
        received_at_ms: now_ms(),
    };
    let request_id = request.id.clone();
    match &trigger.response {
        ResponseMode::Automatic { response } => {
            let run = app.executor.start_run_from(&module, data, Some(request)).await?;
            Ok(http_response(&fill(response, &run.id, &request_id, &module), &run.id, &request_id))
        }
        ResponseMode::Manual { deadline_ms } => {
            let shared = app.executor.shared();
            // Held before the run exists: it may answer at once.
            let answer = shared.responses.hold(&request_id);
            let run = match app.executor.start_run_from(&module, data, Some(request)).await {
                Ok(run) => run,
                Err(e) => {
                    shared.responses.forget(&request_id);
                    return Err(e.into());
                }
            };
            match tokio::time::timeout(Duration::from_millis(u64::from(*deadline_ms)), answer).await {
                Ok(Ok(response)) => Ok(http_response(&response, &run.id, &request_id)),
                _ => {
                    shared.responses.forget(&request_id);
                    Err(response_timeout(*deadline_ms))
                }
            }
        }
    }
}

/// Keeps a call as the trigger's sample event (Blink's "Listen to event"), with a JSON
/// Schema learnt from it; no run starts.
async fn capture_sample(app: &AppState, module: &str, trigger: &str, event: Value) -> Result<Response, ApiError> {
    let schema = rules::infer_schema(&event);
    let sample = json!({ "event": event, "schema": schema, "captured_at_ms": now_ms() });
    app.store.put_sample(module, trigger, &sample)?;
    app.store.flush().await?;
    Ok(axum::Json(json!({ "captured": true, "activated": false })).into_response())
}

/// How the module's newest version wants calls to its named trigger checked, if it says.
fn named_trigger(app: &AppState, module: &str, name: &str) -> Result<Option<NamedTriggerInfo>, ApiError> {
    Ok(latest_info(app, module)?.named_triggers.into_iter().find(|t| t.name == name))
}

/// The `execution` (or `executionId`) parameter, taken out of the call's data.
fn take_execution(query: &mut Vec<(String, String)>) -> Option<String> {
    let execution = query.iter().find(|(k, _)| k == "execution" || k == "executionId").map(|(_, v)| v.clone());
    query.retain(|(k, _)| k != "execution" && k != "executionId");
    execution
}

/// A call to a named mid-flow trigger: a GET's query (less `execution`) or a POST's JSON
/// body is the data. Answers `{"resumed": [run ids]}`; 404 when nothing waits (`any`,
/// `all`) or the run is unknown, finished or of another module.
#[allow(clippy::too_many_arguments)]
async fn resume_named(
    app: &Arc<AppState>,
    module: &str,
    name: &str,
    execution: &str,
    method: &axum::http::Method,
    query: Vec<(String, String)>,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Names are what runs may wait at; anything else (a `%00` above all, which would
    // reach into another trigger's store keys) names no trigger.
    if !crate::runtime::is_trigger_name(name) {
        return Err(ApiError::not_found("unknown-trigger", format!("`{name}` is not a trigger name")));
    }
    let method = allowed_method(&[Method::Get, Method::Post], method)?;
    let body = read_body(body, app.limits.max_body_bytes).await?;
    let mut headers = header_pairs(headers);
    let mut query = query;
    let declared = named_trigger(app, module, name)?;
    let caller = match &declared {
        Some(declared) => {
            let admitted = admit(app, &declared.auth, declared.on_auth_failure, &mut query, &headers, &body)?;
            let Some(caller) = admitted else { return Ok(not_activated()) };
            caller
        }
        None => Caller::Anonymous,
    };
    redact_credentials(&mut headers);
    let data = match method {
        Method::Post => parse_json(&body)?,
        _ => query_object(&query),
    };
    if let Some(condition) = declared.as_ref().and_then(|d| d.condition.as_ref()) {
        let view = CallView { method: method.as_str(), headers: &headers, query: &query, body: &data };
        // A false condition: the call is ignored and the runs stay paused.
        if !rules::condition_holds(condition, &view).unwrap_or(false) {
            return Ok(not_activated());
        }
    }
    let targets = match execution {
        "any" | "all" => {
            let waiting = app.executor.trigger_waiters(module, name)?;
            if waiting.is_empty() {
                return Err(ApiError::not_found(
                    "nothing-waiting",
                    format!("no run of `{module}` waits at trigger `{name}`"),
                ));
            }
            waiting
        }
        run_id => vec![run_id.to_string()],
    };
    let by_id = !matches!(execution, "any" | "all");
    let mut resumed = Vec::new();
    for run_id in targets {
        let request = RequestRecord {
            id: format!("rq-{}", app.store.next_id()?),
            webhook: format!("trigger:{name}"),
            method,
            path: uri.path().to_string(),
            query: query.clone(),
            headers: headers.clone(),
            data: data.clone(),
            caller: caller.clone(),
            received_at_ms: now_ms(),
        };
        match app.executor.accept_trigger_call(module, name, &run_id, &request).await {
            Ok(()) => resumed.push(run_id),
            // A waiter that ended meanwhile is passed over; `any` tries the next one.
            Err(ExecError::UnknownExecution(_)) if !by_id => continue,
            Err(e) => return Err(e.into()),
        }
        if execution == "any" {
            break;
        }
    }
    if resumed.is_empty() {
        return Err(ApiError::not_found("nothing-waiting", format!("no run of `{module}` waits at trigger `{name}`")));
    }
    Ok(axum::Json(json!({ "resumed": resumed })).into_response())
}
