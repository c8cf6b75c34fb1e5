//! Who may call: the admin key, API keys, keys embedded in webhook URLs (only sha256
//! digests are stored; comparisons are constant-time), and HMAC signature schemes.

pub mod signatures;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{Store, StoreError};

const ADMIN_KEY_META: &str = "admin-key-sha256";

/// The sha256 of a key, hex: what is stored in its place.
pub fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new API key, shown to its owner once.
pub fn new_api_key() -> String {
    format!("latch_key_{}", crate::runtime::random_token())
}

/// Whether `presented` hashes to `stored_sha256_hex`, compared in constant time.
pub fn key_matches(presented: &str, stored_sha256_hex: &str) -> bool {
    let presented = Sha256::digest(presented.as_bytes());
    match hex::decode(stored_sha256_hex) {
        Ok(stored) => presented.as_slice().ct_eq(&stored).into(),
        Err(_) => false,
    }
}

/// The admin key's digest. A key given by the operator replaces the stored one; on a
/// first start without one, a key is made and returned so it can be shown once.
pub fn admin_key(store: &Store, given: Option<&str>) -> Result<(String, Option<String>), StoreError> {
    if let Some(key) = given {
        let digest = digest(key);
        store.set_meta(ADMIN_KEY_META, &digest)?;
        return Ok((digest, None));
    }
    if let Some(digest) = store.meta(ADMIN_KEY_META)? {
        return Ok((digest, None));
    }
    let key = format!("latch_admin_{}", crate::runtime::random_token());
    let digest = digest(&key);
    store.set_meta(ADMIN_KEY_META, &digest)?;
    Ok((digest, Some(key)))
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
