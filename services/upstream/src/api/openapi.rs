//! The v1 contract as an OpenAPI 3.1 document, generated from the handlers and served at
//! `/openapi.json`. Any backend that honours it can be attached to the consumer.
//!
//! Every pattern and bound in it is the constant its validator uses ([`crate::key::PATTERN`],
//! [`super::ENTITY_TAGS`], [`super::counters::IDEMPOTENCY_KEY_PATTERN`], `MAX_LIMIT`, …), and
//! [`document`] is built for the settings the server runs with: the token and the client
//! certificate (`mutualTLS`) are declared, with the 401, exactly when `ACCESS_TOKEN` and
//! `TLS_CLIENT_CA_FILE` make `/v1` ask for them.

use serde_json::{Value, json};
use shared::openapi::ResponseHeader;
use utoipa::OpenApi;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ObjectBuilder, ResponseBuilder, Type};

use super::{counters, info, kv};
use crate::settings::INSTANCE_PATTERN;

#[derive(OpenApi)]
#[openapi(
    info(title = "portbound upstream", description = "A durable key–value store with counters: the backing service the consumer attaches to by URL."),
    paths(kv::put, kv::get, kv::delete, kv::list, kv::get_many, counters::increment, counters::increment_many, counters::get, info::info, info::readyz),
    components(schemas(crate::key::Key, super::EntityTags, super::Version, counters::IdempotencyKey)),
    tags((name = "kv", description = "JSON values under keys"),
        (name = "counters", description = "Atomic counters"),
        (name = "info", description = "Which backend this is"),
        (name = "health", description = "Probes"))
)]
pub struct ApiDoc;

/// The document this upstream serves: `with_token` when `ACCESS_TOKEN` is set,
/// `with_client_certificate` when `TLS_CLIENT_CA_FILE` is.
pub fn document(with_token: bool, with_client_certificate: bool) -> Value {
    let mut api = ApiDoc::openapi();
    if with_token || with_client_certificate {
        require_credentials(&mut api, with_token, with_client_certificate);
    }
    let instance = ResponseHeader {
        name: "X-Instance",
        description: "INSTANCE_NAME: which backend answered",
        schema: json!({"type": "string", "pattern": INSTANCE_PATTERN.source()}),
    };
    let mut document = shared::openapi::finish(api, &[instance]);
    shared::openapi::state_bounds(&mut document, &bounds());
    let key = json!({"key": "$request.path.key"});
    for (from, status) in [("putValue", 201), ("putValue", 200)] {
        for to in ["getValue", "deleteValue"] {
            shared::openapi::link(&mut document, from, status, to, key.clone());
        }
    }
    shared::openapi::link(
        &mut document,
        "incrementCounter",
        200,
        "getCounter",
        json!({"name": "$request.path.name"}),
    );
    document
}

