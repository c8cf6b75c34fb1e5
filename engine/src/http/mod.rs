//! HTTP: the admin API under `/v1` (bearer admin key) and the public ingress
//! (`/hooks/{token}`). Handlers parse and check, persist through the executor, and answer.

mod admin;
mod answers;
mod error;
mod forward;
mod ingress;
mod openapi;
pub mod server;
mod ui;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use serde_json::Value;

pub use error::ApiError;
pub use forward::Dispatch;

use crate::executor::Executor;
use crate::json::{BodyBudget, Charge};

#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body a webhook accepts.
    pub max_body_bytes: usize,
    /// Largest component upload.
    pub max_module_bytes: usize,
    /// How long a body may take to arrive before it must keep up `min_body_rate`.
    pub body_timeout: std::time::Duration,
    /// After the body timeout, a body must arrive at least this fast on average (bytes a
    /// second): a stalled body and a trickle both end in a 408.
    pub min_body_rate: u64,
    /// The bytes all calls' bodies may hold at once, as read and as parsed.
    pub body_budget: BodyBudget,
}

/// What bounds a body being read: its size, its time, and the server's buffer for bodies.
struct BodyBounds<'a> {
    limit: usize,
    timeout: std::time::Duration,
    min_rate: u64,
    budget: &'a BodyBudget,
}

impl Limits {
    fn body(&self) -> BodyBounds<'_> {
        let (timeout, min_rate, budget) = (self.body_timeout, self.min_body_rate, &self.body_budget);
        BodyBounds { limit: self.max_body_bytes, timeout, min_rate, budget }
    }

    fn module(&self) -> BodyBounds<'_> {
        let (timeout, min_rate, budget) = (self.body_timeout, self.min_body_rate, &self.body_budget);
        BodyBounds { limit: self.max_module_bytes, timeout, min_rate, budget }
    }
}

pub struct AppState {
    pub executor: Arc<Executor>,
    pub admin_key_sha256: String,
    pub limits: Limits,
}

pub fn router(state: Arc<AppState>) -> Router {
    let routes = Router::new()
        .merge(admin::routes(state.clone()))
        .merge(ingress::routes())
        .merge(ui::routes())
        .route("/healthz", axum::routing::get(openapi::health))
        .route("/openapi.json", axum::routing::get(openapi::openapi_json))
        .fallback(|| async { ApiError::not_found("not-found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "this route does not take that method")
        });
    // Only when its lines are shown: otherwise no call pays for it.
    let routes = match tracing::enabled!(target: "latch::access", tracing::Level::DEBUG) {
        true => routes.route_layer(axum::middleware::from_fn(access_log)),
        false => routes,
    };
    routes.layer(axum::middleware::map_response(error::json_errors)).with_state(state)
}

/// The API's OpenAPI document, as JSON.
pub fn openapi_document() -> String {
    use utoipa::OpenApi;
    openapi::ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}

/// One debug line per answer, under the target `latch::access`, naming the route it
/// matched and whether the run wrote the answer itself (`RUST_LOG=latch::access=debug` shows them; the e2e suite checks each against
/// the OpenAPI document).
async fn access_log(
    route: axum::extract::MatchedPath,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let by_run = response.headers().contains_key(error::RUN_ANSWER_HEADER);
    tracing::debug!(target: "latch::access", %method, route = route.as_str(), status, by_run, "answered");
    response
}

/// Reads a body whose bytes are given back once it is read (see `read_charged_body`).
async fn read_body(body: Body, bounds: BodyBounds<'_>) -> Result<Bytes, ApiError> {
    Ok(read_charged_body(body, bounds).await?.0)
}

/// Reads a body up to `limit` bytes (a larger one is a 413), within the body timeout plus
/// what the minimum rate allows for what has arrived (else a 408).
/// Bodies hold their bytes against the server's budget for bodies from their first byte,
/// for as long as the returned charge lives: when it is full, a 429 (so that many slow
/// bodies, or many held callers, cannot hold the server's memory).
async fn read_charged_body(body: Body, bounds: BodyBounds<'_>) -> Result<(Bytes, Charge), ApiError> {
    use http_body_util::BodyExt;
    let BodyBounds { limit, timeout, min_rate, budget } = bounds;
    let began = tokio::time::Instant::now();
    let mut body = http_body_util::Limited::new(body, limit);
    let mut read = Vec::new();
    let mut charge = budget.charge();
    loop {
        let allowed = timeout + std::time::Duration::from_millis(read.len() as u64 * 1000 / min_rate);
        let frame = match tokio::time::timeout_at(began + allowed, body.frame()).await {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body-timeout",
                    "the request body did not arrive in time",
                ));
            }
            Ok(None) => return Ok((Bytes::from(read), charge)),
            Ok(Some(Err(e))) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body-too-large",
                    format!("the body is larger than the limit of {limit} bytes"),
                ));
            }
            Ok(Some(Err(e))) => {
                return Err(ApiError::bad_request("bad-body", format!("the body could not be read: {e}")));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            charge.add(data.len())?;
            read.extend_from_slice(&data);
        }
    }
}

/// A JSON body of type `T`; `code` and `expected` describe a body of another shape.
async fn read_json<T: serde::de::DeserializeOwned>(
    body: Body,
    bounds: BodyBounds<'_>,
    code: &'static str,
    expected: &str,
) -> Result<T, ApiError> {
    let value = parse_json(&read_body(body, bounds).await?)?;
    serde_json::from_value(value).map_err(|e| ApiError::bad_request(code, format!("expected {expected}: {e}")))
}

/// A JSON body, nesting capped; an empty body is `null`.
fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    Ok(crate::json::parse_body(bytes)?)
}
