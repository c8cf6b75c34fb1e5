//! `latch:workflow/outbound`: HTTP calls from a run, only to hosts the operator allows.
//! Each call's result is recorded, so a replay never calls again (a crash between the
//! call and its record makes the call again: at least once, like any step).

use std::time::Duration;

use super::HostState;
use super::bindings::outbound::{Host, HttpRequest, HttpResponse as WitHttpResponse};
use super::bindings::types::Error as WitError;
use super::webhooks::{diverged_unless, method_from_wit};
use crate::store::records::{Event, Failure, HttpResponse, Method};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Larger answers are refused: they would bloat the run's log.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// The hosts runs may call: exact names, `*.example.com` for subdomains, or `*` for any.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts(Vec<String>);

impl AllowedHosts {
    pub fn new(hosts: impl IntoIterator<Item = String>) -> Self {
        AllowedHosts(hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect())
    }

    fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.0.iter().any(|allowed| {
            allowed == "*"
                || *allowed == host
                || allowed.strip_prefix("*.").is_some_and(|domain| host.ends_with(&format!(".{domain}")))
        })
    }
}

pub struct OutboundHttp {
    client: Option<reqwest::Client>,
    allowed: AllowedHosts,
}

impl OutboundHttp {
    pub fn new(allowed: AllowedHosts) -> Self {
        // reqwest is built without a TLS crypto provider of its own; ring is ours. Another
        // part of the process may have installed one already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // No redirects: a redirect could lead a run past the allow-list.
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build();
        if let Err(e) = &client {
            tracing::error!("outbound HTTP is unavailable: {e}");
        }
        OutboundHttp { client: client.ok(), allowed }
    }

    async fn send(&self, method: Method, request: HttpRequest) -> Result<HttpResponse, Failure> {
        let url = reqwest::Url::parse(&request.url)
            .map_err(|e| Failure::new("bad-url", format!("`{}` is not a URL: {e}", request.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Failure::new("bad-url", format!("`{}` is not an http or https URL", request.url)));
        }
        let host = url.host_str().unwrap_or_default().to_string();
        if !self.allowed.allows(&host) {
            return Err(Failure::new(
                "host-not-allowed",
                format!("runs may not call `{host}`; the operator allows hosts with `latch serve --allow-http HOST`"),
            ));
        }
        let client = self.client.as_ref().ok_or_else(|| Failure::new("unavailable", "outbound HTTP is unavailable"))?;
        let method = reqwest::Method::from_bytes(method.as_str().as_bytes())
            .map_err(|e| Failure::new("bad-method", e.to_string()))?;
        let timeout = request.timeout_ms.map_or(DEFAULT_TIMEOUT, |ms| Duration::from_millis(ms.into()));
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
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(Failure::new("too-large", format!("the answer is over {MAX_RESPONSE_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
    }
}

fn send_failure(e: reqwest::Error) -> Failure {
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
                self.shared.store.flush().await.map_err(super::fault::HostFault::from)?;
                // Time spent waiting on the network is not the guest's CPU time.
                self.cpu.pause();
                let result = self.shared.outbound.send(method, request).await;
                self.cpu.resume();
                self.journal.record(Event::HttpSent { method, url, result: result.clone() })?;
                result
            }
        };
        Ok(result.map(response_to_wit).map_err(WitError::from))
    }
}

#[cfg(test)]
mod tests {
    use super::AllowedHosts;

    #[test]
    fn the_allow_list_matches_names_subdomains_and_any() {
        let allowed = AllowedHosts::new(["vendor.example".to_string(), "*.payments.test".to_string()]);
        assert!(allowed.allows("vendor.example"));
        assert!(allowed.allows("VENDOR.example"));
        assert!(allowed.allows("eu.payments.test"));
        assert!(!allowed.allows("payments.test"));
        assert!(!allowed.allows("evil-vendor.example"));
        assert!(AllowedHosts::new(["*".to_string()]).allows("anything"));
        assert!(!AllowedHosts::default().allows("localhost"));
    }
}