/// The bounds the handlers' descriptions name, each from its constant.
fn bounds() -> [(&'static str, String); 6] {
    [
        ("MAX_BATCH_KEYS", kv::MAX_BATCH_KEYS.to_string()),
        (
            "MAX_BATCH_READ_KIB",
            (kv::MAX_BATCH_READ_BYTES / 1024).to_string(),
        ),
        ("MAX_INCREMENTS", counters::MAX_INCREMENTS.to_string()),
        (
            "MAX_BATCH_KIB",
            (counters::MAX_BATCH_BYTES / 1024).to_string(),
        ),
        (
            "IDEMPOTENCY_HOURS",
            (crate::storage::IDEMPOTENCY_TTL.as_secs() / 3600).to_string(),
        ),
        (
            "DEFAULT_MAX_VALUE_KIB",
            (crate::settings::DEFAULT_MAX_VALUE_BYTES / 1024).to_string(),
        ),
    ]
}

/// Declares on every `/v1` operation what it requires, with the 401 the guard answers without
/// it: the token (as a Bearer token or as the Basic password), a client certificate, or both.
fn require_credentials(api: &mut utoipa::openapi::OpenApi, token: bool, client_certificate: bool) {
    let components = api.components.get_or_insert_with(Default::default);
    let token_schemes = [
        ("bearer", HttpAuthScheme::Bearer, "ACCESS_TOKEN"),
        (
            "basic",
            HttpAuthScheme::Basic,
            "Any user, with ACCESS_TOKEN as the password",
        ),
    ];
    for (name, scheme, description) in token_schemes.into_iter().filter(|_| token) {
        components.add_security_scheme(
            name,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(scheme)
                    .description(Some(description))
                    .build(),
            ),
        );
    }
    let no_scopes: [&str; 0] = [];
    if client_certificate {
        components.add_security_scheme(
            "mutualTLS",
            SecurityScheme::MutualTls {
                description: Some(
                    "A client certificate signed by a CA in TLS_CLIENT_CA_FILE".to_owned(),
                ),
                extensions: None,
            },
        );
    }
    // Alternatives, each of them everything it names: a token either way, with the certificate
    // when both are required.
    let requirement = |scheme: Option<&str>| match (scheme, client_certificate) {
        (Some(scheme), false) => SecurityRequirement::new(scheme, no_scopes),
        (Some(scheme), true) => {
            SecurityRequirement::new(scheme, no_scopes).add("mutualTLS", no_scopes)
        }
        (None, _) => SecurityRequirement::new("mutualTLS", no_scopes),
    };
    let requirements: Vec<SecurityRequirement> = if token {
        vec![requirement(Some("bearer")), requirement(Some("basic"))]
    } else {
        vec![requirement(None)]
    };
    for (_, item) in api
        .paths
        .paths
        .iter_mut()
        .filter(|(path, _)| path.starts_with("/v1/"))
    {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            operation.security = Some(requirements.clone());
            let unauthorized = ResponseBuilder::new()
                .description("Missing or wrong access token, or no client certificate")
                .header(
                    "WWW-Authenticate",
                    HeaderBuilder::new()
                        .schema(ObjectBuilder::new().schema_type(Type::String))
                        .description(Some("The schemes the token is accepted in"))
                        .build(),
                );
            operation
                .responses
                .responses
                .insert("401".to_owned(), unauthorized.build().into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bound_the_document_states_is_its_constant() {
        for (with_token, with_certificate) in
            [(false, false), (true, false), (false, true), (true, true)]
        {
            let document = document(with_token, with_certificate);
            assert_eq!(
                shared::openapi::unstated_bounds(&document),
                Vec::<String>::new()
            );
            let schemas = &document["components"]["schemas"];
            let key = &schemas["Key"];
            assert_eq!(key["maxLength"], crate::key::MAX_LEN);
            let description = key["description"].as_str().unwrap();
            assert!(description.starts_with(&format!("1–{} ", crate::key::MAX_LEN)));
            let increments = &schemas["IncrementMany"]["properties"]["increments"];
            assert_eq!(increments["maxItems"], counters::MAX_INCREMENTS);
            let batch = &document["paths"]["/v1/counters"]["post"];
            let body = batch["requestBody"]["description"].as_str().unwrap();
            assert!(body.starts_with(&format!("Up to {} increments", counters::MAX_INCREMENTS)));
            assert!(body.contains(&format!("{} KiB", counters::MAX_BATCH_BYTES / 1024)));
            let hours = crate::storage::IDEMPOTENCY_TTL.as_secs() / 3600;
            let key = batch["parameters"][0]["description"].as_str().unwrap();
            assert!(
                key.starts_with(&format!("Remembered for {hours} hours")),
                "{key}"
            );
            let limit = &document["paths"]["/v1/kv"]["get"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|parameter| parameter["name"] == "limit")
                .unwrap()["schema"];
            assert_eq!(limit["maximum"], kv::MAX_LIMIT);
        }
        assert!(
            counters::IDEMPOTENCY_KEY_PATTERN
                .source()
                .ends_with(&format!("{{1,{}}}$", counters::MAX_IDEMPOTENCY_KEY_LEN))
        );
    }
}
