use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::bindings::latch::workflow::{responses, types as wit};
use crate::{Error, Result};

/// An HTTP method a webhook or trigger accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`: the request data is the query parameters as a JSON object.
    Get,
    /// `POST`: the request data is the JSON body.
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
}

impl Method {
    /// The method's name in upper case, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scheme for signed webhook calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignatureScheme {
    /// The Standard Webhooks specification (`webhook-signature` header).
    StandardWebhooks,
    /// Stripe's `Stripe-Signature` header.
    Stripe,
    /// GitHub's `X-Hub-Signature-256` header.
    Github,
}

/// How an external caller must prove who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Nothing: the unguessable URL is the capability.
    None,
    /// The engine makes a key and embeds it in the URL (`?key=`).
    UrlKey,
    /// `Authorization: Bearer <api key>`; the key must carry every listed role.
    Bearer(Vec<String>),
    /// An HMAC signature over the request, with the secret stored under `secret`.
    Signature {
        /// Which signature format the caller uses.
        scheme: SignatureScheme,
        /// Name of a secret stored with `PUT /v1/secrets/{name}`.
        secret: String,
    },
}

/// Who made a call, as far as the engine verified it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// No credentials were required.
    Anonymous,
    /// The caller presented the URL key.
    UrlKey,
    /// The caller presented this API key.
    ApiKey {
        /// The key's name.
        name: String,
        /// The key's roles.
        roles: Vec<String>,
    },
    /// The caller signed the request with this scheme.
    Signature(SignatureScheme),
}

/// An HTTP answer to a webhook or trigger caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// Body text; the engine treats it as JSON unless a content-type header says otherwise.
    pub body: String,
}

impl Response {
    /// A response with this status, no headers and an empty body.
    pub fn new(status: u16) -> Self {
        Response { status, headers: Vec::new(), body: String::new() }
    }

    /// A JSON response: `value` serialized, with `content-type: application/json`.
    pub fn json(status: u16, value: &impl Serialize) -> Result<Self> {
        Ok(Response::new(status).header("content-type", "application/json").body(serde_json::to_string(value)?))
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body text.
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    /// The SDK's default automatic answer: `202 {"accepted":true}`.
    pub fn accepted() -> Self {
        Response::new(202).header("content-type", "application/json").body(r#"{"accepted":true}"#)
    }
}

/// How long a caller is held for the run's own answer unless the workflow says otherwise.
pub const DEFAULT_ANSWER_DEADLINE_MS: u32 = 30_000;

/// When the caller of a webhook or trigger is answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseMode {
    /// At once, with this response, as soon as the request is durably stored.
    Automatic(Response),
    /// Held until the run calls [`Request::respond`], or until `deadline_ms` pass (then 504).
    Manual {
        /// How long the caller is held, in milliseconds.
        deadline_ms: u32,
    },
}

impl Default for ResponseMode {
    /// Automatic, with [`Response::accepted`].
    fn default() -> Self {
        ResponseMode::Automatic(Response::accepted())
    }
}

/// An HTTP request delivered to the run (a webhook call or a start trigger call).
#[derive(Clone, Debug)]
pub struct Request {
    /// Delivery id, used by [`Request::respond`].
    pub id: String,
    /// Id of the webhook (or trigger) it arrived on.
    pub webhook: String,
    /// The HTTP method.
    pub method: Method,
    /// The request path.
    pub path: String,
    /// Query parameters, in order.
    pub query: Vec<(String, String)>,
    /// Request headers, in order.
    pub headers: Vec<(String, String)>,
    /// A POST's JSON body, or a GET's query parameters as a JSON object
    /// (`null` if empty; a JSON string if the body was not JSON).
    pub data: serde_json::Value,
    /// Who made the call.
    pub caller: Caller,
    /// When the engine received it, in milliseconds since the Unix epoch.
    pub received_at_ms: u64,
}

impl Request {
    /// The request data as `T`; fails with code `bad-request` when it does not match.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        T::deserialize(&self.data).map_err(|e| Error::new("bad-request", e.to_string()))
    }

    /// The first header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// Answers the caller of a request that arrived in manual response mode.
    pub fn respond(&self, response: Response) -> Result<()> {
        responses::respond(&self.id, &response.into())?;
        Ok(())
    }
}

/// Parses a run's API input: empty text is `null`, anything else must be JSON.
pub(crate) fn parse_input(text: &str) -> Result<serde_json::Value> {
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(text).map_err(|e| Error::new("bad-input", format!("input is not JSON: {e}")))
}

/// Parses request data leniently: empty is `null`, non-JSON text is kept as a string.
fn parse_data(text: String) -> serde_json::Value {
    if text.trim().is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
}

