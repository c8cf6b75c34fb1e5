//! Blink's "Generate Callback URL" + Wait: make a callback URL guarded the way the input
//! asks, log it for the external system, wait for its call, and go on with its JSON.
//!
//! Input: `{"auth": "none" | "url-key" | "bearer" | "signature", "roles"?: [..],
//! "scheme"?: "standard-webhooks" | "stripe" | "github", "secret"?: name,
//! "on_fail"?: "error" | "ignore", "calls"?: n, "schema"?: JSON Schema, "condition"?: CEL,
//! "notify_url"?: URL}`. With `notify_url`, the callback URL is also POSTed there as
//! `{"callback_url": ...}` (the external system's registration call), in a recorded step.
//! Output: `{"calls": [{"data", "caller"}]}`, one entry per call taken (default 1).

use latch_sdk::{
    Caller, Error, HttpRequest, ModuleInfo, Result, RetryPolicy, SignatureScheme, Start, StepError, Webhook,
    WebhookOptions, Workflow, log, step,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Input {
    auth: String,
    #[serde(default)]
    roles: Vec<String>,
    scheme: Option<String>,
    secret: Option<String>,
    #[serde(default)]
    on_fail: Option<String>,
    #[serde(default = "one")]
    calls: u32,
    schema: Option<Value>,
    condition: Option<String>,
    notify_url: Option<String>,
}

fn one() -> u32 {
    1
}

fn scheme(name: Option<&str>) -> Result<SignatureScheme> {
    match name {
        Some("standard-webhooks") => Ok(SignatureScheme::StandardWebhooks),
        Some("stripe") => Ok(SignatureScheme::Stripe),
        Some("github") => Ok(SignatureScheme::Github),
        other => Err(Error::new("bad-input", format!("unknown signature scheme {other:?}"))),
    }
}

fn options(input: &Input) -> Result<WebhookOptions> {
    let mut options = WebhookOptions::new();
    if input.calls > 1 {
        options = options.many();
    }
    if input.on_fail.as_deref() == Some("ignore") {
        options = options.ignore_auth_failures();
    }
    if let Some(schema) = &input.schema {
        options = options.schema(schema);
    }
    if let Some(condition) = &input.condition {
        options = options.condition(condition.clone());
    }
    Ok(match input.auth.as_str() {
        "none" => options,
        "url-key" => options.url_key(),
        "bearer" => options.bearer(input.roles.clone()),
        "signature" => {
            let secret = input.secret.clone().ok_or_else(|| Error::new("bad-input", "a signature needs a secret"))?;
            options.signature(scheme(input.scheme.as_deref())?, secret)
        }
        other => return Err(Error::new("bad-input", format!("unknown auth `{other}`"))),
    })
}

fn caller_json(caller: &Caller) -> Value {
    match caller {
        Caller::Anonymous => json!({ "kind": "anonymous" }),
        Caller::UrlKey => json!({ "kind": "url-key" }),
        Caller::ApiKey { name, roles } => json!({ "kind": "api-key", "name": name, "roles": roles }),
        Caller::Signature(scheme) => json!({ "kind": "signature", "scheme": format!("{scheme:?}") }),
    }
}

struct BlinkCallback;

impl Workflow for BlinkCallback {
    fn describe() -> ModuleInfo {
        ModuleInfo::new("Generates a guarded callback URL and waits for the external system's call")
    }

    fn run(start: Start) -> Result<Value> {
        let input: Input = start.input()?;
        let callback = Webhook::create(options(&input)?)?;
        log::info(format!("send the result to {}", callback.url()));
        if let Some(notify_url) = &input.notify_url {
            step("register-callback", RetryPolicy::default(), |_| {
                let request = HttpRequest::post(notify_url).json(&json!({ "callback_url": callback.url() }))?;
                request.send().map_err(StepError::Fatal)?;
                Ok(())
            })?;
        }
        let mut calls = Vec::new();
        for _ in 0..input.calls {
            let request = callback.next()?;
            calls.push(json!({ "data": request.data, "caller": caller_json(&request.caller) }));
        }
        Ok(json!({ "calls": calls }))
    }
}

latch_sdk::workflow!(BlinkCallback);
