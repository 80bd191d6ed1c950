//! `/v1/kv`: JSON values under keys, with versions as `ETag`s and conditional requests.
//!
//! - `PUT` stores any JSON: 201 when the key is new, 200 when it replaced a value.
//!   `If-None-Match: *` creates only; `If-Match: "v"` replaces only that version; 412 otherwise.
//! - `GET` returns the value as stored; `If-None-Match` with its current version gives 304.
//! - `DELETE` gives 204, 404 when there is nothing, 412 when `If-Match` does not hold.
//! - `GET /v1/kv?prefix=&limit=&after=` pages through keys in byte order.

use actix_web::http::header::{self, EntityTag, Header, IfMatch, IfNoneMatch};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use shared::problem::Problem;

use super::{ApiError, State, etag, parse_json};
use crate::key::{self, Key};
use crate::storage::{Delete, Precondition, Put};

/// The most keys one listing returns.
pub const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;

/// The answer to a write.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Written {
    pub key: String,
    /// The new version; also the response's `ETag` (quoted).
    pub version: String,
}

/// One key in a listing.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Listed {
    pub key: String,
    pub version: String,
}

/// A page of keys.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Listing {
    pub keys: Vec<Listed>,
    /// Pass as `after` for the next page; `null` on the last page.
    pub next: Option<String>,
}

/// The listing's query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only keys starting with this.
    prefix: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<usize>,
    /// Only keys after this one (the previous page's `next`).
    after: Option<String>,
}

#[utoipa::path(put, path = "/v1/kv/{key}", tag = "kv",
    params(("key" = String, Path, description = "1–256 characters of A-Z a-z 0-9 . _ : / -"),
        ("If-Match" = Option<String>, Header, description = "Replace only this version (`*`: only if it exists)"),
        ("If-None-Match" = Option<String>, Header, description = "`*`: create only")),
    request_body(content = serde_json::Value, content_type = "application/json",
        description = "Any JSON value up to MAX_VALUE_BYTES"),
    responses(
        (status = 201, description = "Created", body = Written),
        (status = 200, description = "Replaced", body = Written),
        (status = 400, description = "Invalid key or JSON", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Precondition failed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Value too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not declared as JSON", body = Problem, content_type = "application/problem+json")),
    security((), ("token" = [])))]
pub async fn put(
    state: web::Data<State>,
    path: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let key = Key::parse(&path)?;
    parse_json::<serde::de::IgnoredAny>(&req, &body)?;
    let value = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::BadRequest("the body is not UTF-8".to_owned()))?;
    let precondition = write_precondition(&req)?;
    let written = |version| Written {
        key: key.to_string(),
        version: version_text(version),
    };
    match state.store.put(key.clone(), value, precondition).await? {
        Put::Created { version } => Ok(HttpResponse::Created()
            .insert_header(header::ETag(etag(version)))
            .insert_header((header::LOCATION, format!("/v1/kv/{key}")))
            .json(written(version))),
        Put::Replaced { version } => Ok(HttpResponse::Ok()
            .insert_header(header::ETag(etag(version)))
            .json(written(version))),
        Put::PreconditionFailed => Err(precondition_failed(&key)),
    }
}

#[utoipa::path(get, path = "/v1/kv/{key}", tag = "kv",
    params(("key" = String, Path),
        ("If-None-Match" = Option<String>, Header, description = "304 when the value still has this version")),
    responses(
        (status = 200, description = "The stored JSON, with its ETag", body = serde_json::Value),
        (status = 304, description = "Not modified"),
        (status = 404, description = "No such key", body = Problem, content_type = "application/problem+json")),
    security((), ("token" = [])))]
pub async fn get(
    state: web::Data<State>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let key = Key::parse(&path)?;
    let if_none_match = parse_condition::<IfNoneMatch>(&req, &header::IF_NONE_MATCH)?;
    let Some(entry) = state.store.get(key.clone()).await? else {
        return Err(ApiError::NotFound(key.to_string()));
    };
    let tag = etag(entry.version);
    let not_modified = match if_none_match {
        Some(IfNoneMatch::Any) => true,
        Some(IfNoneMatch::Items(tags)) => named(tags, &header::IF_NONE_MATCH)?
            .iter()
            .any(|t| t.weak_eq(&tag)),
        None => false,
    };
    if not_modified {
        return Ok(HttpResponse::NotModified()
            .insert_header(header::ETag(tag))
            .finish());
    }
    Ok(HttpResponse::Ok()
        .insert_header(header::ETag(tag))
        .content_type("application/json")
        .body(entry.value))
}

