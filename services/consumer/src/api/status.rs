//! `/api/status` (which backend is attached, and how it is doing) and `/readyz`.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::State;
use crate::backend::{BackendStatus, STATUS_WAIT};

/// What `/api/status` reports.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Status {
    /// Named `upstream` in the JSON, as the contract of `/api/status` has always said.
    #[serde(rename = "upstream")]
    pub backend: BackendStatus,
}

/// The consumer's readiness.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready`, or `degraded` while the backend does not answer.
    pub status: String,
    /// What the backend is doing, when degraded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[utoipa::path(get, path = "/api/status", tag = "status", operation_id = "status",
    responses((status = 200, description = "The attached backend, reachable or not", body = Status)))]
pub async fn status(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok().json(Status {
        backend: state.shortener.backend.report(None).await,
    })
}

/// Ready unless draining. An unreachable backend does not make the consumer unready — that
/// would take every replica out at once, when each can still answer 503 with `Retry-After` —
/// it only says `degraded`.
#[utoipa::path(get, path = "/readyz", tag = "health", operation_id = "readyz", responses(
    (status = 200, description = "Serving; `degraded` while the backend does not answer", body = Readiness),
    (status = 503, description = "Shutting down")))]
pub async fn readyz(state: web::Data<State>) -> HttpResponse {
    if let Some(draining) = state.lifecycle.draining_response() {
        return draining;
    }
    let probe = tokio::time::timeout(STATUS_WAIT, state.shortener.backend.info()).await;
    let readiness = match probe {
        Ok(Ok(_)) => Readiness {
            status: "ready".to_owned(),
            detail: None,
        },
        Ok(Err(error)) => Readiness {
            status: "degraded".to_owned(),
            detail: Some(error.public_detail()),
        },
        Err(_) => Readiness {
            status: "degraded".to_owned(),
            detail: Some(format!("the backend did not answer within {STATUS_WAIT:?}")),
        },
    };
    HttpResponse::Ok().json(readiness)
}
