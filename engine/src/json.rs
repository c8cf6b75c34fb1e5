//! JSON from outside callers. Nesting is capped well below the depth the store reads back,
//! which wraps what arrived in levels of its own: a deep body is a clear 400 at the door,
//! never a record that cannot be read.
//!
//! What callers' bodies hold in memory, as read and as parsed, counts against one budget
//! for the whole server (`BodyBudget`) until their calls are written where they go:
//! parsed JSON can take tens of times its text (`[0,0,...]`: a 32-byte slot a value, and
//! an array's spare capacity, for 2 bytes of text; `[[0],[0],...]` more).

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How deep a body's arrays and objects may nest.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("the body is not valid JSON: {0}")]
    Invalid(String),
    #[error("the body nests arrays and objects more than {MAX_DEPTH} levels deep")]
    TooDeep,
    #[error("the server holds too many request bodies; retry later")]
    BudgetFull,
    #[error("the body takes {0} bytes in memory, more than the server holds for all bodies")]
    OverBudget(usize),
}

/// The bytes all calls' bodies may hold at once (`--max-body-buffer-mib`).
#[derive(Debug, Clone)]
pub struct BodyBudget {
    permits: Arc<Semaphore>,
    bytes: usize,
}

impl BodyBudget {
    pub fn new(bytes: usize) -> BodyBudget {
        BodyBudget { permits: Arc::new(Semaphore::new(bytes)), bytes }
    }

    /// A charge of nothing yet, to grow as a body arrives and is parsed.
    pub fn charge(&self) -> Charge {
        Charge { budget: self.clone(), held: None }
    }
}

/// What one call's body holds against the budget; given back when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: BodyBudget,
    held: Option<OwnedSemaphorePermit>,
}

impl Charge {
    /// Adds `bytes`, at once or not at all: a full budget is no reason to wait (the
    /// caller retries), and a body larger than the whole budget never fits.
    pub fn add(&mut self, bytes: usize) -> Result<(), JsonError> {
        let held = self.held.as_ref().map_or(0, OwnedSemaphorePermit::num_permits);
        if held.saturating_add(bytes) > self.budget.bytes {
            return Err(JsonError::OverBudget(held.saturating_add(bytes)));
        }
        let count = u32::try_from(bytes).map_err(|_| JsonError::OverBudget(bytes))?;
        let permit = self.budget.permits.clone().try_acquire_many_owned(count).map_err(|_| JsonError::BudgetFull)?;
        match &mut self.held {
            Some(held) => held.merge(permit),
            None => self.held = Some(permit),
        }
        Ok(())
    }

    /// Moves what is charged into a charge of its own, leaving this one empty.
    pub fn take(&mut self) -> Charge {
        Charge { budget: self.budget.clone(), held: self.held.take() }
    }
}

/// A JSON body parsed under `charge`, which then also holds what the parsed value takes.
pub fn parse_charged(bytes: &[u8], charge: &mut Charge) -> Result<Value, JsonError> {
    let value = parse_body(bytes)?;
    charge.add(parsed_bytes(&value))?;
    Ok(value)
}

/// About what a parsed value takes on the heap beyond its own slot: each array element
/// and object entry its slot (an object's tree nodes half as much again), each string
/// its bytes.
pub fn parsed_bytes(value: &Value) -> usize {
    const SLOT: usize = std::mem::size_of::<Value>();
    const ENTRY: usize = (std::mem::size_of::<String>() + SLOT) * 3 / 2;
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => s.capacity(),
        Value::Array(items) => items.capacity() * SLOT + items.iter().map(parsed_bytes).sum::<usize>(),
        Value::Object(map) => map.iter().map(|(k, v)| ENTRY + k.capacity() + parsed_bytes(v)).sum(),
    }
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
    fn a_parsed_body_is_charged_what_it_takes_and_gives_it_back_when_dropped() {
        let budget = BodyBudget::new(20 << 20);
        let zeros = format!("[{}0]", "0,".repeat(500_000));
        let mut charge = budget.charge();
        charge.add(zeros.len()).expect("the text fits");
        let value = parse_charged(zeros.as_bytes(), &mut charge).expect("fits");
        // 500,001 values of 32 bytes each, for 1 MB of text.
        assert!(parsed_bytes(&value) >= 500_001 * 32, "{}", parsed_bytes(&value));
        assert!(budget.permits.available_permits() < 4 << 20);
        // A second copy does not fit beside the first, and costs nothing for failing.
        let before = budget.permits.available_permits();
        assert!(matches!(parse_charged(zeros.as_bytes(), &mut budget.charge()), Err(JsonError::BudgetFull)));
        assert_eq!(budget.permits.available_permits(), before);
        let moved = charge.take();
        drop(charge);
        assert_eq!(budget.permits.available_permits(), before, "the moved charge still holds it");
        drop(moved);
        assert_eq!(budget.permits.available_permits(), 20 << 20);
        // More than the whole budget never fits: not a reason to retry.
        let small = BodyBudget::new(1 << 20);
        assert!(matches!(parse_charged(zeros.as_bytes(), &mut small.charge()), Err(JsonError::OverBudget(_))));
        let text = r#"{"name":"abc","tags":["x","y"]}"#;
        let value = parse_charged(text.as_bytes(), &mut small.charge()).expect("small");
        assert!(parsed_bytes(&value) >= 2 * 32 + 3 + 2, "{}", parsed_bytes(&value));
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let text = format!(r#"{{"s":"{}\"{}"}}"#, "[".repeat(200), "{".repeat(200));
        assert!(parse_body(text.as_bytes()).is_ok());
        assert_eq!(parse_body(b"  ").expect("empty"), Value::Null);
        assert!(matches!(parse_body(b"{\"a\": "), Err(JsonError::Invalid(_))));
    }
}
