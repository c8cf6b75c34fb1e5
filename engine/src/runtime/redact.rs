//! URL keys never reach the store, the API or the server's log. A run knows its webhooks'
//! keys (derived, see `auth::UrlKeys`); whatever it records that carries one (its URL in a
//! log line, a step's output, an answer) is written with a placeholder instead, and a
//! replay hands the run back the key in the placeholder's place.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::auth::{UrlKeys, url_key_placeholder};
use crate::store::records::Event;

const PLACEHOLDER_START: &str = "[url-key:";
/// How text that already held `[url-key:` is written, so that no one can forge a
/// placeholder into the run's records and have a replay or a retry fill in a key.
const ESCAPED_START: &str = "[url-key:literal:";

pub struct Redactor {
    run_id: String,
    url_keys: UrlKeys,
    /// The run's keys, with the placeholder each is written as.
    known: Vec<(String, String)>,
}

impl Redactor {
    pub fn new(run_id: String, url_keys: UrlKeys) -> Redactor {
        Redactor { run_id, url_keys, known: Vec::new() }
    }

    /// A redactor with a fixed secret, for tests.
    #[cfg(test)]
    pub fn for_tests(run_id: &str) -> Redactor {
        Redactor::new(run_id.to_string(), UrlKeys::from_secret(vec![7; 32]))
    }

    /// The key of the run's webhook `number`, remembered so that it is redacted from now on.
    pub fn key_for(&mut self, number: u32) -> String {
        let key = self.url_keys.key(&self.run_id, number);
        let placeholder = url_key_placeholder(number);
        if !self.known.iter().any(|(known, _)| *known == key) {
            self.known.push((key.clone(), placeholder));
        }
        key
    }

    /// `text` as it may be written down: every key of the run replaced by its placeholder,
    /// and text that looked like a placeholder escaped.
    pub fn text(&self, text: &str) -> String {
        let mut text = if text.contains(PLACEHOLDER_START) {
            text.replace(PLACEHOLDER_START, ESCAPED_START)
        } else {
            text.to_string()
        };
        for (key, placeholder) in &self.known {
            if text.contains(key.as_str()) {
                text = text.replace(key.as_str(), placeholder);
            }
        }
        text
    }

    /// An event as it may be written down. Those whose text comes back to the run (or to a
    /// caller's retry), and log lines, are always rewritten: forged placeholders are escaped.
    pub fn event(&self, event: Event) -> Event {
        if self.known.is_empty() && !comes_back(&event) && !matches!(event, Event::Log { .. }) {
            return event;
        }
        rewrite(event, &mut |s| self.text(s))
    }

    /// A recorded event as the run sees it again: placeholders replaced by keys. Only what
    /// the run itself produced or was handed by the engine is expanded.
    pub fn expand(&mut self, event: Event) -> Event {
        if !comes_back(&event) {
            return event;
        }
        self.expand_value(event)
    }

    /// Any record with placeholders replaced by the run's keys.
    pub fn expand_value<T: Serialize + DeserializeOwned>(&mut self, record: T) -> T {
        let mut expand = |s: &str| self.expand_text(s);
        rewrite(record, &mut expand)
    }

    fn expand_text(&mut self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find(PLACEHOLDER_START) {
            out.push_str(&rest[..start]);
            let after = &rest[start + PLACEHOLDER_START.len()..];
            if let Some(literal) = after.strip_prefix("literal:") {
                out.push_str(PLACEHOLDER_START);
                rest = literal;
                continue;
            }
            let number = after.strip_prefix("wh-").and_then(|n| Some((n.find(']')?, n)));
            match number.and_then(|(end, n)| Some((n[..end].parse::<u32>().ok()?, end))) {
                Some((number, end)) => {
                    out.push_str(&self.key_for(number));
                    rest = &after["wh-".len() + end + 1..];
                }
                None => {
                    out.push_str(PLACEHOLDER_START);
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// Whether an event's text comes back to the run on replay, or to a sender's retry.
fn comes_back(event: &Event) -> bool {
    matches!(
        event,
        Event::WebhookCreated { .. } | Event::StepAttempt { .. } | Event::HttpSent { .. } | Event::Responded { .. }
    )
}

/// Rewrites every string in a serde value (object keys too); a value that does not come
/// back is returned as it was.
fn rewrite<T: Serialize + DeserializeOwned>(record: T, change: &mut impl FnMut(&str) -> String) -> T {
    let Ok(mut value) = serde_json::to_value(&record) else { return record };
    if !has_strings_to_change(&value, change) {
        return record;
    }
    walk(&mut value, change);
    serde_json::from_value(value).unwrap_or(record)
}

fn has_strings_to_change(value: &Value, change: &mut impl FnMut(&str) -> String) -> bool {
    match value {
        Value::String(s) => change(s) != *s,
        Value::Array(items) => items.iter().any(|v| has_strings_to_change(v, change)),
        Value::Object(map) => map.iter().any(|(k, v)| change(k) != *k || has_strings_to_change(v, change)),
        _ => false,
    }
}

fn walk(value: &mut Value, change: &mut impl FnMut(&str) -> String) {
    match value {
        Value::String(s) => *s = change(s),
        Value::Array(items) => items.iter_mut().for_each(|v| walk(v, change)),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (key, mut item) in entries {
                walk(&mut item, change);
                map.insert(change(&key), item);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::WebhookInfo;

    fn redactor() -> Redactor {
        Redactor::for_tests("run-1")
    }

    #[test]
    fn a_key_is_written_as_a_placeholder_and_comes_back_on_replay() {
        let mut redactor = redactor();
        let key = redactor.key_for(2);
        let url = format!("http://h/hooks/t?key={key}");
        let logged = Event::Log { level: "info".into(), message: format!("send it to {url}") };
        let written = redactor.event(logged);
        let Event::Log { message, .. } = &written else { panic!("a log") };
        assert_eq!(message, "send it to http://h/hooks/t?key=[url-key:wh-2]");

        let created = Event::WebhookCreated {
            webhook: Ok(WebhookInfo {
                id: crate::ids::WebhookId(2),
                token: crate::ids::Token::parse("t").unwrap(),
                url: "http://h/hooks/t?key=[url-key:wh-2]".into(),
            }),
        };
        let mut replaying = Redactor::new("run-1".into(), redactor.url_keys.clone());
        let Event::WebhookCreated { webhook: Ok(info) } = replaying.expand(created) else { panic!("created") };
        assert_eq!(info.url, url, "the replay derives the same key");
        assert_eq!(replaying.text(&url), "http://h/hooks/t?key=[url-key:wh-2]");
    }

    #[test]
    fn text_without_placeholders_or_keys_is_unchanged() {
        let mut redactor = redactor();
        assert_eq!(redactor.expand_text("a [url-key:wh-x] b"), "a [url-key:wh-x] b");
        assert_eq!(redactor.text("nothing here"), "nothing here");
        let output = Event::Completed { output: serde_json::json!({ "n": 1 }) };
        assert_eq!(redactor.event(output.clone()), output);
        // Text that looks like a placeholder is written escaped, and comes back as it was.
        let forged = Event::StepAttempt {
            name: "s".into(),
            attempt: 1,
            outcome: Ok(serde_json::json!("[url-key:wh-1]")),
            fatal: false,
        };
        let written = redactor.event(forged.clone());
        assert_ne!(written, forged);
        assert_eq!(redactor.expand(written), forged, "no key is filled in for a forged placeholder");
    }
}
