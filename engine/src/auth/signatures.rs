//! HMAC-SHA256 signature schemes for signed webhook calls: Standard Webhooks, Stripe and
//! GitHub. Every comparison is constant-time (`Mac::verify_slice`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How far a signed timestamp may be from the engine's clock, either way.
pub const TOLERANCE_SECS: u64 = 5 * 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64> ...`.
    StandardWebhooks,
    /// `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>]`.
    Stripe,
    /// `X-Hub-Signature-256: sha256=<hex>`.
    Github,
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Scheme::StandardWebhooks => "standard-webhooks",
            Scheme::Stripe => "stripe",
            Scheme::Github => "github",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request has no `{0}` header")]
    Missing(&'static str),
    #[error("the `{0}` header is malformed")]
    Malformed(&'static str),
    #[error("the signature's timestamp is more than {TOLERANCE_SECS} s from now")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
    #[error("the secret cannot be used for this scheme: {0}")]
    BadSecret(&'static str),
}

/// What a verified call carries that the engine keeps: the sender's message id, which a
/// replay would repeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub message_id: Option<String>,
}

/// A request to check: headers (names compared case-insensitively), the raw body, and
/// the engine's clock.
pub struct Signed<'a> {
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    pub now_secs: u64,
}

impl Signed<'_> {
    fn header(&self, name: &'static str) -> Result<&str, SignatureError> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim())
            .ok_or(SignatureError::Missing(name))
    }

    fn check_timestamp(&self, timestamp: u64) -> Result<(), SignatureError> {
        if self.now_secs.abs_diff(timestamp) > TOLERANCE_SECS {
            return Err(SignatureError::Stale);
        }
        Ok(())
    }
}

pub fn verify(scheme: Scheme, secret: &str, signed: &Signed) -> Result<Verified, SignatureError> {
    match scheme {
        Scheme::StandardWebhooks => standard_webhooks(secret, signed),
        Scheme::Stripe => stripe(secret, signed),
        Scheme::Github => github(secret, signed),
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    for part in parts {
        mac.update(part);
    }
    mac
}

/// Whether any of `candidates` is the MAC of `parts` under `key`.
fn any_matches(key: &[u8], parts: &[&[u8]], candidates: impl IntoIterator<Item = Vec<u8>>) -> bool {
    let expected = mac(key, parts);
    candidates.into_iter().any(|candidate| expected.clone().verify_slice(&candidate).is_ok())
}

/// <https://www.standardwebhooks.com>: the secret is `whsec_` and base64 key bytes; the
/// signed content is `{id}.{timestamp}.{body}`; several `v1,` signatures may be sent
/// (key rotation), space-separated.
fn standard_webhooks(secret: &str, signed: &Signed) -> Result<Verified, SignatureError> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| SignatureError::BadSecret("a Standard Webhooks secret is `whsec_` and base64"))?;
    let id = signed.header("webhook-id")?;
    let timestamp = signed.header("webhook-timestamp")?;
    let seconds = timestamp.parse().map_err(|_| SignatureError::Malformed("webhook-timestamp"))?;
    signed.check_timestamp(seconds)?;
    let signatures = signed.header("webhook-signature")?;
    let candidates = signatures
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|signature| STANDARD.decode(signature).ok());
    let content: [&[u8]; 5] = [id.as_bytes(), b".", timestamp.as_bytes(), b".", signed.body];
    if !any_matches(&key, &content, candidates) {
        return Err(SignatureError::Mismatch);
    }
    Ok(Verified { message_id: Some(id.to_string()) })
}

/// Stripe: `t=<unix>,v1=<hex>` over `{t}.{body}`, keyed by the secret's text.
fn stripe(secret: &str, signed: &Signed) -> Result<Verified, SignatureError> {
    let header = signed.header("stripe-signature")?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for item in header.split(',') {
        match item.trim().split_once('=') {
            Some(("t", value)) => timestamp = Some(value),
            Some(("v1", value)) => candidates.extend(hex::decode(value).ok()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed("stripe-signature"))?;
    signed.check_timestamp(timestamp.parse().map_err(|_| SignatureError::Malformed("stripe-signature"))?)?;
    let payload: [&[u8]; 3] = [timestamp.as_bytes(), b".", signed.body];
    if !any_matches(secret.as_bytes(), &payload, candidates) {
        return Err(SignatureError::Mismatch);
    }
    Ok(Verified { message_id: None })
}

/// GitHub: `sha256=<hex>` over the body, keyed by the secret's text.
fn github(secret: &str, signed: &Signed) -> Result<Verified, SignatureError> {
    let header = signed.header("x-hub-signature-256")?;
    let signature = header.strip_prefix("sha256=").ok_or(SignatureError::Malformed("x-hub-signature-256"))?;
    let signature = hex::decode(signature).map_err(|_| SignatureError::Malformed("x-hub-signature-256"))?;
    if !any_matches(secret.as_bytes(), &[signed.body], [signature]) {
        return Err(SignatureError::Mismatch);
    }
    let delivery = signed.header("x-github-delivery").ok().map(str::to_string);
    Ok(Verified { message_id: delivery })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn check(
        scheme: Scheme,
        secret: &str,
        pairs: &[(&str, &str)],
        body: &str,
        now_secs: u64,
    ) -> Result<Verified, SignatureError> {
        let headers = headers(pairs);
        verify(scheme, secret, &Signed { headers: &headers, body: body.as_bytes(), now_secs })
    }

    // Vectors computed independently, with Python's hmac module.
    const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SW_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    const SW_HEADERS: [(&str, &str); 2] =
        [("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"), ("webhook-timestamp", "1614265330")];
    const SW_BODY: &str = r#"{"test": 2432232314}"#;

    #[test]
    fn standard_webhooks_accepts_the_spec_example_and_rotated_keys() {
        let mut pairs = SW_HEADERS.to_vec();
        pairs.push(("Webhook-Signature", SW_SIGNATURE));
        let verified = check(Scheme::StandardWebhooks, SW_SECRET, &pairs, SW_BODY, 1614265330 + 10).expect("valid");
        assert_eq!(verified.message_id.as_deref(), Some("msg_p5jXN8AQM9LWM0D4loKWxJek"));

        let rotated = format!("v1,bm90IHRoaXMgb25l {SW_SIGNATURE}");
        let mut pairs = SW_HEADERS.to_vec();
        pairs.push(("webhook-signature", &rotated));
        assert!(check(Scheme::StandardWebhooks, SW_SECRET, &pairs, SW_BODY, 1614265330).is_ok());
    }

    #[test]
    fn standard_webhooks_rejects_tampering_staleness_and_missing_headers() {
        let mut pairs = SW_HEADERS.to_vec();
        pairs.push(("webhook-signature", SW_SIGNATURE));
        let tampered = r#"{"test": 2432232315}"#;
        assert_eq!(
            check(Scheme::StandardWebhooks, SW_SECRET, &pairs, tampered, 1614265330),
            Err(SignatureError::Mismatch)
        );
        let late = 1614265330 + TOLERANCE_SECS + 1;
        assert_eq!(check(Scheme::StandardWebhooks, SW_SECRET, &pairs, SW_BODY, late), Err(SignatureError::Stale));
        assert_eq!(
            check(Scheme::StandardWebhooks, SW_SECRET, &SW_HEADERS, SW_BODY, 1614265330),
            Err(SignatureError::Missing("webhook-signature"))
        );
    }

    #[test]
    fn stripe_signatures_verify_over_timestamp_and_body() {
        let body = r#"{"id":"evt_1"}"#;
        let signed = "c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925";
        // Rotation: an old signature may come first.
        let header = format!("t=1700000000,v1={},v1={signed}", "ab".repeat(32));
        let pairs = [("Stripe-Signature", header.as_str())];
        assert!(check(Scheme::Stripe, "whsec_test", &pairs, body, 1700000100).is_ok());
        assert_eq!(check(Scheme::Stripe, "whsec_other", &pairs, body, 1700000000), Err(SignatureError::Mismatch));
        assert_eq!(check(Scheme::Stripe, "whsec_test", &pairs, body, 1700000000 + 301), Err(SignatureError::Stale));
        assert_eq!(
            check(Scheme::Stripe, "whsec_test", &[("stripe-signature", "v1=00")], body, 0),
            Err(SignatureError::Malformed("stripe-signature"))
        );
    }

    #[test]
    fn github_signatures_verify_over_the_body() {
        // From GitHub's documentation: secret "It's a Secret to Everybody", body "Hello, World!".
        let signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let secret = "It's a Secret to Everybody";
        assert!(check(Scheme::Github, secret, &[("X-Hub-Signature-256", signature)], "Hello, World!", 0).is_ok());
        assert_eq!(
            check(Scheme::Github, secret, &[("X-Hub-Signature-256", signature)], "Hello, World?", 0),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(Scheme::Github, secret, &[("X-Hub-Signature-256", "md5=00")], "Hello, World!", 0),
            Err(SignatureError::Malformed("x-hub-signature-256"))
        );
    }
}
