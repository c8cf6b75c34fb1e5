//! JSON from outside callers. Nesting is capped well below the depth the store reads back,
//! which wraps what arrived in levels of its own: a deep body is a clear 400 at the door,
//! never a record that cannot be read.

use serde_json::Value;

/// How deep a body's arrays and objects may nest.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("the body is not valid JSON: {0}")]
    Invalid(String),
    #[error("the body nests arrays and objects more than {MAX_DEPTH} levels deep")]
    TooDeep,
}

/// A JSON body; an empty one is `null`.
pub fn parse_body(bytes: &[u8]) -> Result<Value, JsonError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    if nests_deeper_than(bytes, MAX_DEPTH) {
        return Err(JsonError::TooDeep);
    }
    serde_json::from_slice(bytes).map_err(|e| JsonError::Invalid(e.to_string()))
}

/// Whether brackets outside strings nest deeper than `limit`: one pass, no allocation,
/// before anything is parsed.
fn nests_deeper_than(bytes: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in bytes {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn nesting_up_to_the_cap_parses_and_deeper_is_refused() {
        assert!(parse_body(nested(MAX_DEPTH).as_bytes()).is_ok());
        assert!(matches!(parse_body(nested(MAX_DEPTH + 1).as_bytes()), Err(JsonError::TooDeep)));
        assert!(matches!(parse_body(nested(127).as_bytes()), Err(JsonError::TooDeep)));
        let objects = format!("{}{}", r#"{"a":"#.repeat(MAX_DEPTH + 1), "}".repeat(MAX_DEPTH + 1));
        assert!(matches!(parse_body(objects.as_bytes()), Err(JsonError::TooDeep)));
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let text = format!(r#"{{"s":"{}\"{}"}}"#, "[".repeat(200), "{".repeat(200));
        assert!(parse_body(text.as_bytes()).is_ok());
        assert_eq!(parse_body(b"  ").expect("empty"), Value::Null);
        assert!(matches!(parse_body(b"{\"a\": "), Err(JsonError::Invalid(_))));
    }
}
