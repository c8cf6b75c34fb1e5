//! Who may call: the admin key, API keys, keys embedded in webhook URLs (only sha256
//! digests are stored; comparisons are constant-time), and HMAC signature schemes.

pub mod callers;
pub mod signatures;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{Registry, Store, StoreError};

/// 256 random bits, URL-safe: API keys, admin keys, webhook tokens.
pub fn random_token() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

const ADMIN_KEY_META: &str = "admin-key-sha256";

/// The sha256 of a key, hex: what is stored in its place.
pub fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new API key, shown to its owner once.
pub fn new_api_key() -> String {
    format!("latch_key_{}", random_token())
}

/// Whether `presented` hashes to `stored_sha256_hex`, compared in constant time.
pub fn key_matches(presented: &str, stored_sha256_hex: &str) -> bool {
    let presented = Sha256::digest(presented.as_bytes());
    match hex::decode(stored_sha256_hex) {
        Ok(stored) => presented.as_slice().ct_eq(&stored).into(),
        Err(_) => false,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminKeyError {
    #[error("the admin key is empty; give a key of at least one character, or none to have one made")]
    Empty,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The admin key's digest. A key given by the operator replaces the stored one; on a
/// first start without one, a key is made and returned so it can be shown once. An empty
/// key is refused: it would let anyone in who sends `Authorization: Bearer ` and nothing.
pub async fn admin_key(store: &Store, given: Option<&str>) -> Result<(String, Option<String>), AdminKeyError> {
    if let Some(key) = given {
        if key.trim().is_empty() {
            return Err(AdminKeyError::Empty);
        }
        let digest = digest(key);
        store.set_meta(ADMIN_KEY_META, &digest).await?;
        return Ok((digest, None));
    }
    if let Some(digest) = store.meta(ADMIN_KEY_META).await? {
        return Ok((digest, None));
    }
    let key = format!("latch_admin_{}", random_token());
    let digest = digest(&key);
    // Durable before anyone sees it.
    store.set_meta(ADMIN_KEY_META, &digest).await?;
    Ok((digest, Some(key)))
}

const URL_KEY_SECRET_META: &str = "url-key-secret";

/// Keys embedded in webhook URLs. A key is never stored: it is derived from the run, the
/// webhook's number and a secret of this data directory, so a replay hands the run the
/// same URL while the store, the log and the API hold only a placeholder and its sha256.
#[derive(Clone)]
pub struct UrlKeys {
    secret: Vec<u8>,
}

impl UrlKeys {
    /// The data directory's secret, made on first use.
    pub async fn open(store: &Store) -> Result<UrlKeys, StoreError> {
        let secret = match store.meta(URL_KEY_SECRET_META).await?.and_then(|hex| hex::decode(hex).ok()) {
            Some(secret) => secret,
            None => {
                let mut secret = vec![0u8; 32];
                rand::fill(secret.as_mut_slice());
                store.set_meta(URL_KEY_SECRET_META, &hex::encode(&secret)).await?;
                secret
            }
        };
        Ok(UrlKeys { secret })
    }

    /// Keys from a given secret (tests).
    pub fn from_secret(secret: Vec<u8>) -> UrlKeys {
        UrlKeys { secret }
    }

    /// The key of webhook `number` of run `run_id`.
    pub fn key(&self, run_id: &str, number: u32) -> String {
        use base64::Engine as _;
        use hmac::Mac;
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(format!("url-key\0{run_id}\0{number}").as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

/// What stands for webhook `number`'s URL key wherever the engine writes it down.
pub fn url_key_placeholder(number: u32) -> String {
    format!("[url-key:wh-{number}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_only_their_digest() {
        let digest = hex::encode(Sha256::digest(b"secret"));
        assert!(key_matches("secret", &digest));
        assert!(!key_matches("secreT", &digest));
        assert!(!key_matches("secret", "not hex"));
    }
}
