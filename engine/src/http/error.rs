//! Every error leaves as `{"error":{"code":"...","message":"..."}}` with its status.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::answers::{ErrorBody, ErrorDetail};
use crate::auth::callers::Refusal;
use crate::executor::ExecError;
use crate::json::JsonError;
use crate::runtime::RuntimeError;
use crate::store::StoreError;
use crate::store::records::{Method, NotTakenReason};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// For 405: the methods the resource takes.
    pub allow: Option<String>,
    /// For 429 and 503: when to try again, in seconds.
    pub retry_after: Option<u64>,
    /// Sent before the request's body was read: the connection closes after the answer,
    /// so that the unread body is not taken for the next request.
    pub close: bool,
    /// More about the error, such as every way a payload failed its schema.
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), allow: None, retry_after: None, close: false, details: None }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::GONE, "gone", message)
    }

    /// 405, naming the methods the URL takes (in `Allow` too).
    pub fn method_not_allowed(methods: &[Method]) -> ApiError {
        let allow: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
        let message = format!("this URL takes {}", allow.join(", "));
        let mut error = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", message);
        error.allow = Some(allow.join(", "));
        error
    }

    /// The same error, answered before the body was read (see `close`).
    pub fn before_body(mut self) -> ApiError {
        self.close = true;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = ErrorDetail { code: self.code.to_string(), message: self.message, details: self.details };
        let body = Json(ErrorBody { error });
        let mut response = (self.status, body).into_response();
        if let Some(allow) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.close {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// The header that marks an answer the run wrote itself; it is passed on untouched.
pub const RUN_ANSWER_HEADER: &str = "latch-request-id";

/// Turns every other error answer that is not JSON yet (axum's extractor rejections, such
/// as a query or a path that does not parse) into the JSON error shape.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let from_run = response.headers().contains_key(RUN_ANSWER_HEADER);
    if !(status.is_client_error() || status.is_server_error()) || is_json || from_run {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { text };
    let code = match status {
        StatusCode::BAD_REQUEST => "bad-request",
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "body-too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        _ if status.is_client_error() => "bad-request",
        _ => "internal",
    };
    let mut error = ApiError::new(status, code, message);
    error.allow = parts.headers.get(header::ALLOW).and_then(|v| v.to_str().ok()).map(str::to_string);
    error.into_response()
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        tracing::error!("storage error: {e}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string())
    }
}

impl From<ExecError> for ApiError {
    fn from(e: ExecError) -> ApiError {
        let message = e.to_string();
        match e {
            ExecError::BadModuleName(_) => ApiError::bad_request("bad-module-name", message),
            ExecError::BadName(_) => ApiError::bad_request("bad-name", message),
            ExecError::NameTaken(_) => ApiError::new(StatusCode::CONFLICT, "name-taken", message),
            ExecError::UnknownKey(_) => ApiError::not_found("unknown-key", message),
            ExecError::UnknownSecret(_) => ApiError::not_found("unknown-secret", message),
            ExecError::UnknownModule(_) => ApiError::not_found("unknown-module", message),
            ExecError::UnknownWebhook => ApiError::not_found("unknown-webhook", message),
            ExecError::UnknownTrigger(_) => ApiError::not_found("unknown-trigger", message),
            ExecError::Gone(_) => ApiError::gone(message),
            ExecError::UnknownRun(_) => ApiError::not_found("unknown-run", message),
            ExecError::UnknownExecution(_) => ApiError::not_found("unknown-execution", message),
            ExecError::NothingWaiting(..) => ApiError::not_found("nothing-waiting", message),
            ExecError::Ended(..) => ApiError::new(StatusCode::CONFLICT, "run-ended", message),
            ExecError::Refused(refusal) => refusal.into(),
            ExecError::AuthMismatch => ApiError::new(StatusCode::FORBIDDEN, "auth-mismatch", message),
            ExecError::MethodNotAllowed(methods) => ApiError::method_not_allowed(&methods),
            ExecError::Json(e) => e.into(),
            ExecError::SchemaMismatch { failures, .. } => {
                let mut error = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "schema-mismatch", message);
                error.details = Some(json!({ "failures": failures }));
                error
            }
            ExecError::NotTaken(NotTakenReason::TimedOut | NotTakenReason::Restarted) => {
                let mut error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not-taken", message);
                error.retry_after = Some(1);
                error
            }
            ExecError::NotTaken(_) => ApiError::gone(message),
            ExecError::ResponseTimeout(_) => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "response-timeout", message),
            ExecError::NoAnswer => ApiError::new(StatusCode::BAD_GATEWAY, "no-answer", message),
            ExecError::Undurable => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", message),
            ExecError::Overloaded => {
                let mut error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", message);
                error.retry_after = Some(1);
                error
            }
            ExecError::InboxFull(_) => {
                let mut error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "run-inbox-full", message);
                error.retry_after = Some(1);
                error
            }
            ExecError::UnknownVersion(..) => ApiError::not_found("unknown-version", message),
            ExecError::VersionOfAnotherModule(..) => ApiError::bad_request("version-of-another-module", message),
            ExecError::MessageReused => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused", message)
            }
            ExecError::Store(e) => e.into(),
            ExecError::Runtime(e) => e.into(),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        let status = if refusal.forbidden { StatusCode::FORBIDDEN } else { StatusCode::UNAUTHORIZED };
        ApiError::new(status, refusal.code, refusal.message)
    }
}

impl From<JsonError> for ApiError {
    fn from(e: JsonError) -> ApiError {
        let message = e.to_string();
        match e {
            JsonError::Invalid(_) => ApiError::bad_request("bad-json", message),
            JsonError::TooDeep => ApiError::bad_request("too-deep", message),
            JsonError::BudgetFull => {
                let mut error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", message);
                error.retry_after = Some(1);
                error
            }
            JsonError::OverBudget(_) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body-too-large", message),
        }
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> ApiError {
        let message = e.to_string();
        let code = match e {
            RuntimeError::NotWasm => "not-wasm",
            RuntimeError::CoreModule => "not-a-component",
            RuntimeError::Invalid(_) => "invalid-component",
            RuntimeError::WorldMismatch(_) => "world-mismatch",
            RuntimeError::DescribeFailed(_) => "describe-failed",
            RuntimeError::BadTrigger { .. } => "bad-trigger",
            RuntimeError::Store(e) => return e.into(),
            RuntimeError::MissingVersion(_) | RuntimeError::Cache(_) | RuntimeError::Wasmtime(_) => {
                return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "engine", message);
            }
        };
        ApiError::bad_request(code, message)
    }
}
