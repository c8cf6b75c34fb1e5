use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::bindings::latch::workflow::outbound;
use crate::{Error, Method, Result};

/// An HTTP request a run sends to another system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// The method.
    pub method: Method,
    /// The full URL; its host must be allowed by the operator (`--allow-http`).
    pub url: String,
    /// Request headers.
    pub headers: Vec<(String, String)>,
    /// The body text.
    pub body: String,
    /// At most this long for the whole exchange; the engine's default is 30 seconds.
    pub timeout_ms: Option<u32>,
}

impl HttpRequest {
    /// A request with no headers and no body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        HttpRequest { method, url: url.into(), headers: Vec::new(), body: String::new(), timeout_ms: None }
    }

    /// A GET request.
    pub fn get(url: impl Into<String>) -> Self {
        HttpRequest::new(Method::Get, url)
    }

    /// A POST request.
    pub fn post(url: impl Into<String>) -> Self {
        HttpRequest::new(Method::Post, url)
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets a JSON body and its content type.
    pub fn json(self, value: &impl Serialize) -> Result<Self> {
        let mut request = self.header("content-type", "application/json");
        request.body = serde_json::to_string(value)?;
        Ok(request)
    }

    /// Gives up after this many milliseconds.
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// Sends the request. The result is recorded: a replay gets it back without calling
    /// again. Errors: `host-not-allowed`, `bad-url`, `timeout`, `unreachable`, `too-large`.
    pub fn send(self) -> Result<HttpResponse> {
        let request = outbound::HttpRequest {
            method: self.method.into(),
            url: self.url,
            headers: self.headers,
            body: self.body,
            timeout_ms: self.timeout_ms,
        };
        let response = outbound::send(&request)?;
        Ok(HttpResponse { status: response.status, headers: response.headers, body: response.body })
    }
}

/// The answer to an [`HttpRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// The body text.
    pub body: String,
}

impl HttpResponse {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON of type `T`; fails with code `bad-response` when it is not.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.body).map_err(|e| Error::new("bad-response", e.to_string()))
    }
}
