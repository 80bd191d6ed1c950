//! `/v1/counters`: atomic counters, with `Idempotency-Key` so a retried increment counts once.
//!
//! A key is remembered per counter for 24 hours together with the amount and the value it
//! produced: the same key and amount again answers that value (with `Idempotent-Replayed:
//! true`) without counting; the same key with another amount is a client error (422).

use actix_web::http::header::HeaderName;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use shared::problem::Problem;

use super::{ApiError, State, header_text, parse_json};
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

/// The increment's body; an empty body means `{"by": 1}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncrementBy {
    /// Amount to add (may be negative); default 1.
    #[serde(default = "one")]
    pub by: i64,
}

fn one() -> i64 {
    1
}

#[utoipa::path(post, path = "/v1/counters/{name}", tag = "counters",
    params(("name" = String, Path, description = "Same rules as keys"),
        ("Idempotency-Key" = Option<String>, Header, description = "1–255 visible ASCII characters; a retry with the same key counts once")),
    request_body(content = Option<IncrementBy>, content_type = "application/json"),
    responses(
        (status = 200, description = "The counter after the increment", body = Counter),
        (status = 400, description = "Invalid name, body or Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "A body not declared as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Key reused for another amount, or overflow", body = Problem, content_type = "application/problem+json")),
    security((), ("token" = [])))]
pub async fn increment(
    state: web::Data<State>,
    path: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let name = Key::parse(&path)?;
    let by = if body.is_empty() {
        1
    } else {
        parse_json::<IncrementBy>(&req, &body)?.by
    };
    let idempotency_key = header_text(&req, &IDEMPOTENCY_KEY)?
        .map(|key| {
            if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) {
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

#[utoipa::path(get, path = "/v1/counters/{name}", tag = "counters",
    params(("name" = String, Path)),
    responses((status = 200, description = "The counter; 0 when never incremented", body = Counter)),
    security((), ("token" = [])))]
pub async fn get(
    state: web::Data<State>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = Key::parse(&path)?;
    let value = state.store.counter(name.clone()).await?;
    Ok(HttpResponse::Ok().json(Counter {
        name: name.to_string(),
        value,
    }))
}
