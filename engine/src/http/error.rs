//! Every error leaves as `{"error":{"code":"...","message":"..."}}` with its status.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::executor::ExecError;
use crate::runtime::RuntimeError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// For 405: the methods the resource takes.
    pub allow: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), allow: None }
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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": { "code": self.code, "message": self.message } }));
        let mut response = (self.status, body).into_response();
        if let Some(allow) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        response
    }
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
            ExecError::UnknownModule(_) => ApiError::not_found("unknown-module", message),
            ExecError::Gone => ApiError::gone(message),
            ExecError::Store(e) => e.into(),
            ExecError::Runtime(e) => e.into(),
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
            RuntimeError::Store(e) => return e.into(),
            RuntimeError::MissingVersion(_) | RuntimeError::Cache(_) | RuntimeError::Wasmtime(_) => {
                return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "engine", message);
            }
        };
        ApiError::bad_request(code, message)
    }
}
