//! `GET /openapi.json`: the API described from its handlers (utoipa's `#[utoipa::path]`
//! beside each one), with the one error shape and the answers every route may give.
//! The e2e suite checks every answer it gets against this document.

use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

use super::{admin, ingress, ui};

/// Every error: `{"error": {"code", "message", "details"?}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, kebab-case: `unknown-run`, `body-too-large`, `overloaded`...
    pub code: String,
    /// For a person.
    pub message: String,
    /// More about some errors, such as every way a payload failed its schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// What any route may answer besides its own.
#[derive(IntoResponses)]
#[allow(dead_code)] // a description of answers; `ApiError` makes them
pub enum AnyRoute {
    /// The route does not take this method (`Allow` lists those it takes).
    #[response(status = 405)]
    MethodNotAllowed(#[to_schema] ErrorBody),
    /// The engine failed (`storage`, `engine`, `internal`).
    #[response(status = 500)]
    Internal(#[to_schema] ErrorBody),
}

/// What every admin route may answer besides its own.
#[derive(IntoResponses)]
#[allow(dead_code)] // a description of answers; `ApiError` makes them
pub enum AdminRoute {
    /// `missing-admin-key` or `bad-admin-key`.
    #[response(status = 401)]
    Unauthorized(#[to_schema] ErrorBody),
    #[response(status = 405)]
    MethodNotAllowed(#[to_schema] ErrorBody),
    #[response(status = 500)]
    Internal(#[to_schema] ErrorBody),
}

/// What a route that reads a body may answer about it.
#[derive(IntoResponses)]
#[allow(dead_code)] // a description of answers; `ApiError` makes them
pub enum ReadsBody {
    /// `bad-json`, `too-deep` (nested past the cap), or a body of the wrong shape.
    #[response(status = 400)]
    BadRequest(#[to_schema] ErrorBody),
    /// `body-timeout`: the body did not arrive in time.
    #[response(status = 408)]
    Timeout(#[to_schema] ErrorBody),
    /// `body-too-large`.
    #[response(status = 413)]
    TooLarge(#[to_schema] ErrorBody),
    /// `overloaded`: the server holds too many bodies being read (`Retry-After`).
    #[response(status = 429)]
    Overloaded(#[to_schema] ErrorBody),
}

/// What a public call (webhook or trigger) may answer, besides the run's own answer.
#[derive(IntoResponses)]
#[allow(dead_code)] // a description of answers; `ApiError` makes them
pub enum PublicCall {
    /// `bad-json`, `too-deep`, ...
    #[response(status = 400)]
    BadRequest(#[to_schema] ErrorBody),
    /// A signature, bearer token or API key is missing or wrong.
    #[response(status = 401)]
    Unauthorized(#[to_schema] ErrorBody),
    /// The caller is known but not allowed (`auth-mismatch`, a role it lacks).
    #[response(status = 403)]
    Forbidden(#[to_schema] ErrorBody),
    /// `unknown-webhook`, `unknown-module`, `unknown-trigger`, `unknown-execution`, `nothing-waiting`.
    #[response(status = 404)]
    NotFound(#[to_schema] ErrorBody),
    /// The URL does not take this method (`Allow` lists those it takes).
    #[response(status = 405)]
    MethodNotAllowed(#[to_schema] ErrorBody),
    #[response(status = 408)]
    Timeout(#[to_schema] ErrorBody),
    /// `run-ended`.
    #[response(status = 409)]
    Conflict(#[to_schema] ErrorBody),
    /// `gone`: the webhook closed, or its run ended before taking the call.
    #[response(status = 410)]
    Gone(#[to_schema] ErrorBody),
    #[response(status = 413)]
    TooLarge(#[to_schema] ErrorBody),
    /// `schema-mismatch` (with `details.failures`), `idempotency-key-reused`.
    #[response(status = 422)]
    Unprocessable(#[to_schema] ErrorBody),
    /// `overloaded` or `run-inbox-full`, with `Retry-After`.
    #[response(status = 429)]
    TooMany(#[to_schema] ErrorBody),
    #[response(status = 500)]
    Internal(#[to_schema] ErrorBody),
    /// `no-answer`: the run ended without answering a caller it held.
    #[response(status = 502)]
    NoAnswer(#[to_schema] ErrorBody),
    /// `not-taken`: the run did not take the call in time (`Retry-After`); it was not delivered.
    #[response(status = 503)]
    NotTaken(#[to_schema] ErrorBody),
    /// `response-timeout`: the run took the call but did not answer in time.
    #[response(status = 504)]
    ResponseTimeout(#[to_schema] ErrorBody),
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Latch",
        description = "A durable workflow engine whose workflows are WebAssembly components. \
            Routes under /v1 need `Authorization: Bearer <admin key>`, but for \
            POST /v1/hooks/{token}, which takes an API key."
    ),
    paths(
        admin::list_modules,
        admin::get_module,
        admin::put_module,
        admin::start_run,
        admin::upgrade,
        admin::get_sample,
        admin::listen_for_sample,
        admin::list_runs,
        admin::get_run,
        admin::get_events,
        admin::cancel_run,
        admin::get_requests,
        admin::list_keys,
        admin::create_key,
        admin::revoke_key,
        admin::list_secrets,
        admin::put_secret,
        admin::delete_secret,
        admin::metrics,
        ingress::call_hook,
        ingress::resume_hook,
        ingress::call_trigger,
        health,
        openapi_json,
        ui::page,
        ui::styles,
        ui::script,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerKeys)
)]
pub struct ApiDoc;

/// The admin key (and API keys) as bearer tokens.
struct BearerKeys;

impl Modify for BearerKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("admin_key", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// Whether the server is up.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "`{\"ok\": true}`", body = Value), AnyRoute))]
pub async fn health() -> axum::Json<Value> {
    axum::Json(serde_json::json!({ "ok": true }))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI 3.1", body = Value), AnyRoute))]
pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
