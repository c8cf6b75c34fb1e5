//! Public ingress: `/hooks/{token}` and `/v1/hooks/{token}` deliver a call to the run
//! that owns the webhook; `/t/{module}/...` reaches a module's triggers. Each handler finds
//! the target, checks the method, reads the body, and hands the call to the executor's one
//! inbound path.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{any, post};

use super::{ApiError, AppState, read_charged_body};
use crate::executor::{Answer, Execution, Incoming};
use crate::store::records::Method;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/hooks/{token}", any(call_hook))
        .route("/v1/hooks/{token}", post(resume_hook))
        .route("/t/{module}/{*suffix}", any(call_trigger))
}

#[utoipa::path(method(get, post, put, patch, delete, head, options), path = "/hooks/{token}",
    params(("token" = String, Path, description = "The webhook's unguessable token")),
    request_body(content = Value, description = "Any body the webhook's schema allows"),
    responses((status = 202, description = "`{accepted, request_id}`: the call is durably in its run", body = Value),
        (status = 200, description = "The call was a repeat of one already taken (idempotency key), or a run's answer", body = Value),
        (status = "default", description = "The run's own answer, when it answers the caller itself (tagged `latch-request-id`)"), super::answers::PublicCall))]
async fn call_hook(
    State(app): State<Arc<AppState>>,
    Path(token): Path<String>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let hook = app.executor.public_webhook(&token).await.map_err(|e| ApiError::from(e).before_body())?;
    let method = allowed_method(&hook.methods, &method).map_err(ApiError::before_body)?;
    let incoming = incoming(&app, method, &uri, &headers, body).await?;
    let executor = app.executor.clone();
    detached(&app, async move { executor.call_webhook(hook, incoming).await }).await
}

/// `POST /v1/hooks/{token}`: resumes a webhook from an API (Workflow DevKit's
/// `resumeHook(token, payload)`), with an API key; the JSON body is the payload.
#[utoipa::path(post, path = "/v1/hooks/{token}",
    params(("token" = String, Path, description = "The webhook's token")),
    request_body(content = Value, description = "The payload"),
    responses((status = 202, description = "`{accepted, request_id}`: the call is durably in its run", body = Value),
        (status = 200, description = "A repeat of a call already taken, or a run's answer", body = Value),
        (status = "default", description = "The run's own answer, when it answers the caller itself (tagged `latch-request-id`)"), super::answers::PublicCall),
    security(("admin_key" = [])))]
async fn resume_hook(
    State(app): State<Arc<AppState>>,
    Path(token): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let target = app
        .executor
        .resume_target(&token, &header_pairs(&headers))
        .await
        .map_err(|e| ApiError::from(e).before_body())?;
    let incoming = incoming(&app, Method::Post, &uri, &headers, body).await?;
    let executor = app.executor.clone();
    detached(&app, async move { executor.resume_webhook(target, incoming).await }).await
}

/// `/t/{module}/{suffix}`: a start trigger, or with `?execution=<run id>|any|all` (or
/// `executionId`) a named mid-flow trigger.
#[utoipa::path(method(get, post, put, patch, delete, head, options), path = "/t/{module}/{trigger}",
    params(("module" = String, Path, description = "The module's name"),
        ("trigger" = String, Path, description = "The trigger's path (may hold `/`)"),
        ("execution" = Option<String>, Query, description = "A named mid-flow trigger: a run id, `any` (one waiting run) or `all`")),
    request_body(content = Value, description = "The trigger's event"),
    responses((status = 202, description = "A run started (`{id}`) or the call is durably in its run(s)", body = Value),
        (status = 200, description = "`{resumed: n}`, with `runs: [ids]` for an API-key caller, a repeat, or a run's answer", body = Value),
        (status = 201, description = "A run started", body = Value),
        (status = "default", description = "The run's own answer, when it answers the caller itself (tagged `latch-request-id`)"), super::answers::PublicCall))]
async fn call_trigger(
    State(app): State<Arc<AppState>>,
    Path((module, suffix)): Path<(String, String)>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if let Some(execution) = execution(&uri) {
        let (module, name) =
            app.executor.check_named_trigger(&module, &suffix).await.map_err(|e| ApiError::from(e).before_body())?;
        let method = allowed_method(&[Method::Get, Method::Post], &method).map_err(ApiError::before_body)?;
        let incoming = without_execution(incoming(&app, method, &uri, &headers, body).await?);
        let executor = app.executor.clone();
        return detached(&app, async move { executor.call_named_trigger(&module, &name, execution, incoming).await })
            .await;
    }
    let (module, trigger) =
        app.executor.start_trigger(&module, &suffix).await.map_err(|e| ApiError::from(e).before_body())?;
    let method = allowed_method(&trigger.methods, &method).map_err(ApiError::before_body)?;
    let incoming = incoming(&app, method, &uri, &headers, body).await?;
    let executor = app.executor.clone();
    detached(&app, async move { executor.call_start_trigger(&module, &trigger, incoming).await }).await
}

/// Hands a call over to a task of its own: a caller that hangs up does not cut its call
/// short (a held call is still withdrawn, or taken, and accounted for).
async fn detached(
    app: &AppState,
    call: impl std::future::Future<Output = Result<Answer, crate::executor::ExecError>> + Send + 'static,
) -> Result<Response, ApiError> {
    let answered = match tokio::spawn(call).await {
        Ok(Ok(answered)) => Ok(answer(answered)),
        Ok(Err(e)) => Err(ApiError::from(e)),
        Err(e) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("the call failed: {e}"))),
    };
    let metrics = app.executor.metrics();
    match &answered {
        Ok(response) => metrics.call_answered(response.status().as_u16(), None),
        Err(error) => metrics.call_answered(error.status.as_u16(), Some(error.code)),
    }
    answered
}

/// The `execution` (or `executionId`) parameter of a named-trigger call.
fn execution(uri: &Uri) -> Option<Execution> {
    let query = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes());
    query.into_iter().find(|(k, _)| k == "execution" || k == "executionId").map(|(_, v)| Execution::parse(&v))
}

fn without_execution(mut incoming: Incoming) -> Incoming {
    incoming.query.retain(|(k, _)| k != "execution" && k != "executionId");
    incoming
}

/// The call as it arrived; its body is read only now that its target is known.
async fn incoming(
    app: &AppState,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Incoming, ApiError> {
    let (body, charge) = read_charged_body(body, app.limits.body()).await?;
    Ok(Incoming {
        method,
        path: uri.path().to_string(),
        query: form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect(),
        headers: header_pairs(headers),
        body,
        charge,
    })
}

pub(super) fn allowed_method(methods: &[Method], method: &axum::http::Method) -> Result<Method, ApiError> {
    Method::parse(method.as_str()).filter(|m| methods.contains(m)).ok_or_else(|| ApiError::method_not_allowed(methods))
}

fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect()
}

/// Turns an answer into HTTP; one about a delivered request is tagged with its id, so an
/// operator can trace it (and so that a run's own error answers pass through untouched).
fn answer(answer: Answer) -> Response {
    let Answer { response, request_id } = answer;
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
    let mut out = Response::new(Body::from(response.body.clone()));
    *out.status_mut() = status;
    let headers = out.headers_mut();
    for (name, value) in &response.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name.as_str()), HeaderValue::from_str(value)) {
            headers.append(name, value);
        }
    }
    if !response.body.is_empty() && !headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    if let Some(value) = request_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        headers.insert(super::error::RUN_ANSWER_HEADER, value);
    }
    out
}
