//! Public ingress: `/hooks/{token}` delivers a call to the run that owns the webhook.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use serde_json::{Map, Value};

use super::{ApiError, AppState, parse_json, read_body};
use crate::auth::signatures::{self, SignatureError, Signed};
use crate::clock::now_ms;
use crate::rules::{self, CallView};
use crate::store::records::{
    Caller, HookAuth, HookRecord, HookState, HttpResponse, Method, OnAuthFailure, RequestRecord, ResponseMode, Scheme,
};

/// The query parameter that carries a URL-embedded key; it never reaches the run.
const KEY_PARAM: &str = "key";

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/hooks/{token}", any(call_hook))
        .route("/v1/hooks/{token}", post(resume_hook))
        .route("/t/{module}/{*suffix}", any(super::triggers::call_trigger))
}

async fn call_hook(
    State(app): State<Arc<AppState>>,
    Path(token): Path<String>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let hook =
        app.store.hook(&token)?.ok_or_else(|| ApiError::not_found("unknown-webhook", "no webhook has this token"))?;
    let method = allowed_method(&hook.methods, &method)?;
    let mut query: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    // Signatures cover the raw body: it is read before the caller is checked.
    let body = read_body(body, app.limits.max_body_bytes).await?;
    let mut headers = header_pairs(&headers);
    let Some(caller) = admit(&app, &hook.auth, hook.on_auth_failure, &mut query, &headers, &body)? else {
        return Ok(not_activated());
    };
    redact_credentials(&mut headers);
    check_open(&hook)?;
    let data = match method {
        Method::Get | Method::Delete => query_object(&query),
        Method::Post | Method::Put | Method::Patch => parse_json(&body)?,
    };
    let call = Call { method, path: uri.path().to_string(), query, headers, data, caller };
    deliver(&app, &hook, call).await
}

/// A call that passed its webhook's method and auth checks.
struct Call {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    data: Value,
    caller: Caller,
}

/// `POST /v1/hooks/{token}`: resumes a webhook from an API (Workflow DevKit's
/// `resumeHook(token, payload)`), with an API key; the JSON body is the payload. A webhook
/// that asks for roles checks them against the key.
async fn resume_hook(
    State(app): State<Arc<AppState>>,
    Path(token): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut headers = header_pairs(&headers);
    let roles = |hook: &HookRecord| match &hook.auth {
        HookAuth::Bearer { roles } => roles.clone(),
        _ => Vec::new(),
    };
    let hook = app.store.hook(&token)?;
    let required = hook.as_ref().map(roles).unwrap_or_default();
    let caller = bearer_caller(&app, &headers, &required)?;
    let hook = hook.ok_or_else(|| ApiError::not_found("unknown-webhook", "no webhook has this token"))?;
    // An API key stands in for no other credential: a webhook guarded by a URL key or a
    // signature is resumed only by a caller that has those.
    if !matches!(hook.auth, HookAuth::None | HookAuth::Bearer { .. }) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "auth-mismatch",
            "this webhook takes callers with its own credential, at its URL",
        ));
    }
    allowed_method(&hook.methods, &axum::http::Method::POST)?;
    redact_credentials(&mut headers);
    check_open(&hook)?;
    let data = parse_json(&read_body(body, app.limits.max_body_bytes).await?)?;
    let call = Call { method: Method::Post, path: uri.path().to_string(), query: Vec::new(), headers, data, caller };
    deliver(&app, &hook, call).await
}

