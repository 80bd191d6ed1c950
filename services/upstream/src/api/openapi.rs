//! The v1 contract as an OpenAPI 3.1 document, generated from the handlers and served at
//! `/openapi.json`. Any backend that honours it can be attached to the consumer.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{counters, info, kv};

#[derive(OpenApi)]
#[openapi(
    info(title = "portbound upstream", description = "A durable key–value store with counters: the backing service the consumer attaches to by URL."),
    paths(kv::put, kv::get, kv::delete, kv::list, counters::increment, counters::get, info::info, info::readyz),
    components(schemas(shared::problem::Problem)),
    modifiers(&AccessToken),
    tags((name = "kv", description = "JSON values under keys"),
        (name = "counters", description = "Atomic counters"),
        (name = "info", description = "Which backend this is"),
        (name = "health", description = "Probes"))
)]
pub struct ApiDoc;

/// Declares the `ACCESS_TOKEN` scheme the `/v1` operations refer to.
struct AccessToken;

impl Modify for AccessToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
