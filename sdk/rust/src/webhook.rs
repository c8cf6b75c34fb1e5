use crate::__private::bindings::latch::workflow::{types, waits, webhooks};
use crate::{Auth, Error, Method, Request, Response, ResponseMode, Result, SignatureScheme};

/// How a webhook is made. The default: random token, POST only, single use, no auth,
/// automatic `202 {"accepted":true}` answer, no expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookOptions {
    /// A caller-chosen token; `None` lets the engine make a random one.
    pub token: Option<String>,
    /// Accepted methods; empty means POST only.
    pub methods: Vec<Method>,
    /// Whether the webhook answers 410 after its first accepted call.
    pub single_use: bool,
    /// How callers must prove who they are.
    pub auth: Auth,
    /// Whether a caller that fails authentication gets an error (the default) or a plain
    /// `200 {"activated":false}` while nothing is delivered.
    pub ignore_auth_failures: bool,
    /// When and how callers are answered.
    pub response: ResponseMode,
    /// Milliseconds after which the webhook answers 410.
    pub expires_in_ms: Option<u64>,
    /// A JSON Schema (as text) the request data must match.
    pub schema: Option<String>,
    /// A CEL expression over method, headers, query and body; false ignores the call.
    pub condition: Option<String>,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            token: None,
            methods: vec![Method::Post],
            single_use: true,
            auth: Auth::None,
            ignore_auth_failures: false,
            response: ResponseMode::default(),
            expires_in_ms: None,
            schema: None,
            condition: None,
        }
    }
}

impl WebhookOptions {
    /// The default options (see the type's documentation).
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses this token in the URL instead of a random one (fails later if already taken).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Accepts these methods instead of POST only.
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = methods.into_iter().collect();
        self
    }

    /// Accepts any number of calls instead of one.
    pub fn many(mut self) -> Self {
        self.single_use = false;
        self
    }

    /// Requires this kind of caller authentication.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Requires the engine-made key embedded in the URL (`?key=`).
    pub fn url_key(self) -> Self {
        self.auth(Auth::UrlKey)
    }

    /// Requires `Authorization: Bearer <api key>` with a key holding every one of `roles`.
    pub fn bearer(self, roles: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.auth(Auth::Bearer(roles.into_iter().map(Into::into).collect()))
    }

    /// Requires an HMAC signature in `scheme`, checked with the secret stored as `secret`.
    pub fn signature(self, scheme: SignatureScheme, secret: impl Into<String>) -> Self {
        self.auth(Auth::Signature { scheme, secret: secret.into() })
    }

    /// Answers callers that fail authentication `200 {"activated":false}` instead of an
    /// error; their calls are not delivered.
    pub fn ignore_auth_failures(mut self) -> Self {
        self.ignore_auth_failures = true;
        self
    }

    /// Answers callers at once with this response.
    pub fn response(mut self, response: Response) -> Self {
        self.response = ResponseMode::Automatic(response);
        self
    }

    /// Holds callers until the run calls [`Request::respond`], for at most 30 seconds
    /// (then 504).
    pub fn manual(self) -> Self {
        self.manual_response(crate::http::DEFAULT_ANSWER_DEADLINE_MS)
    }

    /// Holds callers until the run calls [`Request::respond`], or `deadline_ms` pass (then 504).
    pub fn manual_response(mut self, deadline_ms: u32) -> Self {
        self.response = ResponseMode::Manual { deadline_ms };
        self
    }

    /// Makes the webhook answer 410 once `ms` milliseconds have passed.
    pub fn expires_in(mut self, ms: u64) -> Self {
        self.expires_in_ms = Some(ms);
        self
    }

    /// Rejects calls whose data does not match this JSON Schema.
    pub fn schema(mut self, schema: &serde_json::Value) -> Self {
        self.schema = Some(schema.to_string());
        self
    }

    /// Ignores calls for which this CEL expression is false.
    pub fn condition(mut self, expression: impl Into<String>) -> Self {
        self.condition = Some(expression.into());
        self
    }
}

/// A URL owned by the run that external systems call; the run reads the calls in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    id: String,
    token: String,
    url: String,
}

impl Webhook {
    /// Creates a webhook; its URL is live until it is used up, expires or is closed.
    pub fn create(options: WebhookOptions) -> Result<Webhook> {
        let hook = webhooks::create(&options.into())?;
        Ok(Webhook { id: hook.id, token: hook.token, url: hook.url })
    }

    /// The webhook's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The token in the webhook's URL.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The full public URL to hand to the external system.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Waits, without a time limit, for the next call (one that already arrived returns
    /// at once). Fails with code `closed` when the engine reports the webhook closed.
    pub fn next(&self) -> Result<Request> {
        match waits::next(&self.id, None) {
            waits::NextResult::Request(request) => Ok(request.into()),
            waits::NextResult::TimedOut => {
                Err(Error::new("timed-out", format!("webhook {} timed out without a time limit", self.id)))
            }
            waits::NextResult::Closed => Err(closed(&self.id)),
        }
    }

    /// Waits at most `ms` milliseconds for the next call; `None` if none came in time.
    /// Fails with code `closed` when the engine reports the webhook closed.
    pub fn next_timeout(&self, ms: u64) -> Result<Option<Request>> {
        match waits::next(&self.id, Some(ms)) {
            waits::NextResult::Request(request) => Ok(Some(request.into())),
            waits::NextResult::TimedOut => Ok(None),
            waits::NextResult::Closed => Err(closed(&self.id)),
        }
    }

    /// Closes the webhook: later calls get 410, and calls not yet read are not delivered
    /// (a caller still held gets 410; an acknowledged call stays listed as not taken).
    pub fn close(&self) {
        webhooks::close(&self.id);
    }
}

fn closed(id: &str) -> Error {
    Error::new("closed", format!("webhook {id} is closed"))
}

impl From<WebhookOptions> for webhooks::WebhookOptions {
    fn from(options: WebhookOptions) -> Self {
        webhooks::WebhookOptions {
            token: options.token,
            methods: options.methods.into_iter().map(Into::into).collect(),
            single_use: options.single_use,
            auth: options.auth.into(),
            on_auth_failure: if options.ignore_auth_failures {
                types::AuthFailure::Ignore
            } else {
                types::AuthFailure::Error
            },
            response: options.response.into(),
            expires_in_ms: options.expires_in_ms,
            schema: options.schema,
            condition: options.condition,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_single_use_post_with_accepted_answer() {
        let options = WebhookOptions::new();
        assert!(options.single_use);
        assert_eq!(options.methods, vec![Method::Post]);
        assert_eq!(options.auth, Auth::None);
        assert_eq!(options.token, None);
        let ResponseMode::Automatic(response) = options.response else {
            panic!("default answer is automatic");
        };
        assert_eq!((response.status, response.body.as_str()), (202, r#"{"accepted":true}"#));
    }

    #[test]
    fn builder_sets_every_option() {
        let options = WebhookOptions::new()
            .token("custom")
            .methods([Method::Get])
            .many()
            .url_key()
            .manual_response(500)
            .expires_in(60_000);
        assert_eq!(options.token.as_deref(), Some("custom"));
        assert_eq!(options.methods, vec![Method::Get]);
        assert!(!options.single_use);
        assert_eq!(options.auth, Auth::UrlKey);
        assert_eq!(options.response, ResponseMode::Manual { deadline_ms: 500 });
        assert_eq!(options.expires_in_ms, Some(60_000));
    }
}