/// Checks a call against the webhook's rules, stores it durably for its run and answers
/// as the webhook says: at once, or with the run's own answer.
async fn deliver(app: &AppState, hook: &HookRecord, call: Call) -> Result<Response, ApiError> {
    check_schema(hook, &call.data)?;
    if let Some(condition) = &hook.condition {
        let view =
            CallView { method: call.method.as_str(), headers: &call.headers, query: &call.query, body: &call.data };
        // Checked once the hook was made; a false condition leaves the run waiting.
        if !rules::condition_holds(condition, &view).unwrap_or(false) {
            return Ok(not_activated());
        }
    }
    let request = RequestRecord {
        id: format!("rq-{}", app.store.next_id()?),
        webhook: format!("wh-{}", hook.number),
        method: call.method,
        path: call.path,
        query: call.query,
        headers: call.headers,
        data: call.data,
        caller: call.caller,
        received_at_ms: now_ms(),
    };
    match &hook.response {
        ResponseMode::Automatic { response } => {
            app.executor.accept_call(hook, &request).await?;
            Ok(http_response(response, &hook.run_id, &request.id))
        }
        ResponseMode::Manual { deadline_ms } => {
            let shared = app.executor.shared();
            let answer = shared.responses.hold(&request.id);
            if let Err(e) = app.executor.accept_call(hook, &request).await {
                shared.responses.forget(&request.id);
                return Err(e.into());
            }
            match tokio::time::timeout(Duration::from_millis(u64::from(*deadline_ms)), answer).await {
                Ok(Ok(response)) => Ok(http_response(&response, &hook.run_id, &request.id)),
                _ => {
                    shared.responses.forget(&request.id);
                    Err(response_timeout(*deadline_ms))
                }
            }
        }
    }
}

pub(super) fn allowed_method(methods: &[Method], method: &axum::http::Method) -> Result<Method, ApiError> {
    Method::parse(method.as_str()).filter(|m| methods.contains(m)).ok_or_else(|| {
        let allow: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
        let mut error = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            format!("this URL takes {}", allow.join(", ")),
        );
        error.allow = Some(allow.join(", "));
        error
    })
}

/// The answer to a caller that failed authentication on a webhook whose policy is to
/// ignore such calls: a plain success that delivered nothing.
pub(super) fn not_activated() -> Response {
    axum::Json(serde_json::json!({ "activated": false })).into_response()
}

fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

/// Checks the caller; `Ok(None)` when it failed and the policy is to ignore such calls.
pub(super) fn admit(
    app: &AppState,
    auth: &HookAuth,
    on_failure: OnAuthFailure,
    query: &mut Vec<(String, String)>,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Option<Caller>, ApiError> {
    match authenticate(app, auth, query, headers, body) {
        Ok(caller) => Ok(Some(caller)),
        Err(_) if on_failure == OnAuthFailure::Ignore => Ok(None),
        Err(refusal) => Err(refusal),
    }
}

/// Checks the caller against a webhook's or trigger's auth; a key in the query is taken
/// out of it.
fn authenticate(
    app: &AppState,
    auth: &HookAuth,
    query: &mut Vec<(String, String)>,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Caller, ApiError> {
    match auth {
        HookAuth::None => Ok(Caller::Anonymous),
        HookAuth::QueryApiKey => {
            let key = take_query_key(query).ok_or_else(|| unauthorized("missing-key", "this URL carries a `key`"))?;
            api_key_caller(app, &key, &[])
        }
        HookAuth::UrlKey { key_sha256 } => match take_query_key(query) {
            Some(key) if crate::auth::key_matches(&key, key_sha256) => Ok(Caller::UrlKey),
            Some(_) => Err(unauthorized("bad-key", "the URL's key is wrong")),
            None => Err(unauthorized("missing-key", "this webhook's URL carries a `key`")),
        },
        HookAuth::Bearer { roles } => bearer_caller(app, headers, roles),
        HookAuth::Signature { scheme, secret } => signed_caller(app, *scheme, secret, headers, body),
    }
}

/// The `key` query parameter, taken out so that it never reaches the run.
fn take_query_key(query: &mut Vec<(String, String)>) -> Option<String> {
    let key = query.iter().find(|(k, _)| k == KEY_PARAM).map(|(_, v)| v.clone());
    query.retain(|(k, _)| k != KEY_PARAM);
    key
}

fn bearer_caller(app: &AppState, headers: &[(String, String)], required: &[String]) -> Result<Caller, ApiError> {
    let presented = header(headers, "authorization").and_then(|v| v.strip_prefix("Bearer "));
    let Some(presented) = presented else {
        return Err(unauthorized("missing-key", "send `Authorization: Bearer <api key>`"));
    };
    api_key_caller(app, presented.trim(), required)
}

fn api_key_caller(app: &AppState, presented: &str, required: &[String]) -> Result<Caller, ApiError> {
    // Looked up by the key's digest: the key itself is never compared or stored.
    let key = app.store.api_key(&crate::auth::digest(presented))?;
    let key = key.ok_or_else(|| unauthorized("bad-key", "the API key is unknown or revoked"))?;
    let missing: Vec<&str> = required.iter().filter(|r| !key.roles.contains(r)).map(String::as_str).collect();
    if !missing.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "missing-role",
            format!("the API key `{}` lacks the role(s) {}", key.name, missing.join(", ")),
        ));
    }
    Ok(Caller::ApiKey { name: key.name, roles: key.roles })
}

