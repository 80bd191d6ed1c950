//! `/v1/info` and `/readyz`.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use shared::health::Health;
use shared::problem::Problem;

use super::{ApiError, State, StorageFailures};

/// How long readiness waits for storage to answer.
const READINESS_DEADLINE: Duration = Duration::from_secs(1);

/// What `/v1/info` reports.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Info {
    /// Always `upstream`.
    pub service: String,
    /// `INSTANCE_NAME`: which backend this is.
    pub instance: String,
    /// The upstream's version.
    pub version: String,
    /// The storage engine.
    pub storage: String,
    /// How many keys are stored.
    pub keys: i64,
    /// The optional operations of the contract this backend offers, by `operationId`:
    /// `getValues` (`POST /v1/kv:batchGet`) and `incrementCounters` (`POST /v1/counters`). A
    /// backend without this field offers neither.
    #[serde(default)]
    pub operations: Vec<String>,
}

/// The optional operations of the contract, by `operationId`; this upstream offers them all.
pub const OPTIONAL_OPERATIONS: [&str; 2] = ["getValues", "incrementCounters"];

#[utoipa::path(get, path = "/v1/info", operation_id = "getInfo", tag = "info",
    responses(
        (status = 200, description = "Which backend this is", body = Info),
        StorageFailures))]
pub async fn info(state: web::Data<State>) -> Result<HttpResponse, ApiError> {
    let keys = state.store.key_count().await?;
    Ok(HttpResponse::Ok().json(Info {
        service: "upstream".to_owned(),
        instance: state.instance.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        storage: "sqlite".to_owned(),
        keys,
        operations: OPTIONAL_OPERATIONS.map(str::to_owned).to_vec(),
    }))
}

#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "health", responses(
    (status = 200, description = "Storage answers", body = Health),
    (status = 503, description = "Storage does not answer, or shutting down")))]
pub async fn readyz(state: web::Data<State>) -> HttpResponse {
    if let Some(draining) = state.lifecycle.draining_response() {
        return draining;
    }
    match tokio::time::timeout(READINESS_DEADLINE, state.store.ping()).await {
        Ok(Ok(())) => HttpResponse::Ok().json(Health {
            status: "ready".to_owned(),
        }),
        Ok(Err(error)) => {
            log::error!("readiness: storage failed: {error}");
            Problem::with_detail(StatusCode::SERVICE_UNAVAILABLE, "storage does not answer")
                .response()
        }
        Err(_) => Problem::with_detail(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage did not answer within 1s",
        )
        .response(),
    }
}
