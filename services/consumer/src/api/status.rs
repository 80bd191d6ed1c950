//! `/api/status` (which backend is attached, and how it is doing) and `/readyz`.

use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::State;

/// What `/api/status` reports.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Status {
    pub upstream: UpstreamStatus,
}

/// The attached resource as seen from here.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UpstreamStatus {
    /// What kind of backing service `UPSTREAM_URL` attaches: `http` or `redis`.
    pub kind: String,
    /// `UPSTREAM_URL` with its secret hidden.
    pub url: String,
    /// The instance, when it answered: an upstream's `INSTANCE_NAME`; for Redis, its version,
    /// host, port and database.
    pub instance: Option<String>,
    pub reachable: bool,
    /// How long asking it who it is took, when it answered.
    pub latency_ms: Option<f64>,
    /// The circuit breaker: `closed`, `half-open` or `open`.
    pub circuit: String,
    /// Why it is not reachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The consumer's readiness.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready`, or `degraded` while the upstream does not answer.
    pub status: String,
    /// What the upstream is doing, when degraded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[utoipa::path(get, path = "/api/status", tag = "status", operation_id = "status",
    responses((status = 200, description = "The attached upstream, reachable or not", body = Status)))]
pub async fn status(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok().json(Status {
        upstream: report(&state, None).await,
    })
}

/// The attached upstream as `/api/status` and the page show it, waiting at most `limit` (or
/// the upstream deadline) for its answer.
pub async fn report(state: &State, limit: Option<Duration>) -> UpstreamStatus {
    let upstream = &state.upstream;
    let started = Instant::now();
    let info = match limit {
        Some(limit) => tokio::time::timeout(limit, upstream.info())
            .await
            .map_err(|_| format!("the upstream store did not answer within {limit:?}")),
        None => Ok(upstream.info().await),
    };
    let latency_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
    let info = info.and_then(|answer| answer.map_err(|error| error.public_detail().to_owned()));
    let (instance, latency_ms, error) = match info {
        Ok(info) => (Some(info.instance), Some(latency_ms), None),
        Err(error) => (None, None, Some(error)),
    };
    UpstreamStatus {
        kind: upstream.attachment().kind().to_owned(),
        url: upstream.attachment().redacted(),
        reachable: instance.is_some(),
        instance,
        latency_ms,
        circuit: upstream.circuit().as_str().to_owned(),
        error,
    }
}

/// How long readiness waits for the upstream: well inside the `healthcheck` subcommand's 2 s,
/// so a hanging upstream makes the consumer "degraded", never unhealthy.
pub const READINESS_PROBE: Duration = Duration::from_secs(1);

/// Ready unless draining. An unreachable upstream does not make the consumer unready — that
/// would take every replica out at once, when each can still answer 503 with `Retry-After` —
/// it only says `degraded`.
#[utoipa::path(get, path = "/readyz", tag = "health", operation_id = "readyz", responses(
    (status = 200, description = "Serving; `degraded` while the upstream does not answer", body = Readiness),
    (status = 503, description = "Shutting down")))]
pub async fn readyz(state: web::Data<State>) -> HttpResponse {
    if let Some(draining) = state.lifecycle.draining_response() {
        return draining;
    }
    let probe = tokio::time::timeout(READINESS_PROBE, state.upstream.info()).await;
    let readiness = match probe {
        Ok(Ok(_)) => Readiness {
            status: "ready".to_owned(),
            detail: None,
        },
        Ok(Err(error)) => Readiness {
            status: "degraded".to_owned(),
            detail: Some(error.public_detail().to_owned()),
        },
        Err(_) => Readiness {
            status: "degraded".to_owned(),
            detail: Some(format!(
                "the upstream store did not answer within {READINESS_PROBE:?}"
            )),
        },
    };
    HttpResponse::Ok().json(readiness)
}
