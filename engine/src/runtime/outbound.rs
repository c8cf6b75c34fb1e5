//! `latch:workflow/outbound`: HTTP calls from a run, only to hosts the operator allows.
//! Each call's result is recorded, so a replay never calls again (a crash between the
//! call and its record makes the call again: at least once, like any step).

use std::time::Duration;

use super::HostState;
use super::bindings::outbound::{Host, HttpRequest, HttpResponse as WitHttpResponse};
use super::bindings::types::Error as WitError;
use super::egress::{AllowedHosts, GuardedResolver, InternalAddress, Verdict, is_internal};
use super::webhooks::{diverged_unless, method_from_wit};
use crate::store::records::{Event, Failure, HttpResponse, Method};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What bounds a run's outbound calls, besides the hosts it may call.
#[derive(Debug, Clone, Copy)]
pub struct OutboundLimits {
    /// Larger answers are refused: they would bloat the run's log.
    pub max_answer_bytes: usize,
    /// The longest a run may ask a call to take.
    pub max_timeout: Duration,
}

pub struct OutboundHttp {
    client: Option<reqwest::Client>,
    allowed: AllowedHosts,
    limits: OutboundLimits,
}

impl OutboundHttp {
    pub fn new(allowed: AllowedHosts, limits: OutboundLimits) -> Self {
        // reqwest is built without a TLS crypto provider of its own; ring is ours. Another
        // part of the process may have installed one already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // No redirects (a redirect could lead a run past the allow-list), no proxy from the
        // environment (it would be the one to resolve names), and names resolved here, so
        // that the addresses connected to are the ones checked.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            // Idle connections kept for reuse are few and short-lived: runs calling many
            // hosts must not use up the server's descriptors.
            .pool_max_idle_per_host(4)
            .pool_idle_timeout(Duration::from_secs(15))
            .dns_resolver(GuardedResolver)
            .build();
        if let Err(e) = &client {
            tracing::error!("outbound HTTP is unavailable: {e}");
        }
        OutboundHttp { client: client.ok(), allowed, limits }
    }

    async fn send(&self, method: Method, request: HttpRequest) -> Result<HttpResponse, Failure> {
        let url = reqwest::Url::parse(&request.url)
            .map_err(|e| Failure::new("bad-url", format!("`{}` is not a URL: {e}", request.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Failure::new("bad-url", format!("`{}` is not an http or https URL", request.url)));
        }
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url.port_or_known_default().unwrap_or_default();
        let internal_ok = match self.allowed.check(&host, port, url.scheme()) {
            Verdict::Allowed { internal_ok } => internal_ok,
            Verdict::Refused => {
                return Err(Failure::new(
                    "host-not-allowed",
                    format!(
                        "runs may not call `{host}` on port {port}; the operator allows hosts with \
                         `latch serve --allow-http HOST[:PORT]`"
                    ),
                ));
            }
        };
        // An address in the URL is not resolved: it is checked here.
        let literal = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>();
        if let Ok(ip) = literal
            && is_internal(ip)
            && !internal_ok
        {
            return Err(internal(&host));
        }
        let client = self.client.as_ref().ok_or_else(|| Failure::new("unavailable", "outbound HTTP is unavailable"))?;
        let method = reqwest::Method::from_bytes(method.as_str().as_bytes())
            .map_err(|e| Failure::new("bad-method", e.to_string()))?;
        let timeout = request
            .timeout_ms
            .map_or(DEFAULT_TIMEOUT, |ms| Duration::from_millis(ms.into()))
            .min(self.limits.max_timeout);
        let mut builder = client.request(method, url).timeout(timeout).body(request.body);
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        let mut response = builder.send().await.map_err(send_failure)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| (name.to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(send_failure)? {
            let most = self.limits.max_answer_bytes;
            if body.len() + chunk.len() > most {
                return Err(Failure::new("too-large", format!("the answer is over {most} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
    }
}

fn internal(host: &str) -> Failure {
    Failure::new(
        "host-not-allowed",
        format!(
            "`{host}` is an internal address (loopback, link-local or private), which runs may not call unless \
             the operator names it in `--allow-http`"
        ),
    )
}

fn send_failure(e: reqwest::Error) -> Failure {
    let refused = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
        .find_map(|e| e.downcast_ref::<InternalAddress>());
    if let Some(InternalAddress(host)) = refused {
        return internal(host);
    }
    if e.is_timeout() {
        Failure::new("timeout", format!("the call timed out: {e}"))
    } else if e.is_builder() {
        Failure::new("bad-request", format!("the request cannot be sent: {e}"))
    } else {
        Failure::new("unreachable", format!("the call failed: {e}"))
    }
}

fn response_to_wit(response: HttpResponse) -> WitHttpResponse {
    WitHttpResponse { status: response.status, headers: response.headers, body: response.body }
}

impl Host for HostState {
    async fn send(&mut self, request: HttpRequest) -> wasmtime::Result<Result<WitHttpResponse, WitError>> {
        let method = method_from_wit(request.method);
        let result = match self.journal.replay("http-sent")? {
            Some(Event::HttpSent { method: recorded_method, url, result }) => {
                // Replayed with its URL keys back in place, like every result the run gets.
                diverged_unless(url == request.url && recorded_method == method, || {
                    format!(
                        "the run calls {} {} where its log called {} {url}",
                        method.as_str(),
                        request.url,
                        recorded_method.as_str()
                    )
                })?;
                result
            }
            _ => {
                let url = request.url.clone();
                // What the run made so far (a callback URL it is about to hand out, above
                // all) must be durable before it leaves the process.
                self.commit().await?;
                // Time spent waiting on the network is not the guest's CPU time; a
                // cancellation ends the wait (the guest then traps at its next tick).
                self.cpu.pause();
                let sent = tokio::select! {
                    result = self.shared.outbound.send(method, request) => Some(result),
                    () = self.shared.live.until_cancelled(self.run.id) => None,
                };
                self.cpu.resume();
                let Some(result) = sent else { return Err(super::fault::HostFault::Cancelled.into()) };
                self.journal.record(Event::HttpSent { method, url, result: result.clone() })?;
                result
            }
        };
        Ok(result.map(response_to_wit).map_err(WitError::from))
    }
}
