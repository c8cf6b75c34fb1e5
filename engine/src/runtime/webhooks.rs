//! `latch:workflow/webhooks`: URLs a run hands out and later waits on.

use super::HostState;
use super::bindings::types::{
    Auth, AuthFailure, Error as WitError, Method as WitMethod, Response, ResponseMode as WitResponseMode,
    SignatureScheme as WitScheme,
};
use super::bindings::webhooks::{Host, Webhook, WebhookOptions};
use super::fault::HostFault;
use crate::ids::{KeyName, Token, WebhookId};
use crate::rules;
use crate::store::records::{
    Event, Failure, HookAuth, HookRecord, HookState, HttpResponse, Method, NotTakenReason, OnAuthFailure, ResponseMode,
    Scheme, WebhookInfo,
};
use crate::store::{Inbox, Registry, StoreError};

pub fn method_from_wit(method: WitMethod) -> Method {
    match method {
        WitMethod::Get => Method::Get,
        WitMethod::Post => Method::Post,
        WitMethod::Put => Method::Put,
        WitMethod::Patch => Method::Patch,
        WitMethod::Delete => Method::Delete,
    }
}

pub fn scheme_from_wit(scheme: WitScheme) -> Scheme {
    match scheme {
        WitScheme::StandardWebhooks => Scheme::StandardWebhooks,
        WitScheme::Stripe => Scheme::Stripe,
        WitScheme::Github => Scheme::Github,
    }
}

pub fn scheme_to_wit(scheme: Scheme) -> WitScheme {
    match scheme {
        Scheme::StandardWebhooks => WitScheme::StandardWebhooks,
        Scheme::Stripe => WitScheme::Stripe,
        Scheme::Github => WitScheme::Github,
    }
}

pub fn method_to_wit(method: Method) -> WitMethod {
    match method {
        Method::Get => WitMethod::Get,
        Method::Post => WitMethod::Post,
        Method::Put => WitMethod::Put,
        Method::Patch => WitMethod::Patch,
        Method::Delete => WitMethod::Delete,
    }
}

/// A final HTTP status a response may have (hyper cannot send a 1xx as the final answer).
pub fn check_status(status: u16) -> Result<(), Failure> {
    if !(200..=599).contains(&status) {
        return Err(Failure::new("bad-status", format!("{status} is not a final HTTP status (200 to 599)")));
    }
    Ok(())
}

/// A replayed call must repeat the recorded one.
pub fn diverged_unless(same: bool, describe: impl FnOnce() -> String) -> wasmtime::Result<()> {
    if same { Ok(()) } else { Err(HostFault::Nondeterminism(describe()).into()) }
}

impl From<Failure> for WitError {
    fn from(f: Failure) -> Self {
        WitError { code: f.code, message: f.message }
    }
}

impl From<Response> for HttpResponse {
    fn from(r: Response) -> Self {
        HttpResponse { status: r.status, headers: r.headers, body: r.body }
    }
}

impl HostState {
    /// The hook record and public view of a live `create` call, from its options.
    async fn new_hook(&mut self, options: WebhookOptions) -> Result<(HookRecord, WebhookInfo), Failure> {
        let number = self.webhooks.len() as u32 + 1;
        let mut url_key = None;
        let auth = match options.auth {
            Auth::None => HookAuth::None,
            Auth::UrlKey => {
                // Derived, never stored: the log gets a placeholder, the hook its sha256.
                let key = self.journal.redactor().key_for(number);
                let key_sha256 = crate::auth::digest(&key);
                url_key = Some(key);
                HookAuth::UrlKey { key_sha256 }
            }
            Auth::Bearer(roles) => HookAuth::Bearer { roles },
            Auth::Signature(signature) => {
                let name =
                    KeyName::parse(&signature.secret).map_err(|e| Failure::new("unknown-secret", e.to_string()))?;
                let known =
                    self.shared.store.secret(&name).await.map_err(|e| Failure::new("storage", e.to_string()))?;
                if known.is_none() {
                    return Err(Failure::new(
                        "unknown-secret",
                        format!("no secret is stored as `{}` (PUT /v1/secrets/{{name}})", signature.secret),
                    ));
                }
                HookAuth::Signature { scheme: scheme_from_wit(signature.scheme), secret: signature.secret }
            }
        };
        let on_auth_failure = match options.on_auth_failure {
            AuthFailure::Error => OnAuthFailure::Error,
            AuthFailure::Ignore => OnAuthFailure::Ignore,
        };
        let schema = match options.schema {
            Some(text) => {
                let schema = serde_json::from_str(&text)
                    .map_err(|e| Failure::new("bad-schema", format!("the schema is not JSON: {e}")))?;
                rules::check_schema(&schema).map_err(|e| Failure::new("bad-schema", e.to_string()))?;
                Some(schema)
            }
            None => None,
        };
        if let Some(condition) = &options.condition {
            rules::check_condition(condition).map_err(|e| Failure::new("bad-condition", e.to_string()))?;
        }
        let response = match options.response {
            WitResponseMode::Automatic(response) => {
                check_status(response.status)?;
                ResponseMode::Automatic { response: response.into() }
            }
            WitResponseMode::Manual(deadline_ms) => ResponseMode::Manual { deadline_ms },
        };
        let chosen_token = options.token.is_some();
        let token = match options.token {
            Some(token) => Token::parse(&token).map_err(|e| Failure::new("bad-token", e.to_string()))?,
            None => Token::parse(&crate::auth::random_token()).map_err(|e| Failure::new("bad-token", e.to_string()))?,
        };
        let mut methods: Vec<Method> = options.methods.into_iter().map(method_from_wit).collect();
        if methods.is_empty() {
            methods.push(Method::Post);
        }
        let mut url = format!("{}/hooks/{token}", self.shared.settings.public_url);
        if let Some(key) = &url_key {
            url.push_str(&format!("?key={key}"));
        }
        let info = WebhookInfo { id: WebhookId(number), token: token.clone(), url };
        let hook = HookRecord {
            token,
            run_id: self.run.id,
            number,
            methods,
            single_use: options.single_use,
            state: HookState::Open,
            auth,
            on_auth_failure,
            schema,
            condition: options.condition,
            response,
            expires_at_ms: options.expires_in_ms.map(|ms| self.shared.clock.now_ms().saturating_add(ms)),
            chosen_token,
        };
        Ok((hook, info))
    }

