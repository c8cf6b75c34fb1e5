//! The one inbound path: every call from outside (to a webhook, a start trigger or a named
//! trigger) is checked, made a request record, handed to its run and answered here. Each
//! kind of target checks its callers as it declares (`call_webhook`, `call_start_trigger`,
//! `call_named_trigger`); every admitted call then goes through `Executor::take_in`.
//!
//! What a 2xx promises (the README's rule):
//! - A call to a **single-use webhook** is answered once it is durably in its run's inbox
//!   (a callback may come long before the run waits for it). The run takes it at its next
//!   wait on that webhook; if the run closes the webhook or ends first, the call stays
//!   listed as `not-taken` in `/v1/runs/{id}/requests`, never deleted.
//! - A call to a **many-call webhook** or a **named trigger** is answered 2xx only once its
//!   run has taken it into its log, durably. Until then its caller is held. A call the run
//!   will not take (the webhook closed, the run ended) is answered 410; one it does not
//!   take within the take timeout is withdrawn and answered 503 with `Retry-After`.
//! - A call that **starts a run** is answered once the run exists, durably.
//! - A **retry** of a message already accepted (same id: the signature scheme's, or an
//!   `Idempotency-Key`) gets the first call's answer and delivers nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::{ExecError, Executor};
use crate::auth::callers::{self, Presented, Refusal};
use crate::ids::{ModuleName, RunId, Token, TriggerName};
use crate::json::Charge;
use crate::rules::{self, CallView};
use crate::runtime::holds::{CallState, Hold};
use crate::store::records::{
    AnswerFrom, Caller, Event, HookAuth, HookRecord, HookState, HttpResponse, IdempotencyRecord, InboxEntry, Method,
    NamedTriggerInfo, NotTakenReason, OnAuthFailure, RequestRecord, ResponseMode, RunRecord, TriggerInfo, WaitOutcome,
};
use crate::store::{Channel, Delivery, Inbox, Registry, RunLog};

/// How long a sender's message id is remembered: the retry windows of the senders we
/// know (Stripe and GitHub redeliver for up to 3 days).
pub const MESSAGE_WINDOW: Duration = Duration::from_secs(72 * 3600);
/// The shortest time every message id is kept, even past the cap below: the signature
/// schemes' timestamp tolerance, doubled.
pub const MESSAGE_WINDOW_MIN: Duration = Duration::from_secs(10 * 60);
/// At most this many message ids of callers anyone could be (anonymous, or with a webhook's
/// URL key) are kept; past it the oldest beyond the minimum window go. A signed sender's
/// and an API key's ids are kept their whole window: a flood of open calls pushes none
/// of them out (a GitHub-signed body carries no time, so only its id stops a replay).
pub const MESSAGES_KEPT: usize = 500_000;

/// After a withdrawal finds the call gone (the run took it), how long to wait at most for
/// the run's take to become durable: a slow disk must not turn a delivered call into a
/// "not delivered" answer.
const TAKE_GRACE: Duration = Duration::from_secs(60);

/// A call as it arrived, before any check: its method is one its target takes.
pub struct Incoming {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// What the body holds against the server's budget for bodies, until the call is answered.
    pub charge: Charge,
}

/// What a caller is sent. `request_id` marks an answer about a delivered request.
#[derive(Debug)]
pub struct Answer {
    pub response: HttpResponse,
    pub request_id: Option<String>,
}

impl Answer {
    fn json(status: u16, body: &Value) -> Answer {
        let response = HttpResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        };
        Answer { response, request_id: None }
    }

    /// `200 {"activated":false}`: the call was ignored (a false condition, or a failed
    /// caller where the policy is to ignore those) and nothing was delivered.
    fn not_activated() -> Answer {
        Answer::json(200, &json!({ "activated": false }))
    }

    fn for_request(response: HttpResponse, request_id: &str) -> Answer {
        Answer { response, request_id: Some(request_id.to_string()) }
    }
}

/// Which runs a named-trigger call is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Execution {
    Run(String),
    /// The run waiting longest.
    Any,
    /// Every run waiting.
    All,
}

impl Execution {
    pub fn parse(value: &str) -> Execution {
        match value {
            "any" => Execution::Any,
            "all" => Execution::All,
            run_id => Execution::Run(run_id.to_string()),
        }
    }

    fn label(&self) -> &str {
        match self {
            Execution::Run(id) => id,
            Execution::Any => "any",
            Execution::All => "all",
        }
    }
}

/// A call that passed its caller checks, ready to become a request record.
struct Call {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    /// Shared by every request record made of it: a call to many runs is one value.
    data: Arc<Value>,
    caller: Caller,
    message_id: Option<String>,
    /// Its body as read and as parsed, held against the budget while the call is handled.
    memory: Charge,
}

impl Call {
    /// Lets go of everything but the call's charge against the budget for bodies.
    fn into_charge(self) -> Charge {
        self.memory
    }
}

/// A GET's (or DELETE's) query is its data; a body's JSON otherwise. What it takes in memory
/// is added to `charge`.
fn call_data(
    method: Method,
    query: &[(String, String)],
    body: &[u8],
    charge: &mut Charge,
) -> Result<Arc<Value>, ExecError> {
    let data = match method {
        Method::Get | Method::Delete => query_object(query),
        Method::Post | Method::Put | Method::Patch => crate::json::parse_body(body)?,
    };
    charge.add(crate::json::parsed_bytes(&data))?;
    Ok(Arc::new(data))
}

/// A query as an object, `{name: value}`, the last value winning.
pub fn query_object(query: &[(String, String)]) -> Value {
    let map: Map<String, Value> = query.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    Value::Object(map)
}

/// What a call's schema and conditions see, and what identifies its content.
fn fingerprint(method: Method, target: &str, data: &Value) -> String {
    hex::encode(Sha256::digest(format!("{}\0{target}\0{data}", method.as_str())))
}

fn check_schema(schema: &Value, value: &Value, what: &str) -> Result<(), ExecError> {
    let failures = rules::schema_failures(schema, value).unwrap_or_else(|e| vec![e.to_string()]);
    if failures.is_empty() {
        return Ok(());
    }
    Err(ExecError::SchemaMismatch { what: what.to_string(), failures })
}

fn condition_holds(condition: Option<&String>, call: &Call) -> bool {
    let Some(condition) = condition else { return true };
    let view = CallView { method: call.method.as_str(), headers: &call.headers, query: &call.query, body: &call.data };
    rules::condition_holds(condition, &view).unwrap_or(false)
}

/// Whom a named-trigger call is for.
struct NamedTargets {
    /// The runs it may be handed to, with their version's declaration of the trigger.
    candidates: Vec<(RunRecord, NamedTriggerInfo)>,
    /// What the caller is checked against when there is no candidate.
    fallback: NamedTriggerInfo,
    /// The answer when there is no candidate.
    missing: ExecError,
}

