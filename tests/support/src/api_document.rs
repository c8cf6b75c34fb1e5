//! Checks a server's answers against its OpenAPI document: each `latch::access` log line
//! (route, method, status) must be an answer the document lists for that route.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// The answers in these logs that the binary's OpenAPI document does not list, described.
pub fn undocumented_answers(binary: &Path, logs: impl Iterator<Item = String>) -> Vec<String> {
    let document = document(binary);
    let mut undocumented: Vec<String> = logs
        .flat_map(|log| log.lines().filter_map(answer).collect::<Vec<_>>())
        .filter(|answer| !listed(document, answer))
        .map(|answer| answer.to_string())
        .collect();
    undocumented.sort();
    undocumented.dedup();
    undocumented
}

/// The document `latch openapi` prints, read once per test process.
fn document(binary: &Path) -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let output = Command::new(binary).arg("openapi").output().expect("latch openapi runs");
        assert!(output.status.success(), "latch openapi: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).expect("latch openapi prints JSON")
    })
}

/// Every answer a server's log records, as `method route -> status`.
pub fn logged_answers(log: &str) -> Vec<String> {
    log.lines().filter_map(answer).map(|answer| answer.to_string()).collect()
}

struct Answer {
    method: String,
    route: String,
    status: String,
    /// Written by the run itself: any status, the document's `default` answer.
    by_run: bool,
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Answer { method, route, status, by_run } = self;
        write!(f, "{method} {route} -> {status}{}", if *by_run { " (the run's answer)" } else { "" })
    }
}

/// The answer an access log line records, in the text or the JSON log format.
fn answer(line: &str) -> Option<Answer> {
    if !line.contains("latch::access") {
        return None;
    }
    let (method, route, status, by_run) = match serde_json::from_str::<Value>(line) {
        Ok(json) => {
            let fields = &json["fields"];
            let (method, route) = (fields["method"].as_str()?.to_string(), fields["route"].as_str()?.to_string());
            (method, route, fields["status"].to_string(), fields["by_run"] == true)
        }
        Err(_) => {
            (field(line, "method")?, field(line, "route")?, field(line, "status")?, field(line, "by_run")? == "true")
        }
    };
    // axum's catch-all segment is the trigger's path in the document.
    let route = route.replace("{*suffix}", "{trigger}");
    Some(Answer { method: method.to_lowercase(), route, status, by_run })
}

/// `name=value` in a text log line (values here hold no spaces).
fn field(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    Some(line[start..].split_whitespace().next()?.trim_matches('"').to_string())
}

fn listed(document: &Value, answer: &Answer) -> bool {
    // A method the route does not take: the document describes the route's methods.
    if answer.status == "405" && document["paths"].get(&answer.route).is_some() {
        return true;
    }
    let responses = &document["paths"][&answer.route][&answer.method]["responses"];
    responses.get(&answer.status).is_some() || (answer.by_run && responses.get("default").is_some())
}
