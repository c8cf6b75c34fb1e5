//! A node that does not lead (see `store::Leadership`) still takes every call: it passes
//! each one to the leader and relays the leader's answer, streamed (a held caller waits
//! for its run's answer, an event stream flows). When this node comes to lead, its own
//! router takes over (`Dispatch::lead`).
//!
//! The caller is answered only what the leader answered: a 2xx still means the call is
//! durably in its run. If the leader cannot be reached the call was not passed on: 503
//! `no-leader`, retry. If it went away while it had the call, the call may have arrived:
//! 502 `leader-lost`, and a retry with the same `Idempotency-Key` is delivered once. A call
//! is passed on once at most (`latch-forwarded`), so no node passes calls to itself.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::RwLock;
use tower_service::Service;

use super::{ApiError, Limits, read_charged_body};
use crate::store::Leadership;

/// Routes each request to this node's own router once it leads, to the leader before.
pub struct Dispatch {
    leading: OnceLock<Router>,
    forward: Forwarder,
}

impl Dispatch {
    pub fn new(leadership: Arc<Leadership>, limits: Limits) -> Arc<Dispatch> {
        // The one TLS provider the process uses (reqwest is built without a default).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap_or_default();
        Arc::new(Dispatch {
            leading: OnceLock::new(),
            forward: Forwarder { leadership, http, leader: RwLock::default(), limits },
        })
    }

    /// From now on this node answers with `app`.
    pub fn lead(&self, app: Router) {
        let _ = self.leading.set(app);
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new().fallback(dispatch).with_state(self.clone())
    }
}

async fn dispatch(State(dispatch): State<Arc<Dispatch>>, request: Request) -> Response {
    match dispatch.leading.get() {
        Some(app) => match app.clone().call(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        // Passed on once already: the leader it was passed to does not lead (a node that
        // restarted under the leader's old address), so it is not passed on again.
        None if request.headers().contains_key(FORWARDED) => {
            no_leader("the node this call was passed to does not lead")
        }
        None => dispatch.forward.forward(request).await,
    }
}

/// Marks a call passed on by a node that does not lead.
const FORWARDED: &str = "latch-forwarded";

/// How long connecting to the leader may take before it counts as gone.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

struct Forwarder {
    leadership: Arc<Leadership>,
    http: reqwest::Client,
    /// The leader's URL as last read from the database.
    leader: RwLock<Option<String>>,
    limits: Limits,
}

impl Forwarder {
    async fn forward(&self, request: Request) -> Response {
        let (parts, body) = request.into_parts();
        // Read here, bounded as the leader bounds it, so that a slow caller holds only us:
        // only a module upload may be larger than a call's body. Its bytes count against
        // this node's budget for bodies until the leader has answered.
        let upload = parts.method == axum::http::Method::PUT && parts.uri.path().starts_with("/v1/modules/");
        let bounds = if upload { self.limits.module() } else { self.limits.body() };
        let (body, _charge) = match read_charged_body(body, bounds).await {
            Ok(read) => read,
            Err(e) => return e.into_response(),
        };
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        // A leader that moved is looked up again, once.
        for fresh in [false, true] {
            let leader = match self.leader(fresh).await {
                Ok(Some(leader)) => leader,
                Ok(None) => return no_leader("no node leads yet"),
                Err(e) => return no_leader(&format!("the database cannot say which node leads: {e}")),
            };
            let mut call = self.http.request(parts.method.clone(), format!("{leader}{path}")).body(body.clone());
            call = call.header(FORWARDED, "1");
            // The body's length is set again from the body read.
            let passed_on = |name: &HeaderName| !hop_by_hop(name) && name != header::CONTENT_LENGTH;
            for (name, value) in parts.headers.iter().filter(|(name, _)| passed_on(name)) {
                call = call.header(name, value);
            }
            match call.send().await {
                Ok(answer) => return relay(answer),
                // Not sent: the leader moved, or is gone.
                Err(e) if e.is_connect() => continue,
                Err(e) => return leader_lost(&e),
            }
        }
        no_leader("the leader cannot be reached")
    }

    async fn leader(&self, fresh: bool) -> Result<Option<String>, crate::store::StoreError> {
        if !fresh && let Some(leader) = self.leader.read().await.clone() {
            return Ok(Some(leader));
        }
        let leader = self.leadership.leader_url().await?;
        *self.leader.write().await = leader.clone();
        Ok(leader)
    }
}

/// The leader's answer, streamed back as it comes.
fn relay(answer: reqwest::Response) -> Response {
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers().iter().filter(|(name, _)| !hop_by_hop(name)) {
        response = response.header(name, value);
    }
    let body = Body::from_stream(answer.bytes_stream());
    response.body(body).unwrap_or_else(|e| no_leader(&format!("the leader's answer cannot be relayed: {e}")))
}

/// The leader went away while it had the call: it may have taken it.
fn leader_lost(e: &reqwest::Error) -> Response {
    let message = format!(
        "the leader went away while it had the call, which it may have taken: retry with the same \
         Idempotency-Key to have it delivered once ({e})"
    );
    ApiError::new(StatusCode::BAD_GATEWAY, "leader-lost", message).into_response()
}

/// The call was not passed on: retry.
fn no_leader(message: &str) -> Response {
    let mut error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no-leader", message.to_string());
    error.retry_after = Some(1);
    error.into_response()
}

/// Headers about one connection, not the request: not passed on.
fn hop_by_hop(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::HOST,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
}
