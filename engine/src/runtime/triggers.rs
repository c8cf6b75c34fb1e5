//! A module's start triggers, as its `describe()` declares them, checked at upload: a
//! suffix with a space or another illegal character, a repeated suffix, an automatic
//! answer with a status other than 200, 201, 202 or 204, or a schema that is not one is
//! refused there, naming the trigger.

use super::RuntimeError;
use super::bindings::types::{Auth, AuthFailure, ResponseMode as WitResponseMode};
use super::bindings::{NamedTrigger, Trigger};
use super::webhooks::{method_from_wit, scheme_from_wit};
use crate::ids::{Suffix, TriggerName};
use crate::rules;
use crate::store::records::{HookAuth, Method, NamedTriggerInfo, OnAuthFailure, ResponseMode, TriggerInfo};

/// The statuses an automatic answer may have (the "Webhook Response" step's choices).
const AUTOMATIC_STATUSES: [u16; 4] = [200, 201, 202, 204];

fn bad(name: &str, problem: impl Into<String>) -> RuntimeError {
    RuntimeError::BadTrigger { name: name.to_string(), problem: problem.into() }
}

/// A trigger's auth: `url-key` is an API key in the URL's `?key=`.
fn auth_from_wit(auth: Auth) -> HookAuth {
    match auth {
        Auth::None => HookAuth::None,
        Auth::UrlKey => HookAuth::QueryApiKey,
        Auth::Bearer(roles) => HookAuth::Bearer { roles },
        Auth::Signature(signature) => {
            HookAuth::Signature { scheme: scheme_from_wit(signature.scheme), secret: signature.secret }
        }
    }
}

fn on_failure_from_wit(on_failure: AuthFailure) -> OnAuthFailure {
    match on_failure {
        AuthFailure::Error => OnAuthFailure::Error,
        AuthFailure::Ignore => OnAuthFailure::Ignore,
    }
}

pub fn named_trigger_from_wit(trigger: NamedTrigger) -> Result<NamedTriggerInfo, RuntimeError> {
    let name = TriggerName::parse(&trigger.name).map_err(|e| bad(&trigger.name, e.to_string()))?;
    if let Some(condition) = &trigger.condition {
        rules::check_condition(condition).map_err(|e| bad(name.as_str(), e.to_string()))?;
    }
    Ok(NamedTriggerInfo {
        auth: auth_from_wit(trigger.auth),
        on_auth_failure: on_failure_from_wit(trigger.on_auth_failure),
        condition: trigger.condition,
        name,
    })
}

pub fn trigger_from_wit(trigger: Trigger) -> Result<TriggerInfo, RuntimeError> {
    let name = trigger.name;
    let suffix = Suffix::parse(&trigger.suffix).map_err(|e| bad(&name, e.to_string()))?;
    let auth = auth_from_wit(trigger.auth);
    let expects = match trigger.expects {
        Some(text) => {
            let schema = serde_json::from_str(&text).map_err(|e| bad(&name, format!("`expects` is not JSON: {e}")))?;
            rules::check_schema(&schema).map_err(|e| bad(&name, e.to_string()))?;
            Some(schema)
        }
        None => None,
    };
    let response = match trigger.response {
        WitResponseMode::Automatic(response) if !AUTOMATIC_STATUSES.contains(&response.status) => {
            return Err(bad(
                &name,
                format!("an automatic answer's status is 200, 201, 202 or 204, not {}", response.status),
            ));
        }
        WitResponseMode::Automatic(response) => ResponseMode::Automatic { response: response.into() },
        WitResponseMode::Manual(deadline_ms) => ResponseMode::Manual { deadline_ms },
    };
    let mut methods: Vec<Method> = trigger.methods.into_iter().map(method_from_wit).collect();
    if methods.is_empty() {
        methods.push(Method::Post);
    }
    let on_auth_failure = on_failure_from_wit(trigger.on_auth_failure);
    Ok(TriggerInfo { name, suffix, methods, auth, on_auth_failure, expects, response })
}

/// Two triggers of one module may not share a suffix.
pub fn check_distinct(triggers: &[TriggerInfo]) -> Result<(), RuntimeError> {
    for (index, trigger) in triggers.iter().enumerate() {
        if triggers[..index].iter().any(|t| t.suffix == trigger.suffix) {
            return Err(bad(&trigger.name, format!("the suffix `{}` is used by another trigger", trigger.suffix)));
        }
    }
    Ok(())
}
