//! The plain serde types kept in sled. Nothing here knows keys or trees.

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

pub use crate::auth::signatures::Scheme;
use crate::ids::{KeyName, ModuleName, RunId, Suffix, Token, TriggerName, WebhookId};

/// An uploaded module: every version it ever had, newest last.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModuleRecord {
    pub name: ModuleName,
    pub versions: Vec<ModuleVersion>,
}

impl ModuleRecord {
    pub fn latest(&self) -> Option<&ModuleVersion> {
        self.versions.last()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModuleVersion {
    /// sha256 of the component bytes, hex: the version's identity.
    pub version: String,
    pub size: u64,
    pub uploaded_at_ms: u64,
    /// What the module's `describe()` said at upload.
    pub info: ModuleInfo,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ModuleInfo {
    pub description: String,
    pub triggers: Vec<TriggerInfo>,
    #[serde(default)]
    pub named_triggers: Vec<NamedTriggerInfo>,
}

/// How calls to a named mid-flow trigger are checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamedTriggerInfo {
    pub name: TriggerName,
    #[serde(default)]
    pub auth: HookAuth,
    #[serde(default)]
    pub on_auth_failure: OnAuthFailure,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

/// A start trigger a module declared: calls to `/t/{module}/{suffix}` start runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriggerInfo {
    pub name: String,
    pub suffix: Suffix,
    pub methods: Vec<Method>,
    #[serde(default)]
    pub auth: HookAuth,
    #[serde(default)]
    pub on_auth_failure: OnAuthFailure,
    /// A JSON Schema over `{"method", "headers", "query", "body"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expects: Option<Value>,
    pub response: ResponseMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Waiting,
    Completed,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: RunId,
    pub module: ModuleName,
    /// The module version (content hash) the run is pinned to.
    pub version: String,
    pub status: RunStatus,
    pub input: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// The webhooks and named triggers the run is paused on.
    #[serde(default)]
    pub waiting_on: Vec<Waiting>,
    /// While paused: when a durable timer wakes it (a timeout, a sleep, an expiry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_at_ms: Option<u64>,
}

/// One thing a paused run waits for a call on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Waiting {
    Webhook(WebhookId),
    Trigger(TriggerName),
}

impl<'de> Deserialize<'de> for Waiting {
    /// Also reads the strings of earlier versions (`wh-1`, `trigger:name`).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "kebab-case")]
        enum Tagged {
            Webhook(WebhookId),
            Trigger(TriggerName),
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Tagged(Tagged),
            Text(String),
        }
        match Either::deserialize(deserializer)? {
            Either::Tagged(Tagged::Webhook(id)) => Ok(Waiting::Webhook(id)),
            Either::Tagged(Tagged::Trigger(name)) => Ok(Waiting::Trigger(name)),
            Either::Text(text) => match text.strip_prefix("trigger:") {
                Some(name) => TriggerName::parse(name).map(Waiting::Trigger).map_err(serde::de::Error::custom),
                None => WebhookId::parse(&text).map(Waiting::Webhook).map_err(serde::de::Error::custom),
            },
        }
    }
}

/// Why a run failed (or a guest call was refused): a stable code and a sentence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

impl Failure {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Failure { code: code.into(), message: message.into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    pub fn parse(name: &str) -> Option<Method> {
        [Method::Get, Method::Post, Method::Put, Method::Patch, Method::Delete]
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(name))
    }
}

/// A response written by the engine or the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "mode")]
pub enum ResponseMode {
    Automatic { response: HttpResponse },
    Manual { deadline_ms: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookState {
    Open,
    /// A single-use hook after its accepted call.
    Used,
    Closed,
}

/// A webhook, found by its token at ingress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HookRecord {
    pub token: Token,
    pub run_id: RunId,
    /// The webhook's number within its run (`wh-N`).
    pub number: u32,
    pub methods: Vec<Method>,
    pub single_use: bool,
    pub state: HookState,
    #[serde(default)]
    pub auth: HookAuth,
    #[serde(default)]
    pub on_auth_failure: OnAuthFailure,
    /// A JSON Schema the call's data must match (else 422).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// A CEL expression that must hold (else the call is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    pub response: ResponseMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    /// The run chose the token: it is guessable, so it is no capability on its own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chosen_token: bool,
}

/// How a webhook's callers prove who they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum HookAuth {
    /// The unguessable URL is the capability.
    #[default]
    None,
    /// A key embedded in the URL (`?key=`); only its sha256 (hex) is kept.
    UrlKey { key_sha256: String },
    /// An API key (from `POST /v1/keys`) embedded in the URL as `?key=`: a start
    /// trigger's "full URL" (Blink).
    QueryApiKey,
    /// `Authorization: Bearer <api key>` with every one of these roles.
    Bearer { roles: Vec<String> },
    /// An HMAC signature with the secret stored under this name.
    Signature { scheme: Scheme, secret: String },
}

/// What a caller that fails authentication gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnAuthFailure {
    /// A 401 or 403 JSON error.
    #[default]
    Error,
    /// `200 {"activated":false}`; nothing is delivered.
    Ignore,
}

