//! `/v1/counters`: atomic counters, with `Idempotency-Key` so a retried increment counts once.
//!
//! A key is remembered per counter for 24 hours together with the amount and the value it
//! produced: the same key and amount again answers that value (with `Idempotent-Replayed:
//! true`) without counting; the same key with another amount is a client error (422).
//!
//! `POST /v1/counters` adds to up to [`MAX_INCREMENTS`] counters in one atomic step under one
//! key, remembered for the whole batch: a client with many counts to send (the consumer's
//! clicks) makes one request and leaves one key per batch instead of one per counter.

use actix_web::http::header::HeaderName;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use shared::json::Object;
use shared::pattern::Pattern;
use utoipa::openapi::schema::{AdditionalProperties, KnownFormat, SchemaFormat};
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};

use super::{ApiError, State, StorageFailures, header_text, parse_json};
use crate::key::Key;
use crate::storage::{Increment, Increments};

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

/// The longest `Idempotency-Key`: the bound in [`IDEMPOTENCY_KEY_PATTERN`] (a test holds them
/// together).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The increment's body; `null` or an empty body means `{"by": 1}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementBy {
    /// Amount to add (may be negative); default 1.
    #[serde(default = "one")]
    pub by: i64,
}

/// The schema of an amount to add: any 64-bit integer, 1 where left out.
fn by_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(i64::MIN))
        .maximum(Some(i64::MAX))
        .default(Some(one().into()))
        .description(Some("Amount to add (may be negative)"))
}

impl utoipa::PartialSchema for IncrementBy {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("by", by_schema())
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .description(Some(
                "The increment; `null` or no body at all means `{\"by\": 1}`",
            ))
            .into()
    }
}

impl utoipa::ToSchema for IncrementBy {}

/// The most increments one batch may carry.
pub const MAX_INCREMENTS: usize = 1000;

/// The largest batch body, in bytes, whatever `MAX_VALUE_BYTES` is: room for
/// [`MAX_INCREMENTS`] increments of the longest names, written out with spaces.
pub const MAX_BATCH_BYTES: usize = 512 * 1024;

/// A batch of increments: `{"increments": [{"name", "by"}, …]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementMany {
    pub increments: Vec<Object<NamedIncrement>>,
}

/// One increment of a batch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedIncrement {
    pub name: String,
    #[serde(default = "one")]
    pub by: i64,
}

impl utoipa::PartialSchema for IncrementMany {
    fn schema() -> RefOr<Schema> {
        let increment = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("name", utoipa::openapi::Ref::from_schema_name("Key"))
            .required("name")
            .property("by", by_schema())
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        let increments = utoipa::openapi::ArrayBuilder::new()
            .items(increment)
            .min_items(Some(1))
            .max_items(Some(MAX_INCREMENTS))
            .description(Some(
                "Applied in this order, all or none; a name may appear more than once",
            ));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("increments", increments)
            .required("increments")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

impl utoipa::ToSchema for IncrementMany {}

/// What a batch of increments produced.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Counters {
    /// Each counter after its increment, in the batch's order.
    pub counters: Vec<Counter>,
}

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
        ("Idempotency-Key" = Option<IdempotencyKey>, Header, nullable = false, description = "Remembered for {IDEMPOTENCY_HOURS} hours per counter: the same key and amount again answers the value it produced without counting")),
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
    let idempotency_key = idempotency_key(&req)?;
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

/// The request's `Idempotency-Key`, if it has one; 400 when it is not one.
fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    header_text(req, &IDEMPOTENCY_KEY)?
        .map(|key| {
            if IDEMPOTENCY_KEY_PATTERN.is_match(key) {
                Ok(key.to_owned())
            } else {
                Err(ApiError::BadRequest(
                    format!(
                    "the Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
                ),
                ))
            }
        })
        .transpose()
}

#[utoipa::path(post, path = "/v1/counters", operation_id = "incrementCounters", tag = "counters",
    params(("Idempotency-Key" = Option<IdempotencyKey>, Header, nullable = false, description = "Remembered for {IDEMPOTENCY_HOURS} hours for the whole batch: the same key and the same batch again answers the values it produced without counting")),
    request_body(content = IncrementMany, content_type = "application/json",
        description = "Up to {MAX_INCREMENTS} increments, applied in order in one atomic step; the body may be up to {MAX_BATCH_KIB} KiB whatever MAX_VALUE_BYTES is"),
    responses(
        (status = 200, description = "Each counter after its increment, in the batch's order", body = Counters, headers(
            ("Idempotent-Replayed" = String, description = "`true` when this answers an earlier batch with the same Idempotency-Key"))),
        (status = 400, description = "An invalid Idempotency-Key, or a body that is not JSON"),
        (status = 413, description = "The body is larger than {MAX_BATCH_KIB} KiB"),
        (status = 415, description = "A body not declared as application/json"),
        (status = 422, description = "A body that is not `{\"increments\": [{\"name\", \"by\"}, …]}` with 1 to {MAX_INCREMENTS} increments of valid names, an Idempotency-Key used before for another batch, or a sum outside the 64-bit range (then nothing is counted)"),
        (status = 507, description = "The disk is full; reads go on, and writes resume by themselves once there is space"),
        StorageFailures))]
pub async fn increment_many(
    state: web::Data<State>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let batch = parse_json::<Object<IncrementMany>>(&req, &body)?
        .into_inner()
        .increments;
    if !(1..=MAX_INCREMENTS).contains(&batch.len()) {
        return Err(ApiError::Unprocessable(format!(
            "a batch carries 1 to {MAX_INCREMENTS} increments, not {}",
            batch.len()
        )));
    }
    let batch = batch
        .into_iter()
        .enumerate()
        .map(|(index, increment)| {
            let NamedIncrement { name, by } = increment.into_inner();
            Key::parse(&name)
                .map(|name| (name, by))
                .map_err(|error| ApiError::Unprocessable(format!("increments[{index}]: {error}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let idempotency_key = idempotency_key(&req)?;
    let names: Vec<String> = batch.iter().map(|(name, _)| name.to_string()).collect();
    let counters = |values: Vec<i64>| Counters {
        counters: names
            .into_iter()
            .zip(values)
            .map(|(name, value)| Counter { name, value })
            .collect(),
    };
    match state.store.increment_many(batch, idempotency_key).await? {
        Increments::Counted { values } => Ok(HttpResponse::Ok().json(counters(values))),
        Increments::Replayed { values } => Ok(HttpResponse::Ok()
            .insert_header((REPLAYED, "true"))
            .json(counters(values))),
        Increments::KeyReused => Err(ApiError::Unprocessable(
            "this Idempotency-Key was already used for another batch".to_owned(),
        )),
        Increments::Overflow { name } => Err(ApiError::Unprocessable(format!(
            "the batch would take counter {:?} out of the 64-bit range; nothing was counted",
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
