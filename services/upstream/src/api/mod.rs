//! The HTTP face of the store: the v1 contract, health, metrics and the OpenAPI document.

mod auth;
mod counters;
mod error;
mod info;
mod kv;
pub mod openapi;

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header::{self, EntityTag};
use actix_web::middleware::from_fn;
use actix_web::{FromRequest, HttpMessage, HttpRequest, mime, web};
use serde::de::DeserializeOwned;
use shared::health::Lifecycle;
use shared::pattern::Pattern;
use utoipa::openapi::{RefOr, Schema};

pub use auth::Guard;
pub use error::ApiError;

use crate::key::Key;
use crate::storage::Store;

/// A handler's key (or counter name): its route's one path parameter, decoded (`%2F` is `/`)
/// and checked; 400 when it is not a key.
impl FromRequest for Key {
    type Error = ApiError;
    type Future = Ready<Result<Key, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let parsed = web::Path::<String>::from_request(req, payload)
            .into_inner()
            .map_err(|error| ApiError::BadRequest(format!("invalid path: {error}")))
            .and_then(|path| Ok(Key::parse(&path)?));
        ready(parsed)
    }
}

/// What every handler shares.
pub struct State {
    pub store: Store,
    pub lifecycle: Lifecycle,
    pub instance: String,
}

/// Registers every route of the upstream. Each path is one resource, so a method it does not
/// serve answers 405 with `Allow`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/readyz").get(info::readyz))
        .service(
            web::scope("/v1")
                .wrap(from_fn(auth::require_credentials))
                .service(web::resource("/info").get(info::info))
                .service(web::resource("/kv").get(kv::list))
                .service(
                    web::resource("/kv:batchGet")
                        .app_data(shared::problem::payload_config(kv::MAX_BATCH_READ_BYTES))
                        .post(kv::get_many),
                )
                .service(
                    web::resource("/kv/{key}*")
                        .get(kv::get)
                        .put(kv::put)
                        .delete(kv::delete),
                )
                .service(
                    web::resource("/counters")
                        .app_data(shared::problem::payload_config(counters::MAX_BATCH_BYTES))
                        .post(counters::increment_many),
                )
                .service(
                    web::resource("/counters/{name}*")
                        .get(counters::get)
                        .post(counters::increment),
                ),
        );
}

/// How an operation that uses storage can fail, besides its own answers. Only the document uses
/// it; [`ApiError`] builds the responses.
#[derive(utoipa::IntoResponses)]
#[expect(
    dead_code,
    reason = "describes responses for the OpenAPI document only"
)]
pub enum StorageFailures {
    /// Storage failed (the cause is logged with the request id)
    #[response(status = 500)]
    Failed,
    /// Shutting down (storage is closed), or a write found WRITE_QUEUE_LIMIT writes already
    /// waiting for storage: then `Retry-After` says when to try again
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait before trying the write again")))]
    Unavailable,
}

/// The `ETag` of a version.
fn etag(version: i64) -> EntityTag {
    EntityTag::new_strong(version.to_string())
}

/// What `If-Match` and `If-None-Match` accept: `*`, or a comma-separated list of strong
/// (`"v"`) or weak (`W/"v"`) entity tags of visible ASCII characters other than `"`. The list
/// may be empty (RFC 9110 writes both as `"*" / #entity-tag`).
pub static ENTITY_TAGS: Pattern =
    Pattern::new(r#"^(?:\*|(?:W/)?"[!#-~]*"(?:[ \t]*,[ \t]*(?:W/)?"[!#-~]*")*)?$"#);

/// The schema of an `If-Match` or `If-None-Match` value.
pub struct EntityTags;

impl utoipa::PartialSchema for EntityTags {
    fn schema() -> RefOr<Schema> {
        ENTITY_TAGS.string().into()
    }
}

impl utoipa::ToSchema for EntityTags {}

/// The schema of the `ETag` the upstream sends: a version, quoted.
pub struct Version;

impl utoipa::PartialSchema for Version {
    fn schema() -> RefOr<Schema> {
        VERSION.string().into()
    }
}

impl utoipa::ToSchema for Version {}

static VERSION: Pattern = Pattern::new(r#"^"[0-9]+"$"#);

/// Parses a JSON request body: 415 unless it is declared JSON, 400 when it is not JSON, 422
/// when it is JSON of the wrong shape.
fn parse_json<T: DeserializeOwned>(req: &HttpRequest, body: &[u8]) -> Result<T, ApiError> {
    let declared_json = req.mime_type().ok().flatten().is_some_and(|mime| {
        mime.type_() == mime::APPLICATION
            && (mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON))
    });
    if !declared_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    serde_json::from_slice(body).map_err(|error| {
        if error.is_data() {
            ApiError::Unprocessable(format!(
                "the body does not have the expected fields: {error}"
            ))
        } else {
            ApiError::BadRequest(format!("the body is not valid JSON: {error}"))
        }
    })
}

/// The value of a header that is meant to be text, or 400.
fn header_text<'a>(
    req: &'a HttpRequest,
    name: &header::HeaderName,
) -> Result<Option<&'a str>, ApiError> {
    req.headers()
        .get(name)
        .map(|value| {
            value.to_str().map_err(|_| {
                ApiError::BadRequest(format!("the {name} header is not visible ASCII"))
            })
        })
        .transpose()
}