#[utoipa::path(delete, path = "/v1/kv/{key}", tag = "kv",
    params(("key" = String, Path),
        ("If-Match" = Option<String>, Header, description = "Delete only this version")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such key", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Precondition failed", body = Problem, content_type = "application/problem+json")),
    security((), ("token" = [])))]
pub async fn delete(
    state: web::Data<State>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let key = Key::parse(&path)?;
    let precondition = write_precondition(&req)?;
    match state.store.delete(key.clone(), precondition).await? {
        Delete::Deleted => Ok(HttpResponse::NoContent().finish()),
        Delete::NotFound => Err(ApiError::NotFound(key.to_string())),
        Delete::PreconditionFailed => Err(precondition_failed(&key)),
    }
}

#[utoipa::path(get, path = "/v1/kv", tag = "kv", params(ListQuery),
    responses(
        (status = 200, description = "Keys in byte order", body = Listing),
        (status = 400, description = "Invalid prefix or limit", body = Problem, content_type = "application/problem+json")),
    security((), ("token" = [])))]
pub async fn list(
    state: web::Data<State>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let ListQuery {
        prefix,
        limit,
        after,
    } = query.into_inner();
    let prefix = prefix.unwrap_or_default();
    if prefix.len() > key::MAX_LEN || !prefix.bytes().all(key::is_key_byte) {
        return Err(ApiError::BadRequest(format!(
            "invalid prefix {prefix:?}: expected up to 256 characters of A-Z a-z 0-9 . _ : / -"
        )));
    }
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "invalid limit {limit}: expected 1 to {MAX_LIMIT}"
        )));
    }
    let page = state.store.list(prefix, after, limit).await?;
    Ok(HttpResponse::Ok().json(Listing {
        keys: page
            .keys
            .into_iter()
            .map(|(key, version)| Listed {
                key,
                version: version_text(version),
            })
            .collect(),
        next: page.next,
    }))
}

fn version_text(version: i64) -> String {
    version.to_string()
}

fn precondition_failed(key: &Key) -> ApiError {
    ApiError::PreconditionFailed(format!(
        "the precondition on key {:?} does not hold: it was changed, created or deleted since",
        key.as_str()
    ))
}

/// A conditional header, parsed when present; 400 when it does not parse.
fn parse_condition<H: Header>(
    req: &HttpRequest,
    name: &header::HeaderName,
) -> Result<Option<H>, ApiError> {
    if !req.headers().contains_key(name) {
        return Ok(None);
    }
    H::parse(req)
        .map(Some)
        .map_err(|_| ApiError::BadRequest(format!("the {name} header is not a list of ETags or *")))
}

/// The condition a write is made under. `If-Match` compares strongly (RFC 9110 §13.1.1), so a
/// weak tag never matches; `If-None-Match` compares weakly.
fn write_precondition(req: &HttpRequest) -> Result<Precondition, ApiError> {
    if let Some(if_match) = parse_condition::<IfMatch>(req, &header::IF_MATCH)? {
        return Ok(match if_match {
            IfMatch::Any => Precondition::Present,
            IfMatch::Items(tags) => {
                Precondition::OneOf(versions(&named(tags, &header::IF_MATCH)?, false))
            }
        });
    }
    Ok(
        match parse_condition::<IfNoneMatch>(req, &header::IF_NONE_MATCH)? {
            Some(IfNoneMatch::Any) => Precondition::Absent,
            Some(IfNoneMatch::Items(tags)) => {
                Precondition::NoneOf(versions(&named(tags, &header::IF_NONE_MATCH)?, true))
            }
            None => Precondition::None,
        },
    )
}

/// `tags` if the header named at least one (actix's parser drops items it cannot read, so an
/// empty list means the header was malformed).
fn named(tags: Vec<EntityTag>, name: &header::HeaderName) -> Result<Vec<EntityTag>, ApiError> {
    if tags.is_empty() {
        Err(ApiError::BadRequest(format!(
            "the {name} header is not a list of ETags or *"
        )))
    } else {
        Ok(tags)
    }
}

/// The versions named by `tags`; tags that are not versions of ours can never match.
fn versions(tags: &[EntityTag], weak_allowed: bool) -> Vec<i64> {
    tags.iter()
        .filter(|tag| weak_allowed || !tag.weak)
        .filter_map(|tag| tag.tag().parse().ok())
        .collect()
}
