//! `/v1/counters`: atomic counters, with `Idempotency-Key` so a retried increment counts once.
//!
//! A key is remembered per counter for 24 hours together with the amount and the value it
//! produced: the same key and amount again answers that value (with `Idempotent-Replayed:
//! true`) without counting; the same key with another amount is a client error (422).

use actix_web::http::header::HeaderName;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use shared::json::Object;
use shared::pattern::Pattern;
use utoipa::openapi::schema::{AdditionalProperties, KnownFormat, SchemaFormat};
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};

use super::{ApiError, State, StorageFailures, header_text, parse_json};
use crate::key::Key;
use crate::storage::Increment;

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// A counter's value.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Counter {
    pub name: String,
    pub value: i64,
}

/// What an `Idempotency-Key` may be: 1–255 visible ASCII characters.
pub static IDEMPOTENCY_KEY_PATTERN: Pattern = Pattern::new("^[!-~]{1,255}$");

/// The increment's body; `null` or an empty body means `{"by": 1}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementBy {
    /// Amount to add (may be negative); default 1.
    #[serde(default = "one")]
    pub by: i64,
}

impl utoipa::PartialSchema for IncrementBy {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "by",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .minimum(Some(i64::MIN))
                    .maximum(Some(i64::MAX))
                    .default(Some(one().into()))
                    .description(Some("Amount to add (may be negative)")),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .description(Some(
                "The increment; `null` or no body at all means `{\"by\": 1}`",
            ))
            .into()
    }
}

impl utoipa::ToSchema for IncrementBy {}

/// The schema of an `Idempotency-Key` value.
pub struct IdempotencyKey;

impl utoipa::PartialSchema for IdempotencyKey {
    fn schema() -> RefOr<Schema> {
        IDEMPOTENCY_KEY_PATTERN.string().into()
    }
}

impl utoipa::ToSchema for IdempotencyKey {}

fn one() -> i64 {
    1
}

#[utoipa::path(post, path = "/v1/counters/{name}", operation_id = "incrementCounter", tag = "counters",
    params(("name" = Key, Path, description = "A counter's name: the same rules as keys"),
        ("Idempotency-Key" = Option<IdempotencyKey>, Header, nullable = false, description = "Remembered for 24 hours per counter: the same key and amount again answers the value it produced without counting")),
    request_body(content = Option<IncrementBy>, content_type = "application/json"),
    responses(
        (status = 200, description = "The counter after the increment", body = Counter, headers(
            ("Idempotent-Replayed" = String, description = "`true` when this answers an earlier increment with the same Idempotency-Key"))),
        (status = 400, description = "An invalid name, Idempotency-Key, or a body that is not JSON"),
        (status = 413, description = "The body is larger than MAX_VALUE_BYTES"),
        (status = 415, description = "A body not declared as application/json"),
        (status = 422, description = "A body that is not `{\"by\": n}`, an Idempotency-Key used before with another amount, or a sum outside the 64-bit range"),
        (status = 507, description = "The disk is full; reads go on, and writes resume by themselves once there is space"),
        StorageFailures))]
pub async fn increment(
    state: web::Data<State>,
    name: Key,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let by = if body.is_empty() {
        1
    } else {
        parse_json::<Option<Object<IncrementBy>>>(&req, &body)?
            .map_or(one(), |body| body.into_inner().by)
    };
    let idempotency_key = header_text(&req, &IDEMPOTENCY_KEY)?
        .map(|key| {
            if IDEMPOTENCY_KEY_PATTERN.is_match(key) {
                Ok(key.to_owned())
            } else {
                Err(ApiError::BadRequest(
                    "the Idempotency-Key must be 1 to 255 visible ASCII characters".to_owned(),
                ))
            }
        })
        .transpose()?;
    let counter = |value| Counter {
        name: name.to_string(),
        value,
    };
    match state
        .store
        .increment(name.clone(), by, idempotency_key)
        .await?
    {
        Increment::Counted { value } => Ok(HttpResponse::Ok().json(counter(value))),
        Increment::Replayed { value } => Ok(HttpResponse::Ok()
            .insert_header((REPLAYED, "true"))
            .json(counter(value))),
        Increment::KeyReused => Err(ApiError::Unprocessable(format!(
            "this Idempotency-Key was already used on counter {:?} with another amount",
            name.as_str()
        ))),
        Increment::Overflow => Err(ApiError::Unprocessable(format!(
            "adding {by} would take counter {:?} out of the 64-bit range",
            name.as_str()
        ))),
    }
}

#[utoipa::path(get, path = "/v1/counters/{name}", operation_id = "getCounter", tag = "counters",
    params(("name" = Key, Path, description = "A counter's name: the same rules as keys")),
    responses(
        (status = 200, description = "The counter; 0 when never incremented", body = Counter),
        (status = 400, description = "An invalid name"),
        StorageFailures))]
pub async fn get(state: web::Data<State>, name: Key) -> Result<HttpResponse, ApiError> {
    let value = state.store.counter(name.clone()).await?;
    Ok(HttpResponse::Ok().json(Counter {
        name: name.to_string(),
        value,
    }))
}
