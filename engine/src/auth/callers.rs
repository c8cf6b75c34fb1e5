//! Checking the caller of a webhook or trigger against its auth: a key in the URL, a
//! bearer API key with roles, or an HMAC signature; and what identifies a sender's message
//! so that its retries are recognised.

use crate::auth::signatures::{self, SignatureError, Signed};
use crate::ids::KeyName;
use crate::store::records::{Caller, HookAuth, OnAuthFailure, Scheme};
use crate::store::{Registry, Store, StoreError};

/// The query parameter that carries a URL-embedded key; it never reaches the run.
pub const KEY_PARAM: &str = "key";

/// Headers that carry credentials: they never reach a run's log.
const CREDENTIAL_HEADERS: [&str; 4] = ["authorization", "proxy-authorization", "cookie", "x-api-key"];

/// Why a caller was refused: a 401 or a 403, with a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub forbidden: bool,
    pub code: &'static str,
    pub message: String,
}

fn unauthorized(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal { forbidden: false, code, message: message.into() }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a call presents: its query (a URL key is taken out of it), headers and raw body.
pub struct Presented<'a> {
    pub query: &'a mut Vec<(String, String)>,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    pub now_ms: u64,
}

/// Checks the caller; `Ok(None)` when it failed and the policy is to ignore such calls.
pub async fn admit(
    store: &Store,
    auth: &HookAuth,
    on_failure: OnAuthFailure,
    presented: Presented<'_>,
) -> Result<Option<Caller>, AuthError> {
    match authenticate(store, auth, presented).await {
        Ok(caller) => Ok(Some(caller)),
        Err(AuthError::Refused(_)) if on_failure == OnAuthFailure::Ignore => Ok(None),
        Err(e) => Err(e),
    }
}

/// Checks the caller against a webhook's or trigger's auth; a key in the query is taken
/// out of it.
pub async fn authenticate(store: &Store, auth: &HookAuth, presented: Presented<'_>) -> Result<Caller, AuthError> {
    match auth {
        HookAuth::None => Ok(Caller::Anonymous),
        HookAuth::QueryApiKey => {
            let key = take_query_key(presented.query)
                .ok_or_else(|| unauthorized("missing-key", "this URL carries a `key`"))?;
            api_key_caller(store, &key, &[]).await
        }
        HookAuth::UrlKey { key_sha256 } => match take_query_key(presented.query) {
            Some(key) if crate::auth::key_matches(&key, key_sha256) => Ok(Caller::UrlKey),
            Some(_) => Err(unauthorized("bad-key", "the URL's key is wrong").into()),
            None => Err(unauthorized("missing-key", "this webhook's URL carries a `key`").into()),
        },
        HookAuth::Bearer { roles } => bearer_caller(store, presented.headers, roles).await,
        HookAuth::Signature { scheme, secret } => signed_caller(store, *scheme, secret, &presented).await,
    }
}

/// The `key` query parameter, taken out so that it never reaches the run.
fn take_query_key(query: &mut Vec<(String, String)>) -> Option<String> {
    let key = query.iter().find(|(k, _)| k == KEY_PARAM).map(|(_, v)| v.clone());
    query.retain(|(k, _)| k != KEY_PARAM);
    key
}

/// The credential of an `Authorization: Bearer <token>` header; the scheme's name is
/// case-insensitive (RFC 9110).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(char::is_whitespace)?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The caller of a bearer API key that holds every one of `required`.
pub async fn bearer_caller(
    store: &Store,
    headers: &[(String, String)],
    required: &[String],
) -> Result<Caller, AuthError> {
    let presented = header(headers, "authorization").and_then(bearer_token);
    let Some(presented) = presented else {
        return Err(unauthorized("missing-key", "send `Authorization: Bearer <api key>`").into());
    };
    api_key_caller(store, presented, required).await
}

async fn api_key_caller(store: &Store, presented: &str, required: &[String]) -> Result<Caller, AuthError> {
    // Looked up by the key's digest: the key itself is never compared or stored.
    let key = store.api_key(&crate::auth::digest(presented)).await?;
    let key = key.ok_or_else(|| unauthorized("bad-key", "the API key is unknown or revoked"))?;
    let missing: Vec<&str> = required.iter().filter(|r| !key.roles.contains(r)).map(String::as_str).collect();
    if !missing.is_empty() {
        return Err(Refusal {
            forbidden: true,
            code: "missing-role",
            message: format!("the API key `{}` lacks the role(s) {}", key.name, missing.join(", ")),
        }
        .into());
    }
    Ok(Caller::ApiKey { name: key.name.to_string(), roles: key.roles })
}

