//! What the OpenAPI documents both services serve at `/openapi.json` have in common.
//!
//! A document is a contract only when it says exactly what the server enforces, no more and no
//! less. Two things keep the two from drifting:
//!
//! - Every rule a validator checks against text is a [`Pattern`](crate::pattern::Pattern): one
//!   regular expression that is both the validator and the document's `pattern`.
//! - [`finish`] adds, from code, what every operation of a service has in common, so no handler
//!   can forget it: the `X-Request-Id` header both ways, the service's own response headers, and
//!   a problem+json body on every error status.
//!
//! Each service then adds its own operations (with `utoipa`) and builds the document once at
//! startup, for the settings it runs with: the upstream declares its token only when
//! `ACCESS_TOKEN` is set, because only then does it ask for one.

use serde_json::{Value, json};

use crate::health::Health;
use crate::problem::{self, Problem};
use crate::request_id;

/// A header a service puts on every response.
pub struct ResponseHeader {
    pub name: &'static str,
    pub description: &'static str,
    pub schema: Value,
}

/// Completes a service's document: adds the operations every app serves (`/livez`, `/metrics`,
/// `/openapi.json`), the `X-Request-Id` request header to every operation, the `X-Request-Id`
/// response header and the service's `headers` to every response, and a problem+json body to
/// every 4xx/5xx response that declares none.
pub fn finish(document: utoipa::openapi::OpenApi, headers: &[ResponseHeader]) -> Value {
    let mut document = serde_json::to_value(document).expect("an OpenAPI document serializes");
    let paths = document["paths"]
        .as_object_mut()
        .expect("a document has paths");
    for (path, item) in common_paths() {
        paths.insert(path.to_owned(), item);
    }
    let request_id = request_id_header();
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for operation in item.values_mut().filter_map(Value::as_object_mut) {
            let parameters = operation
                .entry("parameters")
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .expect("parameters are a list");
            parameters.push(json!({
                "name": "X-Request-Id",
                "in": "header",
                "required": false,
                "description": "An id to follow this request by in both services' logs and in \
                    problem bodies. Kept when it matches the pattern; anything else is replaced \
                    by a new UUID, never refused.",
                "schema": {"type": "string"},
            }));
            let has_body = operation.contains_key("requestBody");
            let responses = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
                .expect("an operation has responses");
            if has_body {
                responses.entry("408").or_insert_with(|| {
                    json!({"description": format!(
                        "The request body did not arrive within {} s of its head",
                        crate::request_body::REQUEST_BODY_TIMEOUT.as_secs()
                    )})
                });
            }
            for (status, response) in responses.iter_mut() {
                let status: u16 = status.parse().expect("responses are listed by status");
                complete_response(response, status, &request_id, headers);
            }
        }
    }
    let declared = document["components"]
        .as_object_mut()
        .expect("a document has components")
        .entry("headers")
        .or_insert_with(|| json!({}));
    for header in std::iter::once(&request_id).chain(headers) {
        declared[header.name] =
            json!({"description": header.description, "required": true, "schema": header.schema});
    }
    let schemas = document["components"]["schemas"]
        .as_object_mut()
        .expect("a document has schemas");
    for (name, schema) in [
        ("Problem", <Problem as utoipa::PartialSchema>::schema()),
        ("Health", <Health as utoipa::PartialSchema>::schema()),
    ] {
        schemas.insert(
            name.to_owned(),
            serde_json::to_value(schema).expect("a schema serializes"),
        );
    }
    document
}

