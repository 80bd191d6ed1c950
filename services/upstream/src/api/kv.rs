//! `/v1/kv`: JSON values under keys, with versions as `ETag`s and conditional requests.
//!
//! - `PUT` stores any JSON: 201 when the key is new, 200 when it replaced a value.
//!   `If-None-Match: *` creates only; `If-Match: "v"` replaces only that version; 412 otherwise.
//! - `GET` returns the value as stored; `If-None-Match` with its current version gives 304.
//! - `DELETE` gives 204, 404 when there is nothing, 412 when `If-Match` does not hold.
//! - `GET /v1/kv?prefix=&limit=&after=` pages through keys in byte order.
//! - `POST /v1/kv:batchGet` reads up to [`MAX_BATCH_KEYS`] keys in one request, each answered
//!   in the keys' order with its value and version, or as not found. A custom method on the
//!   collection (the `:` convention of Google's API guide), so its path can never be a key's:
//!   every key's path starts `/v1/kv/`.

use actix_web::http::header::{self, EntityTag, Header, IfMatch, IfNoneMatch};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use shared::json::Object;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{AdditionalProperties, SchemaType};
use utoipa::openapi::{ArrayBuilder, ObjectBuilder, OneOfBuilder, RefOr, Required, Schema, Type};

use super::{
    ApiError, ENTITY_TAGS, EntityTags, State, StorageFailures, Version, etag, header_text,
    parse_json,
};
use crate::key::{self, Key};
use crate::storage::{Delete, Precondition, Put, StoreError};

/// The most keys one listing returns.
pub const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;

/// The most keys one batch read takes.
pub const MAX_BATCH_KEYS: usize = 1000;

/// The largest batch read body, in bytes: room for [`MAX_BATCH_KEYS`] keys of the longest,
/// written out with spaces.
pub const MAX_BATCH_READ_BYTES: usize = 512 * 1024;

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
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Only keys starting with this.
    prefix: Option<String>,
    /// Page size, 1 to [`MAX_LIMIT`] (default [`DEFAULT_LIMIT`]).
    limit: Option<usize>,
    /// Only keys after this one (the previous page's `next`).
    after: Option<String>,
}

impl utoipa::IntoParams for ListQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let query = |name, description, schema: ObjectBuilder| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(schema))
                .build()
        };
        vec![
            query(
                "prefix",
                "Only keys starting with this",
                key::PREFIX_PATTERN.string().max_length(Some(key::MAX_LEN)),
            ),
            query(
                "limit",
                "Page size",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(MAX_LIMIT))
                    .default(Some(DEFAULT_LIMIT.into())),
            ),
            query(
                "after",
                "Only keys after this one, in byte order (the previous page's `next`)",
                ObjectBuilder::new().schema_type(Type::String),
            ),
        ]
    }
}

#[utoipa::path(put, path = "/v1/kv/{key}", operation_id = "putValue", tag = "kv",
    params(("key" = Key, Path),
        ("If-Match" = Option<EntityTags>, Header, nullable = false, description = "Replace only a value with one of these versions (`*`: only if there is a value). Compared strongly: a weak tag never matches"),
        ("If-None-Match" = Option<EntityTags>, Header, nullable = false, description = "`*`: create only; tags: only if the value's version is none of these")),
    request_body(content = serde_json::Value, content_type = "application/json",
        description = "Any JSON value of at most MAX_VALUE_BYTES ({DEFAULT_MAX_VALUE_KIB} KiB by default), in UTF-8"),
    responses(
        (status = 201, description = "Created", body = Written, headers(
            ("ETag" = Version, description = "The new version"),
            ("Location" = String, description = "`/v1/kv/{key}`"))),
        (status = 200, description = "Replaced", body = Written, headers(
            ("ETag" = Version, description = "The new version"))),
        (status = 400, description = "An invalid key, body, If-Match or If-None-Match"),
        (status = 412, description = "The precondition does not hold"),
        (status = 413, description = "The value is larger than MAX_VALUE_BYTES"),
        (status = 415, description = "The body is not declared as application/json"),
        (status = 507, description = "The disk is full; reads go on, and writes resume by themselves once there is space"),
        StorageFailures))]