    /// Creates a webhook live: its hook record under its token (staged; a live token of
    /// another webhook is refused), then its `webhook-created` event. A refused create is
    /// recorded as such, so replay refuses it too.
    async fn create_live(&mut self, options: WebhookOptions) -> Result<Result<WebhookInfo, Failure>, HostFault> {
        let quota = self.shared.settings.quotas.webhooks;
        if self.webhooks.len() >= quota {
            return Err(HostFault::Quota(format!("the run reached its quota of {quota} webhooks")));
        }
        let refused = match self.new_hook(options).await {
            Ok((hook, info)) => match self.shared.store.create_hook(&hook, self.shared.clock.now_ms()).await {
                Ok(()) => {
                    self.journal.record(Event::WebhookCreated { webhook: Ok(info.clone()) })?;
                    return Ok(Ok(info));
                }
                Err(StoreError::TokenTaken) => {
                    Failure::new("token-taken", format!("token `{}` belongs to a live webhook", hook.token))
                }
                Err(e) => return Err(e.into()),
            },
            Err(failure) => failure,
        };
        self.journal.record(Event::WebhookCreated { webhook: Err(refused.clone()) })?;
        Ok(Err(refused))
    }

    /// The webhook `id` names, if this run created it.
    pub(super) fn webhook(&self, id: &str) -> Result<(WebhookId, &WebhookInfo), HostFault> {
        let webhook = WebhookId::parse(id).ok();
        webhook
            .and_then(|w| Some((w, self.webhooks.get(w.0.checked_sub(1)? as usize)?.as_ref()?)))
            .ok_or_else(|| HostFault::Misuse(format!("`{id}` is not a webhook of this run")))
    }
}

impl Host for HostState {
    async fn create(&mut self, options: WebhookOptions) -> wasmtime::Result<Result<Webhook, WitError>> {
        let result = match self.journal.replay("webhook-created")? {
            Some(Event::WebhookCreated { webhook }) => webhook,
            _ => self.create_live(options).await?,
        };
        self.webhooks.push(result.as_ref().ok().cloned());
        let created = result.map(|w| Webhook { id: w.id.to_string(), token: w.token.to_string(), url: w.url });
        Ok(created.map_err(WitError::from))
    }

    async fn close(&mut self, id: String) -> wasmtime::Result<()> {
        if let Some(Event::WebhookClosed { id: recorded }) = self.journal.replay("webhook-closed")? {
            return diverged_unless(recorded.to_string() == id, || {
                format!("the run closes `{id}` where its log closes `{recorded}`")
            });
        }
        let (webhook, info) = self.webhook(&id)?;
        let token = info.token.clone();
        let now = self.shared.clock.now_ms();
        let left = self.shared.store.close_hook(&token, self.run.id, webhook, NotTakenReason::WebhookClosed, now).await;
        // Callers still held on it learn that the run will not take their calls.
        for entry in left.map_err(HostFault::from)? {
            if entry.held {
                self.shared.holds.refused(&entry.request.id, NotTakenReason::WebhookClosed);
            }
        }
        self.journal.record(Event::WebhookClosed { id: webhook })?;
        Ok(())
    }
}
