//! The consumer's HTTP API: links, redirects, status, probes and the OpenAPI document.

mod error;
mod links;
pub mod openapi;
mod status;

use std::sync::Arc;

use actix_web::web;
use shared::health::Lifecycle;
use url::Url;

pub use error::ApiError;
pub(crate) use links::{Link, shorten};
pub(crate) use status::{READINESS_PROBE, UpstreamStatus, report};

use crate::clicks::Clicks;
use crate::upstream::Upstream;

/// The largest request body, in bytes: what the largest valid link request can take when every
/// character of its 2048-character url is written as a JSON surrogate pair escape (12 bytes)
/// and every one of its 64-character code as `\u00XX` (6 bytes), rounded up. Anything valid
/// fits, and nothing much larger can make the consumer buffer it.
pub const BODY_LIMIT: usize = 32 * 1024;

const _: () = assert!(crate::links::MAX_URL_LEN * 12 + 64 * 6 + 64 <= BODY_LIMIT);

/// What every handler shares.
pub struct State {
    pub upstream: Arc<Upstream>,
    pub clicks: Arc<Clicks>,
    pub public_url: Url,
    pub lifecycle: Lifecycle,
}

/// Registers every route; `/{code}` comes last so fixed paths win. Each path is one resource,
/// so a method it does not serve answers 405 with `Allow`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/readyz").get(status::readyz))
        .service(web::resource("/api/status").get(status::status))
        .service(web::resource("/api/links").post(links::create))
        .service(web::resource("/api/links/{code}").get(links::show))
        .service(web::resource("/{code}").get(links::follow));
}
