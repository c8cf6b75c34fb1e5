//! `GET /openapi.json`: the API described from its handlers (utoipa's `#[utoipa::path]`
//! beside each one), with the one error shape and the answers every route may give.
//! The e2e suite checks every answer it gets against this document.

use serde_json::Value;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::answers::{AnyRoute, ErrorBody, ErrorDetail};
use super::{admin, ingress, ui};

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