fn signed_caller(
    app: &AppState,
    scheme: Scheme,
    secret_name: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Caller, ApiError> {
    let secret = app.store.secret(secret_name)?.ok_or_else(|| {
        unauthorized("secret-unavailable", format!("the secret `{secret_name}` this webhook verifies with is gone"))
    })?;
    let now = now_ms();
    let signed = Signed { headers, body, now_secs: now / 1000 };
    let verified = signatures::verify(scheme, &secret, &signed).map_err(|e| {
        let code = match e {
            SignatureError::Missing(_) => "missing-signature",
            SignatureError::Stale => "stale-signature",
            SignatureError::Malformed(_) | SignatureError::Mismatch => "bad-signature",
            SignatureError::BadSecret(_) => "secret-unavailable",
        };
        unauthorized(code, e.to_string())
    })?;
    // A signed message may be accepted once: its id is kept past the tolerance window,
    // after which its timestamp alone refuses it.
    if let Some(id) = verified.message_id.filter(|_| scheme == Scheme::StandardWebhooks) {
        let forget_at = now + 2 * signatures::TOLERANCE_SECS * 1000;
        if !app.store.first_sighting(&format!("{}:{secret_name}:{id}", scheme.name()), now, forget_at)? {
            return Err(unauthorized("replayed-signature", format!("message `{id}` was accepted already")));
        }
    }
    Ok(Caller::Signature { scheme })
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Credentials never reach the run's log.
pub(super) fn redact_credentials(headers: &mut [(String, String)]) {
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("cookie") {
            *value = "[redacted]".into();
        }
    }
}

pub(super) fn response_timeout(deadline_ms: u32) -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "response-timeout",
        format!("the run did not respond within {deadline_ms} ms; the call was delivered"),
    )
}

fn check_schema(hook: &HookRecord, data: &Value) -> Result<(), ApiError> {
    match &hook.schema {
        Some(schema) => check_against(schema, data, "the data does not match the webhook's schema"),
        None => Ok(()),
    }
}

/// A 422 listing every way `value` fails `schema`.
pub(super) fn check_against(schema: &Value, value: &Value, what: &str) -> Result<(), ApiError> {
    let failures = rules::schema_failures(schema, value).unwrap_or_else(|e| vec![e.to_string()]);
    if failures.is_empty() {
        return Ok(());
    }
    let mut error =
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "schema-mismatch", format!("{what}: {}", failures.join("; ")));
    error.details = Some(serde_json::json!({ "failures": failures }));
    Err(error)
}

fn check_open(hook: &HookRecord) -> Result<(), ApiError> {
    match hook.state {
        HookState::Open if hook.expired(now_ms()) => Err(ApiError::gone("the webhook has expired")),
        HookState::Open => Ok(()),
        HookState::Used => Err(ApiError::gone("the webhook was single-use and has been used")),
        HookState::Closed => Err(ApiError::gone("the webhook is closed")),
    }
}

/// A GET's query as the run's data: `{name: value}`, the last value winning.
pub(super) fn query_object(query: &[(String, String)]) -> Value {
    let map: Map<String, Value> = query.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    Value::Object(map)
}

pub(super) fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect()
}

/// Turns a recorded response into HTTP, tagged with the ids an operator needs to trace it.
pub(super) fn http_response(response: &HttpResponse, run_id: &str, request_id: &str) -> Response {
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
    for (name, value) in [("latch-run-id", run_id), (super::error::RUN_ANSWER_HEADER, request_id)] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    out
}