/// Writes each bound into the document's text: `{NAME}` (upper case, as in
/// `"Up to {MAX_INCREMENTS} increments"`) becomes the value given for `NAME`. A handler's
/// description is a literal in an attribute, where a constant cannot go; so it names the bound,
/// and the bound's value comes from its constant here. [`unstated_bounds`] finds any left.
pub fn state_bounds(document: &mut Value, bounds: &[(&str, String)]) {
    match document {
        Value::String(text) => {
            for (name, value) in bounds {
                *text = text.replace(&format!("{{{name}}}"), value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| state_bounds(item, bounds)),
        Value::Object(members) => members
            .values_mut()
            .for_each(|member| state_bounds(member, bounds)),
        _ => {}
    }
}

/// The `{NAME}` placeholders that no bound filled; the services' tests require none.
pub fn unstated_bounds(document: &Value) -> Vec<String> {
    let placeholder = regex::Regex::new(r"\{[A-Z][A-Z0-9_]*\}").expect("a valid expression");
    let mut found = Vec::new();
    let mut texts = vec![document];
    while let Some(value) = texts.pop() {
        match value {
            Value::String(text) => found.extend(
                placeholder
                    .find_iter(text)
                    .map(|name| name.as_str().to_owned()),
            ),
            Value::Array(items) => texts.extend(items),
            Value::Object(members) => texts.extend(members.values()),
            _ => {}
        }
    }
    found
}

/// Declares that a `status` answer of operation `from` gives what operation `to` needs:
/// `parameters` maps `to`'s parameter names to runtime expressions such as
/// `$response.body#/code` or `$request.path.key`. Clients and stateful fuzzers follow links.
pub fn link(document: &mut Value, from: &str, status: u16, to: &str, parameters: Value) {
    let operation = document["paths"]
        .as_object_mut()
        .expect("a document has paths")
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .find(|operation| operation["operationId"] == from)
        .unwrap_or_else(|| panic!("no operation {from} to link from"));
    let response = &mut operation["responses"][status.to_string()];
    assert!(response.is_object(), "{from} declares no {status} answer");
    response["links"][to] = json!({"operationId": to, "parameters": parameters});
}

fn request_id_header() -> ResponseHeader {
    ResponseHeader {
        name: "X-Request-Id",
        description: "The request's id: the client's own when it was sane, otherwise a new UUID",
        schema: json!({"type": "string", "pattern": request_id::PATTERN.source()}),
    }
}

fn complete_response(
    response: &mut Value,
    status: u16,
    request_id: &ResponseHeader,
    headers: &[ResponseHeader],
) {
    let response = response.as_object_mut().expect("a response is an object");
    let declared = response
        .entry("headers")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("headers are a map");
    for header in std::iter::once(request_id).chain(headers) {
        declared.insert(
            header.name.to_owned(),
            json!({"$ref": format!("#/components/headers/{}", header.name)}),
        );
    }
    if status >= 400 && !response.contains_key("content") {
        response.insert(
            "content".to_owned(),
            json!({problem::CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}),
        );
    }
}

/// The operations every app serves (`/livez`, `/metrics`, `/openapi.json`).
fn common_paths() -> [(&'static str, Value); 3] {
    [
        (
            "/livez",
            json!({"get": {
                "tags": ["health"],
                "summary": "The process is up (never touches a dependency)",
                "operationId": "livez",
                "responses": {"200": {"description": "Alive", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Health"}}}}},
            }}),
        ),
        (
            "/metrics",
            json!({"get": {
                "tags": ["health"],
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "responses": {
                    "200": {"description": "The text exposition format", "content": {
                        prometheus::TEXT_FORMAT: {"schema": {"type": "string"}}}},
                    "500": {"description": "The metrics could not be rendered"},
                },
            }}),
        ),
        (
            "/openapi.json",
            json!({"get": {
                "tags": ["health"],
                "summary": "This document",
                "operationId": "openapi",
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {
                    "application/json": {"schema": {"type": "object"}}}}},
            }}),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_response_gets_the_request_id_and_errors_a_problem_body() {
        #[derive(utoipa::OpenApi)]
        #[openapi(paths(probe))]
        struct Doc;
        #[utoipa::path(get, path = "/probe", responses(
            (status = 200, description = "ok", body = crate::health::Health),
            (status = 503, description = "not ok")))]
        #[allow(dead_code)]
        async fn probe() {}

        let instance = ResponseHeader {
            name: "X-Instance",
            description: "which",
            schema: json!({"type": "string"}),
        };
        let document = finish(<Doc as utoipa::OpenApi>::openapi(), &[instance]);
        let responses = &document["paths"]["/probe"]["get"]["responses"];
        assert_eq!(
            responses["503"]["content"][problem::CONTENT_TYPE]["schema"]["$ref"],
            "#/components/schemas/Problem"
        );
        assert!(responses["200"]["content"]["application/json"].is_object());
        assert_eq!(
            responses["200"]["headers"]["X-Request-Id"]["$ref"],
            "#/components/headers/X-Request-Id"
        );
        assert_eq!(
            responses["200"]["headers"]["X-Instance"]["$ref"],
            "#/components/headers/X-Instance"
        );
        assert_eq!(
            responses["503"]["headers"]["X-Instance"]["$ref"],
            "#/components/headers/X-Instance"
        );
        let headers = &document["components"]["headers"];
        assert_eq!(headers["X-Request-Id"]["required"], true);
        assert_eq!(headers["X-Instance"]["required"], true);
        let parameters = document["paths"]["/probe"]["get"]["parameters"]
            .as_array()
            .unwrap();
        assert!(parameters.iter().any(|p| p["name"] == "X-Request-Id"));
        assert!(document["paths"]["/livez"]["get"].is_object());
        assert!(document["components"]["schemas"]["Problem"].is_object());
    }

    #[test]
    fn a_link_names_the_operation_and_its_parameters() {
        let mut document = json!({"paths": {"/a": {"post": {
            "operationId": "make", "responses": {"201": {"description": "made"}}}}}});
        link(
            &mut document,
            "make",
            201,
            "show",
            json!({"id": "$response.body#/id"}),
        );
        assert_eq!(
            document["paths"]["/a"]["post"]["responses"]["201"]["links"]["show"],
            json!({"operationId": "show", "parameters": {"id": "$response.body#/id"}})
        );
    }
}