/// An API key: only the sha256 of the key is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub name: KeyName,
    pub roles: Vec<String>,
    pub key_sha256: String,
    pub created_at_ms: u64,
}

impl HookRecord {
    /// Whether this is webhook `webhook` of run `run_id`.
    pub fn is(&self, run_id: RunId, webhook: WebhookId) -> bool {
        self.run_id == run_id && self.number == webhook.0
    }

    pub fn webhook(&self) -> WebhookId {
        WebhookId(self.number)
    }

    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| now_ms >= at)
    }

    /// Open and not expired.
    pub fn takes_calls(&self, now_ms: u64) -> bool {
        self.state == HookState::Open && !self.expired(now_ms)
    }
}

/// Who made a call, as far as the engine verified it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Caller {
    Anonymous,
    UrlKey,
    ApiKey { name: String, roles: Vec<String> },
    Signature { scheme: Scheme },
}

/// A call that reached a webhook: kept in the inbox until the run takes it, then in
/// the run's event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub id: String,
    pub webhook: String,
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    /// Shared, not copied, by the records of one call handed to many runs.
    #[serde(with = "shared_value")]
    pub data: Arc<Value>,
    pub caller: Caller,
    pub received_at_ms: u64,
}

/// An `Arc<Value>` stored as its value.
mod shared_value {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;

    pub fn serialize<S: Serializer>(value: &Arc<Value>, serializer: S) -> Result<S::Ok, S::Error> {
        value.as_ref().serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Arc<Value>, D::Error> {
        Value::deserialize(deserializer).map(Arc::new)
    }
}

impl RequestRecord {
    /// The call's arrival number: `rq-N` is the N-th call the store numbered.
    pub fn arrival(&self) -> Option<u64> {
        self.id.strip_prefix("rq-")?.parse().ok()
    }
}

/// What identifies a stored request, read without its data, headers or query: all that
/// a refused call's not-taken record keeps (see `NotTakenRecord::refused`), and a held
/// call's data can take megabytes once parsed.
#[derive(Deserialize)]
pub struct RequestIdentity {
    id: String,
    webhook: String,
    method: Method,
    path: String,
    caller: Caller,
    received_at_ms: u64,
}

impl RequestIdentity {
    pub fn into_request(self) -> RequestRecord {
        let RequestIdentity { id, webhook, method, path, caller, received_at_ms } = self;
        let (query, headers, data) = Default::default();
        RequestRecord { id, webhook, method, path, query, headers, data, caller, received_at_ms }
    }
}

/// A call waiting in a run's inbox. A `held` call's caller is still waiting for the run to
/// take it (it was not answered yet); any other was acknowledged when it was queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxEntry {
    #[serde(flatten)]
    pub request: RequestRecord,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// Being taken into the run's log: its caller can no longer withdraw it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub taking: bool,
}

impl InboxEntry {
    /// Stands for a queued call whose stored record cannot be read, so that it is listed
    /// as not taken instead of vanishing: only its channel is known (`number` is a fresh
    /// request number), and it is counted as acknowledged (its caller may have had a 2xx).
    pub fn unreadable(channel: &super::Channel, number: u64, now_ms: u64) -> InboxEntry {
        let webhook = match channel {
            super::Channel::Webhook(id) => id.to_string(),
            super::Channel::Trigger(name) => format!("trigger:{name}"),
        };
        let request = RequestRecord {
            id: format!("rq-{number}"),
            webhook,
            method: Method::Post,
            path: String::new(),
            query: Vec::new(),
            headers: Vec::new(),
            data: Arc::default(),
            caller: Caller::Anonymous,
            received_at_ms: now_ms,
        };
        InboxEntry { request, held: false, taking: false }
    }
}

/// Why a call that reached a run's inbox was not taken by the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotTakenReason {
    /// The run closed the webhook first.
    WebhookClosed,
    /// The run ended first.
    RunEnded,
    /// The run did not take it within the take timeout; it was withdrawn.
    TimedOut,
    /// The server stopped while the caller waited; the caller got no answer.
    Restarted,
    /// Its stored record could not be read (found at start-up): only its place is known.
    Unreadable,
}

impl NotTakenReason {
    pub fn describe(self) -> &'static str {
        match self {
            NotTakenReason::WebhookClosed => "the run closed the webhook before it took the call",
            NotTakenReason::RunEnded => "the run ended before it took the call",
            NotTakenReason::TimedOut => "the run did not take the call in time",
            NotTakenReason::Restarted => "the server restarted before the run took the call",
            NotTakenReason::Unreadable => "its stored record could not be read",
        }
    }
}

/// A call its run never took, kept for operators. An acknowledged one keeps everything
/// that arrived; a refused one (its caller got an error) keeps only what identifies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotTakenRecord {
    pub request: RequestRecord,
    /// Whether its caller had been answered with a 2xx.
    pub acknowledged: bool,
    pub reason: NotTakenReason,
    pub at_ms: u64,
}

