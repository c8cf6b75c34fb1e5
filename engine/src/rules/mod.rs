//! What a call must satisfy before it reaches a run: a JSON Schema for its data (the
//! `jsonschema` crate; no remote `$ref`s are fetched) and a CEL condition over its method,
//! headers, query and body (the `cel` crate).

use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("the schema is not a valid JSON Schema: {0}")]
    BadSchema(String),
    #[error("the condition is not a valid CEL expression: {0}")]
    BadCondition(String),
}

/// Checks a schema when a webhook is made, so a bad one is refused at once.
pub fn check_schema(schema: &Value) -> Result<(), RuleError> {
    jsonschema::validator_for(schema).map(|_| ()).map_err(|e| RuleError::BadSchema(e.to_string()))
}

/// Every way `data` fails `schema`, as `path: reason` lines; empty when it matches.
pub fn schema_failures(schema: &Value, data: &Value) -> Result<Vec<String>, RuleError> {
    let validator = jsonschema::validator_for(schema).map_err(|e| RuleError::BadSchema(e.to_string()))?;
    Ok(validator
        .iter_errors(data)
        .map(|error| {
            let path = error.instance_path().to_string();
            format!("{}: {error}", if path.is_empty() { "/" } else { &path })
        })
        .collect())
}

/// Checks a condition when a webhook is made.
pub fn check_condition(expression: &str) -> Result<(), RuleError> {
    cel::Program::compile(expression).map(|_| ()).map_err(|e| RuleError::BadCondition(e.to_string()))
}

/// A call as a condition sees it: `method`, `headers` (lower-case names), `query`, `body`.
pub struct CallView<'a> {
    pub method: &'a str,
    pub headers: &'a [(String, String)],
    pub query: &'a [(String, String)],
    pub body: &'a Value,
}

fn as_map(pairs: &[(String, String)], lower_case: bool) -> Value {
    let map: Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| (if lower_case { k.to_ascii_lowercase() } else { k.clone() }, Value::String(v.clone())))
        .collect();
    Value::Object(map)
}

/// Whether the condition holds for the call. An expression that does not evaluate to
/// `true` (false, another type, or an error such as a missing field) does not hold.
pub fn condition_holds(expression: &str, call: &CallView) -> Result<bool, RuleError> {
    let program = cel::Program::compile(expression).map_err(|e| RuleError::BadCondition(e.to_string()))?;
    let mut context = cel::Context::default();
    let variables = [
        ("method", Value::String(call.method.to_string())),
        ("headers", as_map(call.headers, true)),
        ("query", as_map(call.query, false)),
        ("body", call.body.clone()),
    ];
    for (name, value) in variables {
        match cel::to_value(value) {
            Ok(value) => context.add_variable_from_value(name, value),
            Err(_) => return Ok(false),
        }
    }
    Ok(matches!(program.execute(&context), Ok(cel::Value::Bool(true))))
}

/// A JSON Schema that a sample value matches: its types, the properties it has (all
/// required), and for arrays the shape of their first item. A starting point for a
/// trigger's `expects`, learnt from a captured sample event.
pub fn infer_schema(value: &Value) -> Value {
    match value {
        Value::Null => serde_json::json!({ "type": "null" }),
        Value::Bool(_) => serde_json::json!({ "type": "boolean" }),
        Value::Number(n) if n.is_i64() || n.is_u64() => serde_json::json!({ "type": "integer" }),
        Value::Number(_) => serde_json::json!({ "type": "number" }),
        Value::String(_) => serde_json::json!({ "type": "string" }),
        Value::Array(items) => match items.first() {
            Some(first) => serde_json::json!({ "type": "array", "items": infer_schema(first) }),
            None => serde_json::json!({ "type": "array" }),
        },
        Value::Object(fields) => {
            let properties: Map<String, Value> = fields.iter().map(|(k, v)| (k.clone(), infer_schema(v))).collect();
            let required: Vec<&String> = fields.keys().collect();
            serde_json::json!({ "type": "object", "properties": properties, "required": required })
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn call<'a>(body: &'a Value, headers: &'a [(String, String)]) -> CallView<'a> {
        CallView { method: "POST", headers, query: &[], body }
    }

    #[test]
    fn conditions_see_the_body_headers_and_method() {
        let body = json!({ "status": "confirmed", "amount": 30 });
        let headers = vec![("X-Source".to_string(), "psp".to_string())];
        let holds = |expression: &str| condition_holds(expression, &call(&body, &headers)).expect("compiles");
        assert!(holds(r#"body.status == "confirmed" && body.amount > 10"#));
        assert!(holds(r#"headers["x-source"] == "psp" && method == "POST""#));
        assert!(!holds(r#"body.status == "processing""#));
        // A missing field does not hold; it is not an error for the caller.
        assert!(!holds("body.missing == 1"));
        assert!(!holds("body.amount"));
        assert!(check_condition("body.status ==").is_err());
    }

    #[test]
    fn an_inferred_schema_matches_its_sample_and_catches_another_shape() {
        let sample = json!({ "data": [{ "name": "shampoo", "price": 9.95 }], "count": 3, "paid": true, "note": null });
        let schema = infer_schema(&sample);
        assert!(check_schema(&schema).is_ok());
        assert!(schema_failures(&schema, &sample).expect("valid").is_empty());
        let other = json!({ "data": [{ "name": 1, "price": 9.95 }], "count": 3.5, "paid": true, "note": null });
        assert_eq!(schema_failures(&schema, &other).expect("valid").len(), 2);
        assert_eq!(schema["properties"]["data"]["items"]["properties"]["price"], json!({ "type": "number" }));
    }

    #[test]
    fn schema_failures_name_the_place_and_the_reason() {
        let schema =
            json!({ "type": "object", "required": ["order_id"], "properties": { "amount": { "type": "number" } } });
        assert!(check_schema(&schema).is_ok());
        assert!(schema_failures(&schema, &json!({ "order_id": "o-1", "amount": 3 })).expect("valid").is_empty());
        let failures = schema_failures(&schema, &json!({ "amount": "three" })).expect("valid schema");
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(failures.iter().any(|f| f.starts_with("/amount:")), "{failures:?}");
        assert!(check_schema(&json!({ "type": "no-such-type" })).is_err());
    }
}
