//! The consumer's HTTP API: links, redirects, status, probes and the OpenAPI document. The
//! handlers call the [`crate::shortener::Shortener`]; its failures answer as [`crate::http_error`] says.

mod links;
pub mod openapi;
mod status;

use actix_web::web;

use crate::State;
use crate::links::{MAX_CODE_LEN, MAX_URL_LEN};

/// The largest request body, in bytes: what the largest valid link request can take when every
/// character of its url ([`MAX_URL_LEN`] characters) is written as a JSON surrogate pair escape
/// (12 bytes) and every one of its code ([`MAX_CODE_LEN`]) as `\u00XX` (6 bytes), rounded up. Anything valid
/// fits, and nothing much larger can make the consumer buffer it.
pub const BODY_LIMIT: usize = 32 * 1024;

const _: () = assert!(MAX_URL_LEN * 12 + MAX_CODE_LEN * 6 + 64 <= BODY_LIMIT);

/// Registers every route; `/{code}` comes last so fixed paths win. Each path is one resource,
/// so a method it does not serve answers 405 with `Allow`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/readyz").get(status::readyz))
        .service(web::resource("/api/status").get(status::status))
        .service(web::resource("/api/links").post(links::create))
        .service(web::resource("/api/links/{code}").get(links::show))
        .service(web::resource("/{code}").get(links::follow));
}
