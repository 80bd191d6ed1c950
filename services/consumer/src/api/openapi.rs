//! The consumer's API as an OpenAPI 3.1 document, served at `/openapi.json`.

use utoipa::OpenApi;

use super::{links, status};

#[derive(OpenApi)]
#[openapi(
    info(title = "portbound consumer", description = "A link shortener whose state lives in the upstream attached by UPSTREAM_URL."),
    paths(links::create, links::follow, links::show, status::status, status::readyz),
    components(schemas(shared::problem::Problem)),
    tags((name = "links", description = "Short links"),
        (name = "status", description = "The attached upstream"),
        (name = "health", description = "Probes"))
)]
pub struct ApiDoc;