/// Where an admitted call goes.
enum Target<'a> {
    /// A run's webhook.
    Webhook(HookRecord),
    /// A new run of the module, whose start is the call.
    Start {
        module: &'a ModuleName,
        trigger: &'a TriggerInfo,
    },
    Named(AtTrigger<'a>),
}

/// The runs admitted at a named trigger, or why there is none to hand the call to.
struct AtTrigger<'a> {
    module: &'a ModuleName,
    name: &'a TriggerName,
    execution: &'a Execution,
    runs: Result<Vec<(RunId, Caller)>, ExecError>,
}

/// A target with the request record the call makes there. A named trigger's call becomes a
/// request record for each run it reaches, as it reaches it (`hand_to_trigger`).
enum Addressed<'a> {
    Webhook {
        hook: HookRecord,
        request: RequestRecord,
        automatic: Option<HttpResponse>,
    },
    Start {
        module: &'a ModuleName,
        trigger: &'a TriggerInfo,
        run_id: RunId,
        request: RequestRecord,
        automatic: Option<HttpResponse>,
    },
    Named(AtTrigger<'a>),
}

impl Addressed<'_> {
    /// Where a sender's message ids are unique.
    fn scope(&self) -> String {
        match self {
            Addressed::Webhook { hook, .. } => format!("hook:{}:{}", hook.run_id, hook.webhook().0),
            Addressed::Start { module, trigger, .. } => format!("start:{module}:{}", trigger.suffix),
            Addressed::Named(at) => format!("named:{}:{}", at.module, at.name),
        }
    }

    /// What else than its data makes a call another one (a named trigger's `execution`).
    fn label(&self) -> &str {
        match self {
            Addressed::Named(at) => at.execution.label(),
            Addressed::Webhook { .. } | Addressed::Start { .. } => "",
        }
    }

    /// The delivery made before the call is handed out: its run and its request.
    fn deliveries(&self) -> Vec<(String, String)> {
        match self {
            Addressed::Webhook { hook, request, .. } => vec![(hook.run_id.to_string(), request.id.clone())],
            Addressed::Start { run_id, request, .. } => vec![(run_id.to_string(), request.id.clone())],
            Addressed::Named(_) => Vec::new(),
        }
    }

    fn automatic(&self) -> Option<HttpResponse> {
        match self {
            Addressed::Webhook { automatic, .. } | Addressed::Start { automatic, .. } => automatic.clone(),
            Addressed::Named(_) => None,
        }
    }
}

/// What a caller presented, kept while each run's version checks it (a named trigger).
struct Credentials {
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Bytes,
}

/// A message id's record while its first call is handed out: each delivery is noted
/// before it is made, so that a retry after a crash can tell where the call went.
type Noted<'a> = (&'a str, tokio::sync::Mutex<IdempotencyRecord>);

/// How a call fared against one set of checks (a version's declaration of a trigger).
#[derive(Clone)]
enum Admission {
    Admitted(Caller),
    /// Failed where the policy is to ignore, or its condition does not hold.
    Ignored,
    Refused(Refusal),
}

/// A message id slot: the record a first call writes, and its key.
struct Message {
    key: String,
    record: IdempotencyRecord,
    /// Whether a named trigger's answer may name the runs (see `resumed_answer`).
    shows_runs: bool,
}

/// How a call with a sender's message id began.
enum Begun {
    /// It is the first: it holds its message id while it is handled.
    First(Option<Hold>),
    /// A repeat: the first call's answer.
    Repeat(Answer),
}

/// A named trigger's answer: how many runs took the call, and which, only to a caller
/// with an API key. A run's id is the operator's handle on it: a sender or an anonymous
/// caller of an open trigger is not told it.
fn resumed_answer(runs: Vec<String>, shows_runs: bool) -> Answer {
    let mut body = json!({ "resumed": runs.len() });
    if shows_runs {
        body["runs"] = json!(runs);
    }
    Answer::json(200, &body)
}

fn shows_runs(caller: &Caller) -> bool {
    matches!(caller, Caller::ApiKey { .. })
}

/// What holds a message id while its first call is handled.
fn message_hold_id(key: &str) -> String {
    format!("message:{key}")
}

/// What became of a delivered call, as a sender's retry must know it.
#[derive(Debug, PartialEq)]
enum Fate {
    /// In the run's log, or acknowledged and kept for it: the first call was accepted.
    Accepted,
    /// Its first caller still waits on it.
    InFlight,
    /// Never accepted: a retry is a new call.
    NotAccepted,
}

impl Executor {
    // --- the one path ---------------------------------------------------------------

    /// The one path of every admitted call, whatever its target: its request record is
    /// made, a sender's retry gets the first call's answer, and the call is handed to its
    /// target and its caller answered (at once, or held for the run's take or answer).
    async fn take_in(self: &Arc<Self>, call: Call, target: Target<'_>) -> Result<Answer, ExecError> {
        let addressed = self.address(&call, target).await?;
        let window = match &addressed {
            Addressed::Webhook { hook, .. } => self.answer_window(&hook.response),
            Addressed::Start { trigger, .. } => self.answer_window(&trigger.response),
            Addressed::Named(_) => self.shared.settings.take_timeout,
        };
        let message =
            self.message(&addressed.scope(), &call, addressed.label(), addressed.deliveries(), addressed.automatic());
        let _first = match self.begin(&message, window).await? {
            Begun::Repeat(answer) => return Ok(answer),
            Begun::First(hold) => hold,
        };
        let answer = match addressed {
            // From here the call's data lives in `request` alone.
            Addressed::Webhook { hook, request, automatic } => {
                self.hand_to_webhook(&hook, request, call.into_charge(), automatic).await
            }
            Addressed::Start { module, trigger, run_id, request, automatic } => {
                let memory = call.into_charge();
                self.start_from_trigger(module, run_id, request, memory, &trigger.response, automatic).await
            }
            Addressed::Named(AtTrigger { runs: Err(missing), .. }) => Err(missing),
            Addressed::Named(AtTrigger { module, name, execution, runs: Ok(admitted) }) => {
                let noted = message.as_ref().map(|m| (m.key.as_str(), tokio::sync::Mutex::new(m.record.clone())));
                let resumed = self.resume_named(module, name, execution, admitted, &call, noted.as_ref()).await;
                let shows = shows_runs(&call.caller);
                resumed.map(|ids| resumed_answer(ids.iter().map(ToString::to_string).collect(), shows))
            }
        };
        self.settle(&message, &answer).await;
        answer
    }