async fn signed_caller(
    store: &Store,
    scheme: Scheme,
    secret_name: &str,
    presented: &Presented<'_>,
) -> Result<Caller, AuthError> {
    let secret = match KeyName::parse(secret_name) {
        Ok(name) => store.secret(&name).await?,
        Err(_) => None,
    };
    let secret = secret.ok_or_else(|| {
        unauthorized("secret-unavailable", format!("the secret `{secret_name}` this webhook verifies with is gone"))
    })?;
    let signed = Signed { headers: presented.headers, body: presented.body, now_secs: presented.now_ms / 1000 };
    signatures::verify(scheme, &secret, &signed).map_err(|e| {
        let code = match e {
            SignatureError::Missing(_) => "missing-signature",
            SignatureError::Stale => "stale-signature",
            SignatureError::Malformed(_) | SignatureError::Mismatch => "bad-signature",
            SignatureError::BadSecret(_) => "secret-unavailable",
        };
        unauthorized(code, e.to_string())
    })?;
    Ok(Caller::Signature { scheme })
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Credentials never reach the run's log.
pub fn redact_credentials(headers: &mut [(String, String)]) {
    for (name, value) in headers {
        if CREDENTIAL_HEADERS.iter().any(|c| name.eq_ignore_ascii_case(c)) {
            *value = "[redacted]".into();
        }
    }
}

/// The id a sender gives a message, which its retries repeat: the signature scheme's
/// (Standard Webhooks' signed `webhook-id`, the signed `id` of a Stripe event, GitHub's
/// signed body), else an `Idempotency-Key` header from any caller.
pub fn message_id(auth: &HookAuth, headers: &[(String, String)], body: &[u8]) -> Option<String> {
    let from_scheme = match auth {
        HookAuth::Signature { scheme: Scheme::StandardWebhooks, .. } => {
            header(headers, "webhook-id").map(str::to_string)
        }
        // GitHub signs the body only, not its delivery id (which a replay could change):
        // the signed body is the message. A redelivery repeats it exactly.
        HookAuth::Signature { scheme: Scheme::Github, .. } => Some(format!("body-{}", body_digest(body))),
        HookAuth::Signature { scheme: Scheme::Stripe, .. } => Some(
            serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|event| event.get("id").and_then(|id| id.as_str()).map(str::to_string))
                .unwrap_or_else(|| format!("body-{}", body_digest(body))),
        ),
        _ => None,
    };
    from_scheme
        .map(|id| format!("{}:{id}", scheme_label(auth)))
        .or_else(|| header(headers, "idempotency-key").map(|key| format!("idempotency-key:{key}")))
        .filter(|id| id.len() <= 512)
}

fn body_digest(body: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(body))
}

fn scheme_label(auth: &HookAuth) -> &'static str {
    match auth {
        HookAuth::Signature { scheme, .. } => scheme.name(),
        _ => "idempotency-key",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_needs_a_token() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("BEARER abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn every_credential_header_is_redacted() {
        let mut headers: Vec<(String, String)> =
            ["Authorization", "Proxy-Authorization", "Cookie", "X-Api-Key", "X-Other"]
                .iter()
                .map(|name| (name.to_string(), "secret".to_string()))
                .collect();
        redact_credentials(&mut headers);
        let kept: Vec<&str> = headers.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(kept, ["[redacted]", "[redacted]", "[redacted]", "[redacted]", "secret"]);
    }

    #[test]
    fn message_ids_come_from_the_scheme_then_an_idempotency_key() {
        let github = HookAuth::Signature { scheme: Scheme::Github, secret: "s".into() };
        let stripe = HookAuth::Signature { scheme: Scheme::Stripe, secret: "s".into() };
        // A delivery id another than the first cannot make a replayed body a new message.
        let first = message_id(&github, &[("X-GitHub-Delivery".to_string(), "d-1".to_string())], b"{}");
        let replayed = message_id(&github, &[("X-GitHub-Delivery".to_string(), "d-2".to_string())], b"{}");
        assert_eq!(first, replayed);
        assert_eq!(message_id(&stripe, &[], br#"{"id":"evt_1"}"#).as_deref(), Some("stripe:evt_1"));
        let keyed = vec![("Idempotency-Key".to_string(), "k-1".to_string())];
        assert_eq!(message_id(&HookAuth::None, &keyed, b"{}").as_deref(), Some("idempotency-key:k-1"));
        assert_eq!(message_id(&HookAuth::None, &[], b"{}"), None);
    }
}
