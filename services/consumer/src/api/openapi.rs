//! The consumer's API as an OpenAPI 3.1 document, served at `/openapi.json`.
//!
//! Its patterns and bounds are the constants the validators use
//! ([`crate::links::CODE_PATTERN`], [`crate::links::TARGET_PATTERN`], `MAX_URL_LEN`,
//! [`crate::links::RESERVED`]).

use serde_json::{Value, json};
use utoipa::OpenApi;

use super::{links, status};

#[derive(OpenApi)]
#[openapi(
    info(title = "portbound consumer", description = "A link shortener whose state lives in the backend attached by UPSTREAM_URL."),
    paths(links::create, links::follow, links::show, status::status, status::readyz),
    components(schemas(crate::links::Code)),
    tags((name = "links", description = "Short links"),
        (name = "status", description = "The attached backend"),
        (name = "health", description = "Probes"))
)]
pub struct ApiDoc;

/// The document the consumer serves.
pub fn document() -> Value {
    let mut document = shared::openapi::finish(ApiDoc::openapi(), &[]);
    let body_limit_kib = (super::BODY_LIMIT / 1024).to_string();
    shared::openapi::state_bounds(&mut document, &[("BODY_LIMIT_KIB", body_limit_kib)]);
    let code = &mut document["components"]["schemas"]["NewLink"]["properties"]["code"];
    code["not"] = crate::links::reserved_schema();
    code["description"] = format!(
        "A custom code, other than the reserved words {} in any case; random when absent or null",
        crate::links::RESERVED.join(", ")
    )
    .into();
    for to in ["followLink", "showLink"] {
        shared::openapi::link(
            &mut document,
            "createLink",
            201,
            to,
            json!({"code": "$response.body#/code"}),
        );
    }
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bound_the_document_states_is_its_constant() {
        let document = document();
        assert_eq!(
            shared::openapi::unstated_bounds(&document),
            Vec::<String>::new()
        );
        let create = &document["paths"]["/api/links"]["post"]["responses"];
        let too_large = create["413"]["description"].as_str().unwrap();
        assert!(too_large.ends_with(&format!("{} KiB", super::super::BODY_LIMIT / 1024)));
        let url = &document["components"]["schemas"]["NewLink"]["properties"]["url"];
        assert_eq!(url["maxLength"], crate::links::MAX_URL_LEN);
        let text = url["description"].as_str().unwrap();
        assert!(text.contains(&format!("at most {} characters", crate::links::MAX_URL_LEN)));
    }
}
