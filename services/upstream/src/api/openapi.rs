//! The v1 contract as an OpenAPI 3.1 document, generated from the handlers and served at
//! `/openapi.json`. Any backend that honours it can be attached to the consumer.
//!
//! Every pattern and bound in it is the constant its validator uses ([`crate::key::PATTERN`],
//! [`super::ENTITY_TAGS`], [`super::counters::IDEMPOTENCY_KEY_PATTERN`], `MAX_LIMIT`, …), and
//! [`document`] is built for the settings the server runs with: the token is declared, with
//! its 401, exactly when `ACCESS_TOKEN` makes `/v1` ask for one.

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
    paths(kv::put, kv::get, kv::delete, kv::list, counters::increment, counters::increment_many, counters::get, info::info, info::readyz),
    components(schemas(crate::key::Key, super::EntityTags, super::Version, counters::IdempotencyKey)),
    tags((name = "kv", description = "JSON values under keys"),
        (name = "counters", description = "Atomic counters"),
        (name = "info", description = "Which backend this is"),
        (name = "health", description = "Probes"))
)]
pub struct ApiDoc;

/// The document this upstream serves: `with_token` when `ACCESS_TOKEN` is set.
pub fn document(with_token: bool) -> Value {
    let mut api = ApiDoc::openapi();
    if with_token {
        require_token(&mut api);
    }
    let instance = ResponseHeader {
        name: "X-Instance",
        description: "INSTANCE_NAME: which backend answered",
        schema: json!({"type": "string", "pattern": INSTANCE_PATTERN.source()}),
    };
    let mut document = shared::openapi::finish(api, &[instance]);
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

/// Declares the token on every `/v1` operation, as a Bearer token or as the Basic password,
/// with the 401 the guard answers without it.
fn require_token(api: &mut utoipa::openapi::OpenApi) {
    let components = api.components.get_or_insert_with(Default::default);
    for (name, scheme, description) in [
        ("bearer", HttpAuthScheme::Bearer, "ACCESS_TOKEN"),
        (
            "basic",
            HttpAuthScheme::Basic,
            "Any user, with ACCESS_TOKEN as the password",
        ),
    ] {
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
            operation.security = Some(vec![
                SecurityRequirement::new("bearer", no_scopes),
                SecurityRequirement::new("basic", no_scopes),
            ]);
            let unauthorized = ResponseBuilder::new()
                .description("Missing or wrong access token")
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