impl NotTakenRecord {
    /// Keeps a refused call's identity but not its contents: its caller was told it was
    /// not delivered, and a flood of refused calls must not fill the disk.
    pub fn refused(mut request: RequestRecord, reason: NotTakenReason, at_ms: u64) -> Self {
        request.data = Arc::default();
        request.headers.clear();
        request.query.clear();
        NotTakenRecord { request, acknowledged: false, reason, at_ms }
    }
}

/// A sender's message id seen on an accepted call, so that the sender's retries get the
/// first answer and deliver nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// sha256 of what identifies the message's content: a repeat must have the same.
    pub fingerprint: String,
    /// The deliveries the first call made, as (run id, request id).
    pub deliveries: Vec<(String, String)>,
    /// Set once the first call was answered with a 2xx.
    pub accepted: bool,
    /// The answer a repeat gets; `None` while it is not known yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<HttpResponse>,
    /// Where the answer comes from when it is not stored.
    #[serde(default)]
    pub answer_from: AnswerFrom,
    pub created_at_ms: u64,
    pub forget_at_ms: u64,
    /// Counts against the cap on ids kept: its caller could be anyone (see `MESSAGES_KEPT`).
    #[serde(default = "counts_against_the_cap")]
    pub capped: bool,
}

/// An id noted before ids were told apart counts against the cap, as all did then.
fn counts_against_the_cap() -> bool {
    true
}

/// Where a sender's retry finds the first call's answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnswerFrom {
    /// Stored with the message id (an automatic answer).
    #[default]
    Stored,
    /// The run's own answer, in its log.
    Run,
    /// `{"resumed": n}` (and the runs, to a caller with an API key): the runs that took the call.
    Resumed,
}

/// A public view of a webhook, as the run and operators see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookInfo {
    pub id: WebhookId,
    pub token: Token,
    pub url: String,
}

/// One thing a wait is for, as recorded: timers as absolute times, so a replay waits
/// for the same moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum WaitTarget {
    Webhook {
        id: WebhookId,
    },
    /// A call to the module's named trigger for this run.
    Trigger {
        name: TriggerName,
    },
    Timer {
        at_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum WaitOutcome {
    Request { request: Box<RequestRecord> },
    TimedOut,
    Closed,
}

/// One entry of a run's append-only log. Replay feeds these back to the guest in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum Event {
    Started {
        input: Value,
        start_ms: u64,
        seed: u64,
        /// The call to a start trigger that started the run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trigger: Option<Box<RequestRecord>>,
    },
    Now {
        ms: u64,
    },
    Random {
        value: u64,
    },
    Log {
        level: String,
        message: String,
    },
    WebhookCreated {
        webhook: Result<WebhookInfo, Failure>,
    },
    WebhookClosed {
        id: WebhookId,
    },
    WaitStarted {
        on: Vec<WaitTarget>,
    },
    /// `index` is the position in `on` of what ended the wait.
    WaitEnded {
        index: u32,
        result: WaitOutcome,
    },
    Responded {
        request_id: String,
        status: u16,
        result: Result<(), Failure>,
        /// What the caller was sent: a sender's retry of the same message gets it again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        response: Option<HttpResponse>,
    },
    /// An attempt of a step began; its own host calls follow, then its `step-attempt`.
    StepStarted {
        name: String,
        attempt: u32,
    },
    /// How an attempt of a step ended.
    StepAttempt {
        name: String,
        attempt: u32,
        outcome: Result<Value, Failure>,
        fatal: bool,
    },
    HttpSent {
        method: Method,
        url: String,
        result: Result<HttpResponse, Failure>,
    },
    Completed {
        output: Value,
    },
    Failed {
        error: Failure,
    },
    Cancelled,
    /// `patched(id)` answered true here (see the WIT's `context.patched`).
    Patched {
        id: String,
    },
    /// The run was moved to another version of its module between two activations (its
    /// log replayed on the new code first). A note: replay passes over it.
    Upgraded {
        from: String,
        to: String,
    },
}

impl Event {
    /// The event's name, used to check that a replay takes the path it took before.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Started { .. } => "started",
            Event::Now { .. } => "now",
            Event::Random { .. } => "random",
            Event::Log { .. } => "log",
            Event::WebhookCreated { .. } => "webhook-created",
            Event::WebhookClosed { .. } => "webhook-closed",
            Event::WaitStarted { .. } => "wait-started",
            Event::WaitEnded { .. } => "wait-ended",
            Event::Responded { .. } => "responded",
            Event::StepStarted { .. } => "step-started",
            Event::StepAttempt { .. } => "step-attempt",
            Event::HttpSent { .. } => "http-sent",
            Event::Completed { .. } => "completed",
            Event::Failed { .. } => "failed",
            Event::Cancelled => "cancelled",
            Event::Patched { .. } => "patched",
            Event::Upgraded { .. } => "upgraded",
        }
    }

    /// A note about the run, not the record of a call its code made: replay passes over it.
    pub fn is_note(&self) -> bool {
        matches!(self, Event::Upgraded { .. })
    }

    /// Whether the event ends the run.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Event::Completed { .. } | Event::Failed { .. } | Event::Cancelled)
    }
}

/// An event with its position and the time it was written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventRecord {
    pub seq: u64,
    pub at_ms: u64,
    #[serde(flatten)]
    pub event: Event,
}