    /// Makes the request record a call is at its target, numbered in arrival order.
    async fn address<'a>(&self, call: &Call, target: Target<'a>) -> Result<Addressed<'a>, ExecError> {
        Ok(match target {
            Target::Webhook(hook) => {
                let request = self.request(call, hook.webhook().to_string()).await?;
                let automatic = match &hook.response {
                    ResponseMode::Automatic { response } => Some(response.clone()),
                    ResponseMode::Manual { .. } => None,
                };
                Addressed::Webhook { hook, request, automatic }
            }
            Target::Start { module, trigger } => {
                let request = self.request(call, format!("trigger:{}", trigger.name)).await?;
                let run_id = RunId::new();
                let automatic = match &trigger.response {
                    ResponseMode::Automatic { response } => Some(fill(response, run_id, &request.id, module)),
                    ResponseMode::Manual { .. } => None,
                };
                Addressed::Start { module, trigger, run_id, request, automatic }
            }
            Target::Named(at) => Addressed::Named(at),
        })
    }

    // --- webhooks -------------------------------------------------------------------

    /// The webhook behind a public URL. A token the run chose is guessable: without a
    /// credential of its own, such a webhook is reachable only from the API with a key.
    pub async fn public_webhook(&self, token: &str) -> Result<HookRecord, ExecError> {
        let token = Token::parse(token).map_err(|_| ExecError::UnknownWebhook)?;
        let hook = self.shared.store.hook(&token).await?;
        hook.filter(|h| !(h.chosen_token && h.auth == HookAuth::None)).ok_or(ExecError::UnknownWebhook)
    }

    /// `/hooks/{token}`: checks the caller against the webhook's auth, then delivers.
    pub async fn call_webhook(self: &Arc<Self>, hook: HookRecord, mut incoming: Incoming) -> Result<Answer, ExecError> {
        let store = &self.shared.store;
        // Signatures cover the raw body: the caller is checked before it is parsed.
        let presented = Presented {
            query: &mut incoming.query,
            headers: &incoming.headers,
            body: &incoming.body,
            now_ms: self.now_ms(),
        };
        let Some(caller) = callers::admit(store, &hook.auth, hook.on_auth_failure, presented).await? else {
            return Ok(Answer::not_activated());
        };
        let message_id = callers::message_id(&hook.auth, &incoming.headers, &incoming.body);
        self.deliver_to_webhook(hook, incoming, caller, message_id).await
    }

    /// `POST /v1/hooks/{token}`: the webhook an API resumes (Workflow DevKit's
    /// `resumeHook(token, payload)`) and its caller, whose API key must hold the roles the
    /// webhook asks. Checked before the body is read.
    pub async fn resume_target(
        &self,
        token: &str,
        headers: &[(String, String)],
    ) -> Result<(HookRecord, Caller), ExecError> {
        let store = &self.shared.store;
        let hook = match Token::parse(token) {
            Ok(token) => store.hook(&token).await?,
            Err(_) => None,
        };
        let required = match hook.as_ref().map(|h| &h.auth) {
            Some(HookAuth::Bearer { roles }) => roles.clone(),
            _ => Vec::new(),
        };
        // The key is checked first: a caller without one learns nothing about tokens.
        let caller = callers::bearer_caller(store, headers, &required).await?;
        let hook = hook.ok_or(ExecError::UnknownWebhook)?;
        // An API key stands in for no other credential.
        if !matches!(hook.auth, HookAuth::None | HookAuth::Bearer { .. }) {
            return Err(ExecError::AuthMismatch);
        }
        if !hook.methods.contains(&Method::Post) {
            return Err(ExecError::MethodNotAllowed(hook.methods.clone()));
        }
        Ok((hook, caller))
    }

    /// Delivers a call resumed from an API (see `resume_target`).
    pub async fn resume_webhook(
        self: &Arc<Self>,
        (hook, caller): (HookRecord, Caller),
        incoming: Incoming,
    ) -> Result<Answer, ExecError> {
        let message_id = callers::message_id(&HookAuth::None, &incoming.headers, &incoming.body);
        self.deliver_to_webhook(hook, incoming, caller, message_id).await
    }

    async fn deliver_to_webhook(
        self: &Arc<Self>,
        hook: HookRecord,
        incoming: Incoming,
        caller: Caller,
        message_id: Option<String>,
    ) -> Result<Answer, ExecError> {
        let call = self.admitted_call(incoming, caller, message_id)?;
        if let Some(schema) = &hook.schema {
            check_schema(schema, &call.data, "the data does not match the webhook's schema")?;
        }
        // A false condition leaves the run waiting.
        if !condition_holds(hook.condition.as_ref(), &call) {
            return Ok(Answer::not_activated());
        }
        self.take_in(call, Target::Webhook(hook)).await
    }

    /// Delivers a request to its webhook and answers its caller as the webhook says.
    async fn hand_to_webhook(
        self: &Arc<Self>,
        hook: &HookRecord,
        mut request: RequestRecord,
        memory: Charge,
        automatic: Option<HttpResponse>,
    ) -> Result<Answer, ExecError> {
        check_open(hook, self.now_ms())?;
        self.admit_call(hook.run_id).await?;
        let store = &self.shared.store;
        // A caller is answered 2xx once its call is durably queued only on a single-use
        // webhook with an automatic answer; any other is held until the run takes the call.
        let held = !hook.single_use || automatic.is_none();
        let mut hold = match held {
            true => Some(self.shared.holds.hold_caller(&request.id).ok_or(ExecError::Overloaded)?),
            false => None,
        };
        // The run is woken once the call is in its inbox, not once it is durable: taking it
        // needs a durable write of the run's log, which covers the call's too. Even when the
        // write was not confirmed durable the call may be in the inbox: the run must see it.
        let woken = AtomicBool::new(false);
        let wake = || {
            woken.store(true, Ordering::Relaxed);
            self.wake(hook.run_id);
        };
        let delivered = store.deliver(hook, &request, held, self.now_ms(), &wake).await;
        if !woken.load(Ordering::Relaxed) {
            self.wake(hook.run_id);
        }
        // In the store now (or refused): a held caller waits on the call's id alone, and
        // what its body held of the budget for bodies is given back.
        request.data = Arc::default();
        drop(memory);
        let request = &request;
        match delivered? {
            Delivery::Accepted => {}
            Delivery::Gone => return Err(ExecError::Gone("the webhook no longer takes calls".into())),
        }
        let channel = Channel::Webhook(hook.webhook());
        match (automatic, hold.as_mut()) {
            (Some(response), None) => Ok(Answer::for_request(response, &request.id)),
            (Some(response), Some(hold)) => {
                let deadline = Instant::now() + self.shared.settings.take_timeout;
                self.until_taken(hold, hook.run_id, &channel, request, deadline).await?;
                Ok(Answer::for_request(response, &request.id))
            }
            (None, Some(hold)) => {
                let deadline_ms = match hook.response {
                    ResponseMode::Manual { deadline_ms } => deadline_ms,
                    ResponseMode::Automatic { .. } => 0,
                };
                let deadline = Instant::now() + Duration::from_millis(u64::from(deadline_ms));
                let settled =
                    |s: &CallState| matches!(s, CallState::Answered(_) | CallState::Refused(_) | CallState::Unanswered);
                match hold.until(deadline, settled).await {
                    CallState::Answered(response) => Ok(Answer::for_request(response, &request.id)),
                    CallState::Refused(reason) => Err(ExecError::NotTaken(reason)),
                    CallState::Unanswered => Err(ExecError::NoAnswer),
                    _ => {
                        self.until_taken(hold, hook.run_id, &channel, request, Instant::now()).await?;
                        Err(ExecError::ResponseTimeout(deadline_ms))
                    }
                }
            }
            (None, None) => unreachable!("a manual webhook's caller is always held"),
        }
    }

    /// Waits until the run takes a held call. At the deadline the call is withdrawn, unless
    /// the run took it meanwhile.
    /// A single-use webhook takes a call again: this one was not delivered.
    async fn until_taken(
        &self,
        hold: &mut Hold,
        run_id: RunId,
        channel: &Channel,
        request: &RequestRecord,
        deadline: Instant,
    ) -> Result<(), ExecError> {
        match hold.until(deadline, |s| *s != CallState::Queued).await {
            state if state.is_taken() => return Ok(()),
            CallState::Refused(reason) => return Err(ExecError::NotTaken(reason)),
            _ => {}
        }
        if self.shared.store.withdraw(run_id, channel, request, self.now_ms()).await? {
            return Err(ExecError::NotTaken(NotTakenReason::TimedOut));
        }
        // Gone from the inbox: the run took it (or just refused it); wait for which.
        match hold.until(Instant::now() + TAKE_GRACE, |s| *s != CallState::Queued).await {
            state if state.is_taken() => Ok(()),
            CallState::Refused(reason) => Err(ExecError::NotTaken(reason)),
            // Taken, but not known to be on disk: neither a 2xx nor "not delivered".
            _ => Err(ExecError::Undurable),
        }
    }

    /// How long a sender's retry may wait for the first call's answer.
    fn answer_window(&self, mode: &ResponseMode) -> Duration {
        match mode {
            ResponseMode::Manual { deadline_ms } => Duration::from_millis(u64::from(*deadline_ms)),
            ResponseMode::Automatic { .. } => self.shared.settings.take_timeout,
        }
    }

    // --- start triggers -------------------------------------------------------------

    /// A call to a start trigger of the module's newest version: checks the caller and
    /// what the trigger expects, then starts a run whose start is the request.
    pub async fn call_start_trigger(
        self: &Arc<Self>,
        module: &ModuleName,
        trigger: &TriggerInfo,
        mut incoming: Incoming,
    ) -> Result<Answer, ExecError> {
        let store = &self.shared.store;
        let presented = Presented {
            query: &mut incoming.query,
            headers: &incoming.headers,
            body: &incoming.body,
            now_ms: self.now_ms(),
        };
        let Some(caller) = callers::admit(store, &trigger.auth, trigger.on_auth_failure, presented).await? else {
            return Ok(Answer::not_activated());
        };
        let message_id = callers::message_id(&trigger.auth, &incoming.headers, &incoming.body);
        let call = self.admitted_call(incoming, caller, message_id)?;
        // The view is a copy of the data: made only where it is needed, and kept no longer.
        if store.take_listening(module, &trigger.name).await? {
            return self.capture_sample(module, &trigger.name, expected_view(&call)).await;
        }
        if let Some(schema) = &trigger.expects {
            check_schema(schema, &expected_view(&call), "the call does not match what the trigger expects")?;
        }
        self.take_in(call, Target::Start { module, trigger }).await
    }

    async fn start_from_trigger(
        self: &Arc<Self>,
        module: &ModuleName,
        run_id: RunId,
        request: RequestRecord,
        memory: Charge,
        mode: &ResponseMode,
        automatic: Option<HttpResponse>,
    ) -> Result<Answer, ExecError> {
        let request_id = request.id.clone();
        let input = Value::clone(&request.data);
        if let Some(response) = automatic {
            self.start_run_as(module, run_id, input, request).await?;
            return Ok(Answer::for_request(response, &request_id));
        }
        let deadline_ms = match mode {
            ResponseMode::Manual { deadline_ms } => *deadline_ms,
            ResponseMode::Automatic { .. } => 0,
        };
        // Held before the run exists: it may answer at once.
        let mut hold = self.shared.holds.hold_caller(&request_id).ok_or(ExecError::Overloaded)?;
        self.start_run_as(module, run_id, input, request).await?;
        // The call is the run's input now: its caller waits on the run's answer alone.
        drop(memory);
        let deadline = Instant::now() + Duration::from_millis(u64::from(deadline_ms));
        match hold.until(deadline, |s| matches!(s, CallState::Answered(_) | CallState::Unanswered)).await {
            CallState::Answered(response) => Ok(Answer::for_request(response, &request_id)),
            CallState::Unanswered => Err(ExecError::NoAnswer),
            _ => Err(ExecError::ResponseTimeout(deadline_ms)),
        }
    }

    /// Keeps a call as the trigger's sample event (Blink's "Listen to event"), with a JSON
    /// Schema learnt from it; no run starts.
    async fn capture_sample(&self, module: &ModuleName, trigger: &str, event: Value) -> Result<Answer, ExecError> {
        let schema = rules::infer_schema(&event);
        let sample = json!({ "event": event, "schema": schema, "captured_at_ms": self.now_ms() });
        self.shared.store.put_sample(module, trigger, &sample).await?;
        Ok(Answer::json(200, &json!({ "captured": true, "activated": false })))
    }

    // --- named triggers -------------------------------------------------------------

    /// A call to a module's named trigger (`?execution=<run id>|any|all`): each run's own
    /// module version says whether it declares the trigger and how callers are checked.
    /// Answers `{"resumed": n}` once every run named there has taken the call (see
    /// `resumed_answer` for when the runs are named).
    pub async fn call_named_trigger(
        self: &Arc<Self>,
        module: &ModuleName,
        name: &TriggerName,
        execution: Execution,
        mut incoming: Incoming,
    ) -> Result<Answer, ExecError> {
        let targets = self.named_targets(module, name, &execution).await?;
        // Each run's version checks the caller as it declares: against what was presented.
        let presented = Credentials {
            query: incoming.query.clone(),
            headers: incoming.headers.clone(),
            body: incoming.body.clone(),
        };
        // `key` carries an API key on triggers that take one: it is never the run's data.
        incoming.query.retain(|(k, _)| k != callers::KEY_PARAM);
        let mut call = self.admitted_call(incoming, Caller::Anonymous, None)?;
        let mut admitted = Vec::new();
        let mut first_refusal = None;
        let mut ignored = false;
        // Checked once per version (its declaration), however many of its runs wait: a
        // refused caller costs no more than an admitted one.
        let mut by_version: Vec<(&str, Admission)> = Vec::new();
        for (run, declared) in &targets.candidates {
            let admission = match by_version.iter().find(|(version, _)| *version == run.version) {
                Some((_, admission)) => admission.clone(),
                None => {
                    let admission = self.admit_named(declared, &presented, &mut call).await?;
                    by_version.push((&run.version, admission.clone()));
                    admission
                }
            };
            match admission {
                Admission::Admitted(caller) => admitted.push((run.id, caller)),
                Admission::Ignored => ignored = true,
                Admission::Refused(refusal) => {
                    first_refusal.get_or_insert(refusal);
                }
            }
        }
        if targets.candidates.is_empty() {
            // No run to hand it to. The caller is still checked (against the named run's
            // version, else the newest), so that one who may not call learns nothing; an
            // admitted sender's retry of an accepted call gets the first answer.
            match self.admit_named(&targets.fallback, &presented, &mut call).await? {
                Admission::Admitted(_) => {}
                Admission::Ignored => return Ok(Answer::not_activated()),
                Admission::Refused(refusal) => return Err(refusal.into()),
            }
            let runs = Err(targets.missing);
            return self.take_in(call, Target::Named(AtTrigger { module, name, execution: &execution, runs })).await;
        }
        if admitted.is_empty() {
            return match first_refusal {
                Some(refusal) if !ignored => Err(refusal.into()),
                _ => Ok(Answer::not_activated()),
            };
        }
        let runs = Ok(admitted);
        self.take_in(call, Target::Named(AtTrigger { module, name, execution: &execution, runs })).await
    }

    /// Checks that a module declares a named trigger in some version, before a call's
    /// body is read: an unknown target costs a caller nothing to be told.
    pub async fn check_named_trigger(&self, module: &str, name: &str) -> Result<(ModuleName, TriggerName), ExecError> {
        let unknown_module = || ExecError::UnknownModule(module.to_string());
        let module = ModuleName::parse(module).map_err(|_| unknown_module())?;
        let name = TriggerName::parse(name).map_err(|e| ExecError::UnknownTrigger(e.to_string()))?;
        let record = self.shared.store.module(&module).await?.ok_or_else(unknown_module)?;
        let declared = record.versions.iter().any(|v| v.info.named_triggers.iter().any(|t| t.name == name));
        if !declared {
            return Err(ExecError::UnknownTrigger(format!("module `{module}` declares no trigger `{name}`")));
        }
        Ok((module, name))
    }

    /// The runs a named-trigger call is for, each with its version's declaration of the
    /// trigger: the run given by id, or the runs waiting there now, longest waiting first.
    async fn named_targets(
        &self,
        module: &ModuleName,
        name: &TriggerName,
        execution: &Execution,
    ) -> Result<NamedTargets, ExecError> {
        let store = &self.shared.store;
        match execution {
            Execution::Run(run_id) => {
                let run = match RunId::parse(run_id) {
                    Ok(id) => store.run(id).await?.filter(|r| r.module == *module),
                    Err(_) => None,
                };
                let declared = match &run {
                    Some(run) => self.declared_named_trigger(run, name).await?,
                    None => None,
                };
                let missing = ExecError::UnknownExecution(run_id.clone());
                match (run, declared) {
                    (Some(run), Some(declared)) if !run.status.is_terminal() => {
                        Ok(NamedTargets { candidates: vec![(run, declared.clone())], fallback: declared, missing })
                    }
                    // An ended run is checked against its own version still.
                    (Some(_), Some(declared)) => {
                        Ok(NamedTargets { candidates: Vec::new(), fallback: declared, missing })
                    }
                    (Some(_), None) => Err(ExecError::UnknownTrigger(format!(
                        "run `{run_id}`'s module version declares no trigger `{name}`"
                    ))),
                    (None, _) => Ok(NamedTargets {
                        candidates: Vec::new(),
                        fallback: self.newest_named_trigger(module, name).await?,
                        missing,
                    }),
                }
            }
            Execution::Any | Execution::All => {
                let mut candidates = Vec::new();
                for (run, _) in self.trigger_waiters(module, name).await? {
                    if let Some(declared) = self.declared_named_trigger(&run, name).await? {
                        candidates.push((run, declared));
                    }
                }
                let missing = ExecError::NothingWaiting(module.to_string(), name.to_string());
                let fallback = match candidates.first() {
                    Some((_, declared)) => declared.clone(),
                    None => self.newest_named_trigger(module, name).await?,
                };
                Ok(NamedTargets { candidates, fallback, missing })
            }
        }
    }

    /// How the run's own module version declares a named trigger, if it does.
    async fn declared_named_trigger(
        &self,
        run: &RunRecord,
        name: &TriggerName,
    ) -> Result<Option<NamedTriggerInfo>, ExecError> {
        let module = self.shared.store.module(&run.module).await?;
        let version = module.as_ref().and_then(|m| m.versions.iter().find(|v| v.version == run.version));
        Ok(version.and_then(|v| v.info.named_triggers.iter().find(|t| t.name == *name).cloned()))
    }

    async fn newest_named_trigger(
        &self,
        module: &ModuleName,
        name: &TriggerName,
    ) -> Result<NamedTriggerInfo, ExecError> {
        let unknown = || ExecError::UnknownModule(module.to_string());
        let record = self.shared.store.module(module).await?.ok_or_else(unknown)?;
        let newest = record.latest().ok_or_else(unknown)?;
        let declared = newest.info.named_triggers.iter().find(|t| t.name == *name).cloned();
        declared.ok_or_else(|| ExecError::UnknownTrigger(format!("module `{module}` declares no trigger `{name}`")))
    }

    /// Checks a named-trigger call against one declaration: its auth, then its condition.
    async fn admit_named(
        &self,
        declared: &NamedTriggerInfo,
        credentials: &Credentials,
        call: &mut Call,
    ) -> Result<Admission, ExecError> {
        let mut query = credentials.query.clone();
        let presented = Presented {
            query: &mut query,
            headers: &credentials.headers,
            body: &credentials.body,
            now_ms: self.now_ms(),
        };
        let caller = match callers::authenticate(&self.shared.store, &declared.auth, presented).await {
            Ok(caller) => caller,
            Err(callers::AuthError::Refused(_)) if declared.on_auth_failure == OnAuthFailure::Ignore => {
                return Ok(Admission::Ignored);
            }
            Err(callers::AuthError::Refused(refusal)) => return Ok(Admission::Refused(refusal)),
            Err(callers::AuthError::Store(e)) => return Err(e.into()),
        };
        // A false condition: the call is ignored and the runs stay paused.
        if !condition_holds(declared.condition.as_ref(), call) {
            return Ok(Admission::Ignored);
        }
        call.caller = caller.clone();
        call.message_id = callers::message_id(&declared.auth, &credentials.headers, &credentials.body);
        Ok(Admission::Admitted(caller))
    }

    /// Hands the call to the runs it is for: by id, the first waiting run that takes it
    /// (each claimed by one call only), or every waiting run. Returns those that took it.
    async fn resume_named(
        self: &Arc<Self>,
        module: &ModuleName,
        name: &TriggerName,
        execution: &Execution,
        admitted: Vec<(RunId, Caller)>,
        call: &Call,
        noted: Option<&Noted<'_>>,
    ) -> Result<Vec<RunId>, ExecError> {
        let store = &self.shared.store;
        let deadline = Instant::now() + self.shared.settings.take_timeout;
        let nothing_waiting = || ExecError::NothingWaiting(module.to_string(), name.to_string());
        // Checked before any run is claimed: a refusal takes no run out of the queue.
        let admitted = self.with_room(admitted).await?;
        match execution {
            Execution::Run(_) => {
                let (run_id, caller) = admitted.into_iter().next().ok_or_else(nothing_waiting)?;
                self.hand_to_trigger(run_id, name, call, caller, deadline, noted).await?;
                Ok(vec![run_id])
            }
            Execution::Any => {
                for (run_id, caller) in admitted {
                    if !store.claim_trigger_waiter(module, name, run_id).await? {
                        continue;
                    }
                    let handed = self.hand_to_trigger(run_id, name, call, caller, deadline, noted).await;
                    match self.unclaim_unless_taken(module, name, run_id, handed).await? {
                        Ok(()) => return Ok(vec![run_id]),
                        // It ended (or closed) before taking it, or filled up since the look
                        // at its room: the next one may.
                        Err(ExecError::NotTaken(reason)) if reason != NotTakenReason::TimedOut => continue,
                        Err(ExecError::InboxFull(_)) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Err(nothing_waiting())
            }
            Execution::All => {
                let mut claimed = Vec::new();
                for (run_id, caller) in admitted {
                    if store.claim_trigger_waiter(module, name, run_id).await? {
                        claimed.push((run_id, caller));
                    }
                }
                let handed = claimed
                    .iter()
                    .map(|(run_id, caller)| self.hand_to_trigger(*run_id, name, call, caller.clone(), deadline, noted));
                let outcomes = futures::future::join_all(handed).await;
                let mut resumed = Vec::new();
                let mut timed_out = false;
                for ((run_id, _), handed) in claimed.into_iter().zip(outcomes) {
                    // Each run's outcome is its own: one that did not take the call does not
                    // undo those that did, nor keep the next from its place back in the queue.
                    match self.unclaim_unless_taken(module, name, run_id, handed).await {
                        Ok(Ok(())) => resumed.push(run_id),
                        Ok(Err(ExecError::NotTaken(NotTakenReason::TimedOut))) => timed_out = true,
                        Ok(Err(ExecError::NotTaken(_))) => {}
                        Ok(Err(e)) => tracing::warn!(run = %run_id, "a call to all runs did not reach this one: {e}"),
                        Err(e) => tracing::error!(run = %run_id, "cannot put the run back at the trigger: {e}"),
                    }
                }
                match (resumed.is_empty(), timed_out) {
                    (false, _) => Ok(resumed),
                    (true, true) => Err(ExecError::NotTaken(NotTakenReason::TimedOut)),
                    (true, false) => Err(nothing_waiting()),
                }
            }
        }
    }

    /// A claimed run that did not take the call waits there still, unless it moved on (then
    /// `trigger_waiters` drops it): it goes back in the queue.
    async fn unclaim_unless_taken(
        &self,
        module: &ModuleName,
        name: &TriggerName,
        run_id: RunId,
        handed: Result<(), ExecError>,
    ) -> Result<Result<(), ExecError>, ExecError> {
        if handed.is_err() {
            self.shared.store.add_trigger_waiter(module, name, run_id, self.now_ms()).await?;
        }
        Ok(handed)
    }

    /// Puts a call at a run's named trigger and holds it until the run takes it.
    async fn hand_to_trigger(
        self: &Arc<Self>,
        run_id: RunId,
        name: &TriggerName,
        call: &Call,
        caller: Caller,
        deadline: Instant,
        noted: Option<&Noted<'_>>,
    ) -> Result<(), ExecError> {
        self.admit_call(run_id).await?;
        let mut request = self.request(call, format!("trigger:{name}")).await?;
        request.caller = caller;
        let mut hold = self.shared.holds.hold_caller(&request.id).ok_or(ExecError::Overloaded)?;
        if let Some((key, record)) = noted {
            // Held while written: concurrent deliveries of one call note in turn.
            let mut record = record.lock().await;
            record.deliveries.push((run_id.to_string(), request.id.clone()));
            self.shared.store.put_message(key, &record).await?;
        }
        let delivered = self.shared.store.deliver_to_trigger(run_id, name, &request).await;
        // Woken whatever the write's fate: a call written but not confirmed durable may be
        // in the inbox, and the run must see it (as on the webhook path).
        self.wake(run_id);
        delivered?;
        let channel = Channel::Trigger(name.clone());
        self.until_taken(&mut hold, run_id, &channel, &request, deadline).await
    }

    /// The runs among `admitted` with room for one more call. A full one is passed over,
    /// so that it holds up no other run at its trigger; if none has room, the caller is
    /// refused as the first one refused it.
    async fn with_room(&self, admitted: Vec<(RunId, Caller)>) -> Result<Vec<(RunId, Caller)>, ExecError> {
        let mut with_room = Vec::with_capacity(admitted.len());
        let mut full = None;
        for (run_id, caller) in admitted {
            match self.admit_call(run_id).await {
                Ok(()) => with_room.push((run_id, caller)),
                Err(e @ ExecError::InboxFull(_)) => {
                    full.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        match full {
            Some(refusal) if with_room.is_empty() => Err(refusal),
            _ => Ok(with_room),
        }
    }

    // --- shared steps ---------------------------------------------------------------

    /// Refuses a call while the server or the run it is for has too much waiting.
    async fn admit_call(&self, run_id: RunId) -> Result<(), ExecError> {
        self.admit_work()?;
        let quotas = self.shared.settings.quotas;
        let (count, bytes) = self.shared.store.queued_load(run_id).await?;
        if count >= quotas.queued_calls {
            return Err(ExecError::InboxFull(format!("the run has {count} calls waiting, its quota")));
        }
        if bytes >= quotas.queued_bytes {
            return Err(ExecError::InboxFull(format!("the run's waiting calls take {bytes} bytes, its quota")));
        }
        Ok(())
    }

    /// Turns an admitted caller's call into what its checks and its run see: credentials
    /// redacted, data parsed.
    fn admitted_call(&self, incoming: Incoming, caller: Caller, message_id: Option<String>) -> Result<Call, ExecError> {
        let mut memory = incoming.charge;
        let data = call_data(incoming.method, &incoming.query, &incoming.body, &mut memory)?;
        let mut headers = incoming.headers;
        callers::redact_credentials(&mut headers);
        Ok(Call {
            method: incoming.method,
            path: incoming.path,
            query: incoming.query,
            headers,
            data,
            caller,
            message_id,
            memory,
        })
    }

    /// A request record for a call, numbered in arrival order.
    async fn request(&self, call: &Call, webhook: String) -> Result<RequestRecord, ExecError> {
        Ok(RequestRecord {
            id: format!("rq-{}", self.shared.store.next_id().await?),
            webhook,
            method: call.method,
            path: call.path.clone(),
            query: call.query.clone(),
            headers: call.headers.clone(),
            data: call.data.clone(),
            caller: call.caller.clone(),
            received_at_ms: self.now_ms(),
        })
    }

    // --- senders' retries -----------------------------------------------------------

    fn message(
        &self,
        scope: &str,
        call: &Call,
        target: &str,
        deliveries: Vec<(String, String)>,
        answer: Option<HttpResponse>,
    ) -> Option<Message> {
        let id = call.message_id.as_ref()?;
        let now = self.now_ms();
        let answer_from = match (&answer, scope.starts_with("named:")) {
            (_, true) => AnswerFrom::Resumed,
            (Some(_), false) => AnswerFrom::Stored,
            (None, false) => AnswerFrom::Run,
        };
        let record = IdempotencyRecord {
            fingerprint: fingerprint(call.method, target, &call.data),
            deliveries,
            accepted: false,
            answer,
            answer_from,
            created_at_ms: now,
            forget_at_ms: now.saturating_add(MESSAGE_WINDOW.as_millis() as u64),
            capped: counts_against_the_cap(&call.caller),
        };
        // An id belongs to its sender: another caller cannot claim it first.
        let key = format!("{scope}\0{}\0{id}", caller_identity(&call.caller));
        Some(Message { key, record, shows_runs: shows_runs(&call.caller) })
    }

    /// Notes a first call's message id; for a repeat, returns the first call's answer
    /// (waiting up to `window` for it).
    async fn begin(&self, message: &Option<Message>, window: Duration) -> Result<Begun, ExecError> {
        let Some(message) = message else { return Ok(Begun::First(None)) };
        let store = &self.shared.store;
        let deadline = Instant::now() + window;
        loop {
            // Held before it is noted: a retry that finds the note sees its first in flight.
            let hold = self.shared.holds.hold(&message_hold_id(&message.key));
            let Some(first) = store.begin_message(&message.key, &message.record, self.now_ms()).await? else {
                return Ok(Begun::First(Some(hold)));
            };
            drop(hold);
            if first.fingerprint != message.record.fingerprint {
                return Err(ExecError::MessageReused);
            }
            match self.first_fate(&message.key, &first, deadline).await? {
                Some(first) => return self.first_answer(&first, message.shows_runs, window).await.map(Begun::Repeat),
                // The first call was not accepted: this one is new.
                None => store.forget_message(&message.key).await?,
            }
        }
    }

    /// What became of the first call of a message: its record once accepted, `None` if it
    /// never was. Waits while its first caller is still waiting.
    async fn first_fate(
        &self,
        key: &str,
        first: &IdempotencyRecord,
        deadline: Instant,
    ) -> Result<Option<IdempotencyRecord>, ExecError> {
        let store = &self.shared.store;
        let mut record = first.clone();
        loop {
            if record.accepted {
                return Ok(Some(record));
            }
            match self.deliveries_fate(key, &record).await? {
                Fate::Accepted => {
                    record.accepted = true;
                    store.put_message(key, &record).await?;
                    return Ok(Some(record));
                }
                Fate::NotAccepted => return Ok(None),
                Fate::InFlight if Instant::now() >= deadline => {
                    return Err(ExecError::NotTaken(NotTakenReason::TimedOut));
                }
                Fate::InFlight => tokio::time::sleep(Duration::from_millis(100)).await,
            }
            match store.message(key).await? {
                Some(fresh) => record = fresh,
                None => return Ok(None),
            }
        }
    }

    /// Where a first call's deliveries stand: taken or kept for their run, still with a
    /// waiting caller, or never accepted.
    async fn deliveries_fate(&self, key: &str, record: &IdempotencyRecord) -> Result<Fate, ExecError> {
        let store = &self.shared.store;
        if self.shared.holds.is_held(&message_hold_id(key)) {
            return Ok(Fate::InFlight);
        }
        for (run_id, request_id) in &record.deliveries {
            let Ok(run_id) = RunId::parse(run_id) else { continue };
            let queued = store.queued(run_id).await?;
            if let Some(entry) = queued.iter().find(|e| e.request.id == *request_id) {
                return Ok(if entry.held { Fate::InFlight } else { Fate::Accepted });
            }
            let kept = store.not_taken(run_id).await?;
            if kept.iter().any(|n| n.request.id == *request_id && n.acknowledged) {
                return Ok(Fate::Accepted);
            }
            if self.in_log(run_id, request_id).await? {
                return Ok(Fate::Accepted);
            }
        }
        Ok(Fate::NotAccepted)
    }

    /// Whether a request reached a run's log: taken at a wait, or the run's start.
    async fn in_log(&self, run_id: RunId, request_id: &str) -> Result<bool, ExecError> {
        let (events, _) = self.shared.store.events(run_id).await?;
        Ok(events.into_iter().any(|record| match record.event {
            Event::WaitEnded { result: WaitOutcome::Request { request }, .. } => request.id == request_id,
            Event::Started { trigger: Some(request), .. } => request.id == request_id,
            _ => false,
        }))
    }

    /// The answer the first call of an accepted message got: stored, or the run's own
    /// (recorded in its log, or awaited up to `window`).
    async fn first_answer(
        &self,
        first: &IdempotencyRecord,
        shows_runs: bool,
        window: Duration,
    ) -> Result<Answer, ExecError> {
        if let Some(response) = &first.answer {
            // An older version stored the runs' ids for every caller: told again as now.
            if first.answer_from == AnswerFrom::Resumed
                && let Ok(stored) = serde_json::from_str::<Value>(&response.body)
                && let Some(ids) = stored["resumed"].as_array()
            {
                let ids = ids.iter().filter_map(Value::as_str).map(String::from).collect();
                return Ok(resumed_answer(ids, shows_runs));
            }
            let delivered = first.deliveries.first().filter(|_| first.answer_from != AnswerFrom::Resumed);
            let request_id = delivered.map(|(_, request)| request.clone());
            return Ok(Answer { response: response.clone(), request_id });
        }
        if first.answer_from == AnswerFrom::Resumed {
            // Its first caller got no answer (the server stopped): the runs that took it.
            let mut resumed = Vec::new();
            for (run_id, request_id) in &first.deliveries {
                if let Ok(id) = RunId::parse(run_id)
                    && self.in_log(id, request_id).await?
                {
                    resumed.push(run_id.clone());
                }
            }
            return Ok(resumed_answer(resumed, shows_runs));
        }
        let delivered = first.deliveries.first().and_then(|(run, request)| Some((RunId::parse(run).ok()?, request)));
        let Some((run_id, request_id)) = delivered else {
            return Err(ExecError::NotTaken(NotTakenReason::TimedOut));
        };
        if let Some(response) = self.recorded_answer(run_id, request_id).await? {
            return Ok(Answer::for_request(response, request_id));
        }
        let mut hold = self.shared.holds.join(request_id).unwrap_or_else(|| self.shared.holds.hold(request_id));
        let settled = |s: &CallState| matches!(s, CallState::Answered(_) | CallState::Unanswered);
        match hold.until(Instant::now() + window, settled).await {
            CallState::Answered(response) => Ok(Answer::for_request(response, request_id)),
            CallState::Unanswered => Err(ExecError::NoAnswer),
            _ => match self.recorded_answer(run_id, request_id).await? {
                Some(response) => Ok(Answer::for_request(response, request_id)),
                None => Err(ExecError::ResponseTimeout(window.as_millis() as u32)),
            },
        }
    }

    /// The answer a run gave a request, from its log (URL keys back in place).
    async fn recorded_answer(&self, run_id: RunId, request_id: &str) -> Result<Option<HttpResponse>, ExecError> {
        let (events, _) = self.shared.store.events(run_id).await?;
        let answered = events.into_iter().find_map(|record| match record.event {
            Event::Responded { request_id: id, response: Some(response), .. } if id == request_id => Some(response),
            _ => None,
        });
        Ok(answered.map(|response| self.runtime.expand_keys(run_id, response)))
    }

    /// After a first call: an accepted message keeps its answer for retries (durably before
    /// the caller sees it); a refused one is forgotten, so a retry is a new call; one whose
    /// fate is unknown stays as it is.
    async fn settle(&self, message: &Option<Message>, outcome: &Result<Answer, ExecError>) {
        let Some(message) = message else { return };
        // Neither accepted nor refused (taken but not known to be durable, or the store
        // failed on the way): the note stays, and a retry looks for the call where it would
        // be (`first_fate`) before it delivers anything.
        if matches!(outcome, Err(ExecError::Undurable | ExecError::Store(_))) {
            return;
        }
        let store = &self.shared.store;
        // Any answer about a delivered call, or a late one: the call is in its run.
        let accepted = matches!(outcome, Ok(_) | Err(ExecError::ResponseTimeout(_) | ExecError::NoAnswer));
        let written = if accepted {
            // The deliveries noted meanwhile are in the stored record.
            let stored = store.message(&message.key).await.ok().flatten();
            let mut record = stored.unwrap_or_else(|| message.record.clone());
            record.accepted = true;
            // Kept with the id, so that it outlives the run (see `--retain`).
            if let Ok(answer) = outcome {
                record.answer = Some(answer.response.clone());
            }
            store.put_message(&message.key, &record).await
        } else {
            store.forget_message(&message.key).await
        };
        if let Err(e) = written {
            tracing::error!("cannot note a sender's message id: {e}");
        }
    }
}

/// Who sent a call, as far as it was verified: a message id is theirs.
/// Whether a caller's message ids count against `MESSAGES_KEPT`: anyone can call
/// anonymously, or with a URL key that leaked; a signature or an API key is someone's.
fn counts_against_the_cap(caller: &Caller) -> bool {
    matches!(caller, Caller::Anonymous | Caller::UrlKey)
}

fn caller_identity(caller: &Caller) -> String {
    match caller {
        Caller::Anonymous => "anonymous".into(),
        Caller::UrlKey => "url-key".into(),
        Caller::ApiKey { name, .. } => format!("api-key:{name}"),
        Caller::Signature { scheme } => format!("signature:{}", scheme.name()),
    }
}

/// What a trigger's `expects` schema sees of a call.
fn expected_view(call: &Call) -> Value {
    let headers: Map<String, Value> =
        call.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v.clone()))).collect();
    json!({ "method": call.method.as_str(), "headers": headers, "query": query_object(&call.query), "body": *call.data })
}

/// An automatic answer with `{{run_id}}`, `{{request_id}}` and `{{module}}` filled in.
fn fill(response: &HttpResponse, run_id: RunId, request_id: &str, module: &ModuleName) -> HttpResponse {
    let run_id = run_id.to_string();
    let fill = |text: &str| {
        text.replace("{{run_id}}", &run_id).replace("{{request_id}}", request_id).replace("{{module}}", module.as_str())
    };
    HttpResponse {
        status: response.status,
        headers: response.headers.iter().map(|(k, v)| (k.clone(), fill(v))).collect(),
        body: fill(&response.body),
    }
}

fn check_open(hook: &HookRecord, now_ms: u64) -> Result<(), ExecError> {
    match hook.state {
        HookState::Open if hook.expired(now_ms) => Err(ExecError::Gone("the webhook has expired".into())),
        HookState::Open => Ok(()),
        HookState::Used => Err(ExecError::Gone("the webhook was single-use and has been used".into())),
        HookState::Closed => Err(ExecError::Gone("the webhook is closed".into())),
    }
}

/// Calls still held in a run's inbox: their callers are waiting.
pub fn held(entries: Vec<InboxEntry>) -> impl Iterator<Item = RequestRecord> {
    entries.into_iter().filter(|e| e.held).map(|e| e.request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::Scheme;

    #[test]
    fn only_ids_of_callers_anyone_could_be_count_against_the_cap() {
        assert!(counts_against_the_cap(&Caller::Anonymous));
        assert!(counts_against_the_cap(&Caller::UrlKey));
        assert!(!counts_against_the_cap(&Caller::Signature { scheme: Scheme::Github }));
        assert!(!counts_against_the_cap(&Caller::ApiKey { name: "ops".into(), roles: Vec::new() }));
    }
}
