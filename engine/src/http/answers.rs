//! The answers routes give, as the OpenAPI document describes them: the one error shape
//! (which `ApiError` is written as) and the sets of error answers routes share.

use serde::Serialize;
use serde_json::Value;
use utoipa::{IntoResponses, ToSchema};

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
