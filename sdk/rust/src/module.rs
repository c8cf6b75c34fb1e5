use crate::__private::bindings as wit;
use crate::{Auth, Method, Response, ResponseMode};

/// What a module tells the engine about itself when it is uploaded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleInfo {
    /// A human-readable description of the workflow.
    pub description: String,
    /// Start triggers: URLs whose calls start a run.
    pub triggers: Vec<Trigger>,
    /// How calls to named mid-flow triggers are checked (see [`crate::wait_trigger`]).
    pub named_triggers: Vec<NamedTrigger>,
}

impl ModuleInfo {
    /// Module info with this description and no triggers.
    pub fn new(description: impl Into<String>) -> Self {
        ModuleInfo { description: description.into(), triggers: Vec::new(), named_triggers: Vec::new() }
    }

    /// Adds a start trigger.
    pub fn trigger(mut self, trigger: Trigger) -> Self {
        self.triggers.push(trigger);
        self
    }

    /// Declares how calls to a named mid-flow trigger are checked.
    pub fn named_trigger(mut self, trigger: NamedTrigger) -> Self {
        self.named_triggers.push(trigger);
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

    /// Holds callers until the run calls `Request::respond`, for at most 30 seconds
    /// (then 504).
    pub fn manual(self) -> Self {
        self.manual_response(crate::http::DEFAULT_ANSWER_DEADLINE_MS)
    }

    /// Holds callers until the run calls `Request::respond`, or `deadline_ms` pass (then 504).
    pub fn manual_response(mut self, deadline_ms: u32) -> Self {
        self.response = ResponseMode::Manual { deadline_ms };
        self
    }
}

/// A named mid-flow trigger's checks: who may call it and a condition that must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedTrigger {
    /// The name runs wait at.
    pub name: String,
    /// How callers prove who they are (`Auth::UrlKey`: an API key in `?key=`).
    pub auth: Auth,
    /// Whether a caller that fails authentication gets `200 {"activated":false}`.
    pub ignore_auth_failures: bool,
    /// A CEL expression over method, headers, query and body that must hold.
    pub condition: Option<String>,
}

impl NamedTrigger {
    /// Declares a named trigger open to any caller (runs may wait only at declared ones).
    pub fn new(name: impl Into<String>) -> Self {
        NamedTrigger { name: name.into(), auth: Auth::None, ignore_auth_failures: false, condition: None }
    }

    /// Requires this kind of caller authentication.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Answers callers that fail authentication `200 {"activated":false}` instead of an error.
    pub fn ignore_auth_failures(mut self) -> Self {
        self.ignore_auth_failures = true;
        self
    }

    /// Ignores calls (`{"activated":false}`, runs stay paused) unless this CEL expression holds.
    pub fn condition(mut self, expression: impl Into<String>) -> Self {
        self.condition = Some(expression.into());
        self
    }
}

fn auth_failure(ignore: bool) -> wit::latch::workflow::types::AuthFailure {
    if ignore {
        wit::latch::workflow::types::AuthFailure::Ignore
    } else {
        wit::latch::workflow::types::AuthFailure::Error
    }
}

impl From<NamedTrigger> for wit::NamedTrigger {
    fn from(trigger: NamedTrigger) -> Self {
        wit::NamedTrigger {
            name: trigger.name,
            auth: trigger.auth.into(),
            on_auth_failure: auth_failure(trigger.ignore_auth_failures),
            condition: trigger.condition,
        }
    }
}

impl From<ModuleInfo> for wit::ModuleInfo {
    fn from(info: ModuleInfo) -> Self {
        wit::ModuleInfo {
            description: info.description,
            triggers: info.triggers.into_iter().map(Into::into).collect(),
            named_triggers: info.named_triggers.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<Trigger> for wit::Trigger {
    fn from(trigger: Trigger) -> Self {
        wit::Trigger {
            name: trigger.name,
            suffix: trigger.suffix,
            methods: trigger.methods.into_iter().map(Into::into).collect(),
            auth: trigger.auth.into(),
            on_auth_failure: auth_failure(trigger.ignore_auth_failures),
            expects: trigger.expects.map(|schema| schema.to_string()),
            response: trigger.response.into(),
        }
    }
}
