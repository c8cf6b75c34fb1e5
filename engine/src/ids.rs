//! Ids and names, each a type validated in one place: what reaches the engine from a URL,
//! an API body or a guest is parsed here once, and is trusted as its type after.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadName(pub String);

/// Declares a validated name type: a `String` that passed `$check`, serialised as that
/// string.
macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn parse(text: &str) -> Result<$name, BadName> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(text).map(|()| $name(text.to_string())).map_err(BadName)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                $name::parse(&text).map_err(serde::de::Error::custom)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
    };
}

/// `len` characters at most, each one `legal` says is.
fn chars(text: &str, what: &str, max: usize, allowed: &str, legal: impl Fn(char) -> bool) -> Result<(), String> {
    if text.is_empty() || text.len() > max || !text.chars().all(legal) {
        return Err(format!("{what} `{text}` must be 1 to {max} characters of {allowed}"));
    }
    Ok(())
}

name_type!(
    /// A module's name: in URLs (`/v1/modules/{name}`, `/t/{module}/...`) and store keys.
    ModuleName,
    |text| chars(text, "module name", 64, "a-z 0-9 - _", |c| c.is_ascii_lowercase()
        || c.is_ascii_digit()
        || "-_".contains(c))
);

name_type!(
    /// A named trigger's name: in URLs and in store keys, which a zero byte separates.
    TriggerName,
    |text| chars(text, "trigger name", 100, "A-Z a-z 0-9 - _ .", |c| c.is_ascii_alphanumeric() || "-_.".contains(c))
);

name_type!(
    /// An API key's or a secret's name: in admin URLs, webhook options and logs.
    KeyName,
    |text| chars(text, "name", 64, "A-Z a-z 0-9 - _ .", |c| c.is_ascii_alphanumeric() || "-_.".contains(c))
);

name_type!(
    /// A webhook's token: in URL paths unescaped, so unreserved characters and `:` only.
    Token,
    |text| chars(text, "token", 256, "A-Z a-z 0-9 - . _ ~ :", |c| c.is_ascii_alphanumeric() || "-._~:".contains(c))
);

name_type!(
    /// A start trigger's URL suffix: `/t/{module}/{suffix}`.
    Suffix,
    |text| {
        chars(text, "URL suffix", 200, "letters, digits, `-`, `_`, `.` or `/` (no spaces; use `-` or `_`)", |c| {
            c.is_ascii_alphanumeric() || "-_./".contains(c)
        })?;
        if text.starts_with('/') {
            return Err(format!("the URL suffix `{text}` may not start with `/`"));
        }
        Ok(())
    }
);

/// A run's id: a UUID (v7, so that ids sort by creation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(uuid::Uuid);

impl RunId {
    pub fn new() -> RunId {
        RunId(uuid::Uuid::now_v7())
    }

    pub fn parse(text: &str) -> Result<RunId, BadName> {
        uuid::Uuid::parse_str(text).map(RunId).map_err(|_| BadName(format!("`{text}` is not a run id")))
    }

    pub fn from_bytes(bytes: [u8; 16]) -> RunId {
        RunId(uuid::Uuid::from_bytes(bytes))
    }

    /// Its 16 bytes: the key prefix of everything the run owns.
    pub fn bytes(&self) -> [u8; 16] {
        *self.0.as_bytes()
    }
}

impl Default for RunId {
    fn default() -> Self {
        RunId::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for RunId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RunId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        RunId::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A webhook of a run, `wh-N`: its N-th, from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WebhookId(pub u32);

impl WebhookId {
    pub fn parse(text: &str) -> Result<WebhookId, BadName> {
        let number = text.strip_prefix("wh-").and_then(|n| n.parse().ok()).filter(|n| *n > 0);
        number.map(WebhookId).ok_or_else(|| BadName(format!("`{text}` is not a webhook id (`wh-N`)")))
    }
}

impl fmt::Display for WebhookId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wh-{}", self.0)
    }
}

impl Serialize for WebhookId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WebhookId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        WebhookId::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_once_and_read_back_as_they_were_written() {
        assert!(ModuleName::parse("order-payment_2").is_ok());
        for bad in ["", "Orders", "a b", "a/b", &"x".repeat(65)] {
            assert!(ModuleName::parse(bad).is_err(), "{bad}");
        }
        assert!(TriggerName::parse("payment-confirmed.v2").is_ok());
        assert!(TriggerName::parse("a\0b").is_err() && TriggerName::parse("a/b").is_err());
        assert!(Token::parse("upload:imp-1").is_ok() && Token::parse("a?b").is_err());
        assert!(Suffix::parse("orders/new").is_ok());
        assert!(Suffix::parse("/orders").is_err() && Suffix::parse("new orders").is_err());
        assert!(KeyName::parse("psp.v1").is_ok() && KeyName::parse("has space").is_err());
        let name: TriggerName = serde_json::from_str("\"paid\"").expect("a name");
        assert_eq!(serde_json::to_string(&name).expect("json"), "\"paid\"");
        assert!(serde_json::from_str::<TriggerName>("\"a b\"").is_err(), "a stored name is checked too");
    }

    #[test]
    fn run_and_webhook_ids_round_trip() {
        let run = RunId::new();
        assert_eq!(RunId::parse(&run.to_string()), Ok(run));
        assert_eq!(RunId::from_bytes(run.bytes()), run);
        assert!(RunId::parse("not-a-uuid").is_err());
        assert_eq!(WebhookId::parse("wh-12"), Ok(WebhookId(12)));
        assert_eq!(WebhookId(3).to_string(), "wh-3");
        for bad in ["wh-0", "wh-", "12", "wh-x"] {
            assert!(WebhookId::parse(bad).is_err(), "{bad}");
        }
    }
}
