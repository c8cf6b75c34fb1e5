//! How records are stored: the same JSON in every backend.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Result;

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(value)?)
}

/// Reads a stored record without serde_json's nesting limit: a record wraps what arrived
/// in a few levels of its own, so a body accepted at ingress must still read back. The
/// depth stays bounded (and the stack safe) because every writer parsed what it stores
/// with the limit, and ingress caps nesting well below it.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    deserializer.disable_recursion_limit();
    let value = T::deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// The type of a stored event, read without decoding the rest of it.
pub fn event_type(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct EventType<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    deserializer.disable_recursion_limit();
    serde::Deserialize::deserialize(&mut deserializer).ok().map(|event: EventType| event.kind.into_owned())
}
