use crate::__private::bindings as wit;
use crate::{Auth, Method, Response, ResponseMode};

/// What a module tells the engine about itself when it is uploaded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleInfo {
    /// A human-readable description of the workflow.
    pub description: String,
    /// Start triggers: URLs whose calls start a run.
    pub triggers: Vec<Trigger>,
}

impl ModuleInfo {
    /// Module info with this description and no triggers.
    pub fn new(description: impl Into<String>) -> Self {
        ModuleInfo { description: description.into(), triggers: Vec::new() }
    }

    /// Adds a start trigger.
    pub fn trigger(mut self, trigger: Trigger) -> Self {
        self.triggers.push(trigger);
        self
    }
}

/// A start trigger: a call to `/t/{module}/{suffix}` starts a run with that request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trigger {
    /// The trigger's name.
    pub name: String,
    /// The URL suffix after `/t/{module}/`.
    pub suffix: String,
    /// Accepted methods; empty means POST only.
    pub methods: Vec<Method>,
    /// How callers must prove who they are. `Auth::UrlKey` on a trigger means an API key
    /// (from `POST /v1/keys`) in the URL's `?key=`.
    pub auth: Auth,
    /// Whether a caller that fails authentication gets `200 {"activated":false}` (and no
    /// run starts) instead of an error.
    pub ignore_auth_failures: bool,
    /// A JSON Schema over `{"method", "headers", "query", "body"}` (header names in lower
    /// case); a call that does not match gets 422 and starts nothing.
    pub expects: Option<serde_json::Value>,
    /// When and how callers are answered.
    pub response: ResponseMode,
}

impl Trigger {
    /// A trigger at `/t/{module}/{suffix}`: POST only, no auth, automatic 202 answer.
    pub fn new(name: impl Into<String>, suffix: impl Into<String>) -> Self {
        Trigger {
            name: name.into(),
            suffix: suffix.into(),
            methods: vec![Method::Post],
            auth: Auth::None,
            ignore_auth_failures: false,
            expects: None,
            response: ResponseMode::default(),
        }
    }

    /// Requires calls to match this JSON Schema over `{"method", "headers", "query", "body"}`.
    pub fn expects(mut self, schema: serde_json::Value) -> Self {
        self.expects = Some(schema);
        self
    }

    /// Answers callers that fail authentication `200 {"activated":false}` instead of an error.
    pub fn ignore_auth_failures(mut self) -> Self {
        self.ignore_auth_failures = true;
        self
    }

    /// Accepts these methods instead of POST only.
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = methods.into_iter().collect();
        self
    }

    /// Requires this kind of caller authentication.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Answers callers at once with this response.
    pub fn response(mut self, response: Response) -> Self {
        self.response = ResponseMode::Automatic(response);
        self
    }

    /// Holds callers until the run calls `Request::respond`, or `deadline_ms` pass (then 504).
    pub fn manual_response(mut self, deadline_ms: u32) -> Self {
        self.response = ResponseMode::Manual { deadline_ms };
        self
    }
}

impl From<ModuleInfo> for wit::ModuleInfo {
    fn from(info: ModuleInfo) -> Self {
        wit::ModuleInfo { description: info.description, triggers: info.triggers.into_iter().map(Into::into).collect() }
    }
}

impl From<Trigger> for wit::Trigger {
    fn from(trigger: Trigger) -> Self {
        wit::Trigger {
            name: trigger.name,
            suffix: trigger.suffix,
            methods: trigger.methods.into_iter().map(Into::into).collect(),
            auth: trigger.auth.into(),
            on_auth_failure: if trigger.ignore_auth_failures {
                wit::latch::workflow::types::AuthFailure::Ignore
            } else {
                wit::latch::workflow::types::AuthFailure::Error
            },
            expects: trigger.expects.map(|schema| schema.to_string()),
            response: trigger.response.into(),
        }
    }
}
