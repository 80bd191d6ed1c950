//! The upstream's v1 contract as a checker of requests: is what the consumer sends valid
//! against the OpenAPI document the upstream serves?
//!
//! The document is the one the upstream binary serves with a token set, built by the same
//! function. A request is valid when an operation of the document matches its method and
//! path, its path parameters, query parameters and declared headers satisfy their schemas, it
//! carries the credentials the operation's security asks for, and its body is of a declared
//! media type and satisfies that schema. Schemas are checked with the `jsonschema` crate after
//! their `$ref`s are inlined.

use std::sync::OnceLock;

use percent_encoding::percent_decode_str;
use serde_json::Value;

/// One request as it crossed the wire.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target: path and query.
    pub target: String,
    /// Header names in lower case, values as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The upstream's document as an upstream serves it: `with_token` when its `ACCESS_TOKEN` is
/// set (as for every upstream binary the tests start), without for an open one.
pub fn upstream_document(with_token: bool) -> &'static Value {
    static WITH_TOKEN: OnceLock<Value> = OnceLock::new();
    static OPEN: OnceLock<Value> = OnceLock::new();
    let cell = if with_token { &WITH_TOKEN } else { &OPEN };
    cell.get_or_init(|| upstream::api_document(with_token, false))
}

/// Why `request` is not valid against `document`, or `None` when it is.
pub fn violation(document: &Value, request: &Request) -> Option<String> {
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((&request.target, ""));
    let method = request.method.to_ascii_lowercase();
    let Some((operation, path_values)) = find(document, &method, path) else {
        return Some(format!(
            "no operation {} {path} in the contract",
            request.method
        ));
    };
    let parameters = operation["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let query: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    for (name, _) in &query {
        if !parameters
            .iter()
            .any(|p| p["in"] == "query" && p["name"] == name.as_str())
        {
            return Some(format!("query parameter {name:?} is not in the contract"));
        }
    }
    for parameter in &parameters {
        let name = parameter["name"].as_str().unwrap_or_default();
        let value = match parameter["in"].as_str() {
            Some("path") => path_values
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone()),
            Some("query") => query
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone()),
            Some("header") => request.header(name).map(str::to_owned),
            _ => None,
        };
        let Some(value) = value else {
            if parameter["required"] == true {
                return Some(format!("the required parameter {name} is missing"));
            }
            continue;
        };
        let schema = resolve(document, &parameter["schema"]);
        let value = typed(&schema, &value);
        if let Some(error) = invalid(&schema, &value) {
            return Some(format!("parameter {name} = {value}: {error}"));
        }
    }
    if let Some(error) = unauthorized(operation, request) {
        return Some(error);
    }
    body_violation(document, operation, request)
}

/// The operation for `method` and `path`, and the path parameters' decoded values.
fn find<'a>(
    document: &'a Value,
    method: &str,
    path: &str,
) -> Option<(&'a Value, Vec<(String, String)>)> {
    let segments: Vec<&str> = path.split('/').collect();
    document["paths"]
        .as_object()?
        .iter()
        .filter_map(|(template, item)| {
            let template: Vec<&str> = template.split('/').collect();
            if template.len() != segments.len() || !item[method].is_object() {
                return None;
            }
            let mut values = Vec::new();
            for (pattern, segment) in template.iter().zip(&segments) {
                match pattern.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    Some(name) if !segment.is_empty() => values.push((
                        name.to_owned(),
                        percent_decode_str(segment).decode_utf8_lossy().into_owned(),
                    )),
                    Some(_) => return None,
                    None if pattern == segment => {}
                    None => return None,
                }
            }
            Some((&item[method], values))
        })
        // A fixed path wins over a template (OpenAPI 3.1, path templating matching).
        .min_by_key(|(_, values)| values.len())
}

/// A parameter's text as the JSON value its schema's type reads it as.
fn typed(schema: &Value, text: &str) -> Value {
    match schema["type"].as_str() {
        Some("integer" | "number") => text
            .parse::<serde_json::Number>()
            .map_or_else(|_| Value::String(text.to_owned()), Value::Number),
        _ => Value::String(text.to_owned()),
    }
}

/// Whether the request carries credentials in a scheme the operation's security names.
fn unauthorized(operation: &Value, request: &Request) -> Option<String> {
    let requirements = operation["security"].as_array()?;
    let authorization = request.header("authorization").unwrap_or_default();
    let admitted = requirements.iter().any(|requirement| {
        requirement.as_object().is_some_and(|schemes| {
            schemes.keys().all(|scheme| {
                authorization
                    .split_once(' ')
                    .is_some_and(|(given, _)| given.eq_ignore_ascii_case(scheme))
            })
        })
    });
    (!admitted).then(|| "no credentials in a scheme the operation asks for".to_owned())
}

fn body_violation(document: &Value, operation: &Value, request: &Request) -> Option<String> {
    let declared = &operation["requestBody"];
    if request.body.is_empty() {
        return (declared["required"] == true).then(|| "the required body is missing".to_owned());
    }
    let Some(media_types) = declared["content"].as_object() else {
        return Some("a body where the contract takes none".to_owned());
    };
    let content_type = request.header("content-type").unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let Some(media) = media_types.get(essence) else {
        return Some(format!(
            "a body of type {content_type:?} the contract does not take"
        ));
    };
    let body: Value = match serde_json::from_slice(&request.body) {
        Ok(body) => body,
        Err(error) => return Some(format!("the body is not JSON: {error}")),
    };
    let schema = resolve(document, &media["schema"]);
    invalid(&schema, &body).map(|error| format!("body {body}: {error}"))
}

fn invalid(schema: &Value, value: &Value) -> Option<String> {
    let validator = jsonschema::validator_for(schema).expect("the contract's schemas compile");
    validator
        .validate(value)
        .err()
        .map(|error| error.to_string())
}

/// `schema` with every `#/…` reference replaced by what it names (siblings kept).
fn resolve(document: &Value, schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut resolved = serde_json::Map::new();
            if let Some(pointer) = map.get("$ref").and_then(Value::as_str) {
                let target = document
                    .pointer(pointer.trim_start_matches('#'))
                    .unwrap_or_else(|| panic!("the contract has no {pointer}"));
                if let Value::Object(target) = resolve(document, target) {
                    resolved.extend(target);
                }
            }
            for (key, value) in map.iter().filter(|(key, _)| *key != "$ref") {
                resolved.insert(key.clone(), resolve(document, value));
            }
            Value::Object(resolved)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| resolve(document, v)).collect()),
        other => other.clone(),
    }
}