pub async fn put(
    state: web::Data<State>,
    key: Key,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
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

#[utoipa::path(get, path = "/v1/kv/{key}", operation_id = "getValue", tag = "kv",
    params(("key" = Key, Path),
        ("If-None-Match" = Option<EntityTags>, Header, nullable = false, description = "304 when the value's version is one of these (compared weakly), or for `*`")),
    responses(
        (status = 200, description = "The stored JSON", body = serde_json::Value, headers(
            ("ETag" = Version, description = "The value's version"))),
        (status = 304, description = "Not modified", headers(
            ("ETag" = Version, description = "The value's version"))),
        (status = 400, description = "An invalid key or If-None-Match"),
        (status = 404, description = "No value at this key"),
        StorageFailures))]
pub async fn get(
    state: web::Data<State>,
    key: Key,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let if_none_match = parse_condition::<IfNoneMatch>(&req, &header::IF_NONE_MATCH)?;
    let Some(entry) = state.store.get(key.clone()).await? else {
        return Err(ApiError::NotFound(key.to_string()));
    };
    let tag = etag(entry.version);
    let not_modified = match if_none_match {
        Some(IfNoneMatch::Any) => true,
        Some(IfNoneMatch::Items(tags)) => tags.iter().any(|t| t.weak_eq(&tag)),
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

#[utoipa::path(delete, path = "/v1/kv/{key}", operation_id = "deleteValue", tag = "kv",
    params(("key" = Key, Path),
        ("If-Match" = Option<EntityTags>, Header, nullable = false, description = "Delete only a value with one of these versions (`*`: any value). Compared strongly"),
        ("If-None-Match" = Option<EntityTags>, Header, nullable = false, description = "Delete only if the value's version is none of these (`*`: never)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "An invalid key, If-Match or If-None-Match"),
        (status = 404, description = "No value at this key"),
        (status = 412, description = "The precondition does not hold"),
        (status = 507, description = "The disk is full; reads go on, and writes resume by themselves once there is space"),
        StorageFailures))]
pub async fn delete(
    state: web::Data<State>,
    key: Key,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let precondition = write_precondition(&req)?;
    match state.store.delete(key.clone(), precondition).await? {
        Delete::Deleted => Ok(HttpResponse::NoContent().finish()),
        Delete::NotFound => Err(ApiError::NotFound(key.to_string())),
        Delete::PreconditionFailed => Err(precondition_failed(&key)),
    }
}

#[utoipa::path(get, path = "/v1/kv", operation_id = "listKeys", tag = "kv", params(ListQuery),
    responses(
        (status = 200, description = "Keys in byte order", body = Listing),
        (status = 400, description = "An invalid prefix, limit or query string"),
        StorageFailures))]
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
    if !key::is_prefix(&prefix) {
        return Err(ApiError::BadRequest(format!(
            "invalid prefix {prefix:?}: expected up to {} characters of A-Z a-z 0-9 . _ : / -",
            key::MAX_LEN
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

/// A batch read: `{"keys": [key, …]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadMany {
    pub keys: Vec<String>,
}

impl utoipa::PartialSchema for ReadMany {
    fn schema() -> RefOr<Schema> {
        let keys = ArrayBuilder::new()
            .items(utoipa::openapi::Ref::from_schema_name("Key"))
            .min_items(Some(1))
            .max_items(Some(MAX_BATCH_KEYS))
            .description(Some(
                "Answered in this order; a key may appear more than once",
            ));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("keys", keys)
            .required("keys")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

impl utoipa::ToSchema for ReadMany {}

/// One key's answer in a batch read: its value and version, or `found: false`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Read {
    pub key: String,
    pub found: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Box<RawValue>>,
}

impl utoipa::PartialSchema for Read {
    fn schema() -> RefOr<Schema> {
        // What both answers have: the key, and whether it was found.
        let answer = |found: bool| {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("key", utoipa::openapi::Ref::from_schema_name("Key"))
                .property(
                    "found",
                    ObjectBuilder::new()
                        .schema_type(Type::Boolean)
                        .enum_values(Some([found])),
                )
                .required("key")
                .required("found")
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        let found = answer(true)
            .property(
                "version",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[0-9]+$"))
                    .description(Some("The value's version: its `ETag` without the quotes")),
            )
            .property(
                "value",
                ObjectBuilder::new()
                    .schema_type(SchemaType::AnyValue)
                    .description(Some("The stored JSON value, as stored")),
            )
            .required("version")
            .required("value");
        let absent = answer(false);
        OneOfBuilder::new().item(found).item(absent).into()
    }
}

impl utoipa::ToSchema for Read {}

/// What a batch read answers.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reads {
    /// One per key asked, in the same order.
    pub values: Vec<Read>,
}

#[utoipa::path(post, path = "/v1/kv:batchGet", operation_id = "getValues", tag = "kv",
    request_body(content = ReadMany, content_type = "application/json",
        description = "Up to {MAX_BATCH_KEYS} keys; the body may be up to {MAX_BATCH_READ_KIB} KiB"),
    responses(
        (status = 200, description = "Each key's value and version, or `found: false`, in the keys' order", body = Reads),
        (status = 400, description = "A body that is not JSON"),
        (status = 413, description = "The body is larger than {MAX_BATCH_READ_KIB} KiB"),
        (status = 415, description = "A body not declared as application/json"),
        (status = 422, description = "A body that is not `{\"keys\": [key, …]}` with 1 to {MAX_BATCH_KEYS} valid keys"),
        StorageFailures))]
pub async fn get_many(
    state: web::Data<State>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let asked = parse_json::<Object<ReadMany>>(&req, &body)?
        .into_inner()
        .keys;
    if !(1..=MAX_BATCH_KEYS).contains(&asked.len()) {
        return Err(ApiError::Unprocessable(format!(
            "a batch read asks for 1 to {MAX_BATCH_KEYS} keys, not {}",
            asked.len()
        )));
    }
    let keys = asked
        .iter()
        .enumerate()
        .map(|(index, key)| {
            Key::parse(key)
                .map_err(|error| ApiError::Unprocessable(format!("keys[{index}]: {error}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let entries = state.store.get_many(keys).await?;
    let values = asked
        .into_iter()
        .zip(entries)
        .map(|(key, entry)| match entry {
            Some(entry) => Ok(Read {
                key,
                found: true,
                version: Some(version_text(entry.version)),
                // Stored only after it was read as JSON, so this reads it again as it is.
                value: Some(stored_json(&entry.value)?),
            }),
            None => Ok(Read {
                key,
                found: false,
                version: None,
                value: None,
            }),
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(HttpResponse::Ok().json(Reads { values }))
}

/// A stored value as the JSON text it is; one that is not (which the upstream never writes) is
/// a storage failure, not something passed on.
fn stored_json(value: &[u8]) -> Result<Box<RawValue>, ApiError> {
    serde_json::from_slice::<&RawValue>(value)
        .map(RawValue::to_owned)
        .map_err(|error| StoreError::Corrupt(error.to_string()).into())
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

/// A conditional header, parsed when present; 400 unless it is `*` or a list of entity tags
/// exactly as [`EntityTags`] describes.
fn parse_condition<H: Header>(
    req: &HttpRequest,
    name: &header::HeaderName,
) -> Result<Option<H>, ApiError> {
    if header_text(req, name)?.is_none() {
        return Ok(None);
    }
    let malformed =
        || ApiError::BadRequest(format!("the {name} header is not * or a list of ETags"));
    let well_formed = req
        .headers()
        .get_all(name)
        .all(|line| line.to_str().is_ok_and(|text| ENTITY_TAGS.is_match(text)));
    if !well_formed {
        return Err(malformed());
    }
    H::parse(req).map(Some).map_err(|_| malformed())
}

/// The condition a write is made under: `If-Match` and `If-None-Match` must both hold when both
/// are sent. `If-Match` compares strongly (RFC 9110 §13.1.1), so a weak tag never matches;
/// `If-None-Match` compares weakly. An empty list names no version: `If-Match` then never holds
/// and `If-None-Match` always does.
fn write_precondition(req: &HttpRequest) -> Result<Precondition, ApiError> {
    let if_match =
        parse_condition::<IfMatch>(req, &header::IF_MATCH)?.map(|if_match| match if_match {
            IfMatch::Any => Precondition::Present,
            IfMatch::Items(tags) => Precondition::OneOf(versions(&tags, false)),
        });
    let if_none_match =
        parse_condition::<IfNoneMatch>(req, &header::IF_NONE_MATCH)?.map(|if_none_match| {
            match if_none_match {
                IfNoneMatch::Any => Precondition::Absent,
                IfNoneMatch::Items(tags) => Precondition::NoneOf(versions(&tags, true)),
            }
        });
    Ok(match (if_match, if_none_match) {
        (Some(first), Some(second)) => Precondition::Both(Box::new(first), Box::new(second)),
        (Some(only), None) | (None, Some(only)) => only,
        (None, None) => Precondition::None,
    })
}

/// The versions named by `tags`; tags that are not versions of ours can never match.
fn versions(tags: &[EntityTag], weak_allowed: bool) -> Vec<i64> {
    tags.iter()
        .filter(|tag| weak_allowed || !tag.weak)
        .filter_map(|tag| tag.tag().parse().ok())
        .collect()
}
