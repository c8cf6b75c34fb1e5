//! HTTP: the admin API under `/v1` (bearer admin key) and the public ingress
//! (`/hooks/{token}`). Handlers parse and check, persist through the executor, and answer.

mod admin;
mod error;
mod ingress;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use serde_json::Value;

pub use error::ApiError;

use crate::executor::Executor;
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body a webhook accepts.
    pub max_body_bytes: usize,
    /// Largest component upload.
    pub max_module_bytes: usize,
}

pub struct AppState {
    pub executor: Arc<Executor>,
    pub store: Store,
    pub admin_key_sha256: String,
    pub limits: Limits,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(admin::routes(state.clone()))
        .merge(ingress::routes())
        .route("/healthz", axum::routing::get(|| async { axum::Json(serde_json::json!({ "ok": true })) }))
        .fallback(|| async { ApiError::not_found("not-found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "this route does not take that method")
        })
        .layer(axum::middleware::map_response(error::json_errors))
        .with_state(state)
}

/// Reads a body up to `limit` bytes; a larger one is a 413.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
            .any(|e| e.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                format!("the body is larger than the limit of {limit} bytes"),
            )
        } else {
            ApiError::bad_request("bad-body", format!("the body could not be read: {e}"))
        }
    })
}

/// A JSON body of type `T`; `code` and `expected` describe a body of another shape.
async fn read_json<T: serde::de::DeserializeOwned>(
    body: Body,
    limit: usize,
    code: &'static str,
    expected: &str,
) -> Result<T, ApiError> {
    let value = parse_json(&read_body(body, limit).await?)?;
    serde_json::from_value(value).map_err(|e| ApiError::bad_request(code, format!("expected {expected}: {e}")))
}

/// The newest version's description of a module: its triggers above all.
fn latest_info(app: &AppState, module: &str) -> Result<crate::store::records::ModuleInfo, ApiError> {
    let unknown = || ApiError::not_found("unknown-module", format!("no module named `{module}`"));
    let record = app.store.module(module)?.ok_or_else(unknown)?;
    record.latest().map(|version| version.info.clone()).ok_or_else(unknown)
}

/// A JSON body, nesting capped; an empty body is `null`.
fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    Ok(crate::json::parse_body(bytes)?)
}
