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

use crate::clicks::Clicks;
use crate::upstream::Upstream;

/// What every handler shares.
pub struct State {
    pub upstream: Arc<Upstream>,
    pub clicks: Arc<Clicks>,
    pub public_url: Url,
    pub lifecycle: Lifecycle,
}

/// Registers every route; `/{code}` comes last so fixed paths win.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/readyz", web::get().to(status::readyz))
        .route("/api/status", web::get().to(status::status))
        .route("/api/links", web::post().to(links::create))
        .route("/api/links/{code}", web::get().to(links::show))
        .route("/{code}", web::get().to(links::follow));
}
