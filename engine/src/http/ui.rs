//! The web dashboard at `/ui`: three static files built into the binary (nothing loaded
//! from another host), which talk to the admin API with the key a person signs in with.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Scripts and styles from this server only; the API is reached on the same origin (test
/// calls to a run's URLs too, when `--public-url` is this server's address).
const POLICY: &str =
    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/ui", get(page)).route("/ui/app.css", get(styles)).route("/ui/app.js", get(script))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, POLICY),
        // A new binary's dashboard is seen at once.
        (header::CACHE_CONTROL, "no-cache"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    (headers, body).into_response()
}

/// The dashboard's page.
#[utoipa::path(get, path = "/ui", responses((status = 200, description = "The dashboard (HTML)", content_type = "text/html"), super::answers::AnyRoute))]
pub async fn page() -> Response {
    asset("text/html; charset=utf-8", include_str!("ui/index.html"))
}

/// The dashboard's styles.
#[utoipa::path(get, path = "/ui/app.css", responses((status = 200, description = "CSS", content_type = "text/css"), super::answers::AnyRoute))]
pub async fn styles() -> Response {
    asset("text/css; charset=utf-8", include_str!("ui/app.css"))
}

/// The dashboard's script.
#[utoipa::path(get, path = "/ui/app.js", responses((status = 200, description = "JavaScript", content_type = "text/javascript"), super::answers::AnyRoute))]
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("ui/app.js"))
}