impl From<Method> for wit::Method {
    fn from(method: Method) -> Self {
        match method {
            Method::Get => wit::Method::Get,
            Method::Post => wit::Method::Post,
            Method::Put => wit::Method::Put,
            Method::Patch => wit::Method::Patch,
            Method::Delete => wit::Method::Delete,
        }
    }
}

impl From<wit::Method> for Method {
    fn from(method: wit::Method) -> Self {
        match method {
            wit::Method::Get => Method::Get,
            wit::Method::Post => Method::Post,
            wit::Method::Put => Method::Put,
            wit::Method::Patch => Method::Patch,
            wit::Method::Delete => Method::Delete,
        }
    }
}

impl From<SignatureScheme> for wit::SignatureScheme {
    fn from(scheme: SignatureScheme) -> Self {
        match scheme {
            SignatureScheme::StandardWebhooks => wit::SignatureScheme::StandardWebhooks,
            SignatureScheme::Stripe => wit::SignatureScheme::Stripe,
            SignatureScheme::Github => wit::SignatureScheme::Github,
        }
    }
}

impl From<wit::SignatureScheme> for SignatureScheme {
    fn from(scheme: wit::SignatureScheme) -> Self {
        match scheme {
            wit::SignatureScheme::StandardWebhooks => SignatureScheme::StandardWebhooks,
            wit::SignatureScheme::Stripe => SignatureScheme::Stripe,
            wit::SignatureScheme::Github => SignatureScheme::Github,
        }
    }
}

impl From<Auth> for wit::Auth {
    fn from(auth: Auth) -> Self {
        match auth {
            Auth::None => wit::Auth::None,
            Auth::UrlKey => wit::Auth::UrlKey,
            Auth::Bearer(roles) => wit::Auth::Bearer(roles),
            Auth::Signature { scheme, secret } => {
                wit::Auth::Signature(wit::SignatureAuth { scheme: scheme.into(), secret })
            }
        }
    }
}

impl From<wit::Caller> for Caller {
    fn from(caller: wit::Caller) -> Self {
        match caller {
            wit::Caller::Anonymous => Caller::Anonymous,
            wit::Caller::UrlKey => Caller::UrlKey,
            wit::Caller::ApiKey(key) => Caller::ApiKey { name: key.name, roles: key.roles },
            wit::Caller::Signature(scheme) => Caller::Signature(scheme.into()),
        }
    }
}

impl From<Response> for wit::Response {
    fn from(response: Response) -> Self {
        wit::Response { status: response.status, headers: response.headers, body: response.body }
    }
}

impl From<ResponseMode> for wit::ResponseMode {
    fn from(mode: ResponseMode) -> Self {
        match mode {
            ResponseMode::Automatic(response) => wit::ResponseMode::Automatic(response.into()),
            ResponseMode::Manual { deadline_ms } => wit::ResponseMode::Manual(deadline_ms),
        }
    }
}

impl From<wit::IncomingRequest> for Request {
    fn from(request: wit::IncomingRequest) -> Self {
        Request {
            id: request.id,
            webhook: request.webhook,
            method: request.method.into(),
            path: request.path,
            query: request.query,
            headers: request.headers,
            data: parse_data(request.data),
            caller: request.caller.into(),
            received_at_ms: request.received_at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(data: &str) -> Request {
        wit::IncomingRequest {
            id: "r1".into(),
            webhook: "w1".into(),
            method: wit::Method::Post,
            path: "/h/t".into(),
            query: vec![],
            headers: vec![("Content-Type".into(), "application/json".into())],
            data: data.into(),
            caller: wit::Caller::Anonymous,
            received_at_ms: 7,
        }
        .into()
    }

    #[test]
    fn request_data_is_parsed_leniently() {
        assert_eq!(request(r#"{"a":1}"#).data, serde_json::json!({"a": 1}));
        assert_eq!(request("").data, serde_json::Value::Null);
        assert_eq!(request("plain").data, serde_json::json!("plain"));
    }

    #[test]
    fn headers_match_case_insensitively() {
        let request = request("{}");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("x-missing"), None);
    }

    #[test]
    fn request_json_reports_bad_request() {
        let request = request(r#"{"n":1}"#);
        assert_eq!(request.json::<serde_json::Map<_, _>>().unwrap().len(), 1);
        assert_eq!(request.json::<u32>().unwrap_err().code, "bad-request");
    }

    #[test]
    fn api_input_must_be_json() {
        assert_eq!(parse_input(" ").unwrap(), serde_json::Value::Null);
        assert_eq!(parse_input("{").unwrap_err().code, "bad-input");
    }

    #[test]
    fn json_response_sets_content_type() {
        let response = Response::json(201, &serde_json::json!({"ok": true})).unwrap();
        assert_eq!(response.status, 201);
        assert_eq!(response.body, r#"{"ok":true}"#);
        assert_eq!(response.headers, vec![("content-type".to_string(), "application/json".to_string())]);
    }
}
