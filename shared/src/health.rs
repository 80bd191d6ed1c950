//! Liveness, readiness and the drain that links them to shutdown.
//!
//! `/livez` says the process is up and never touches a dependency, so an orchestrator only
//! restarts what is really stuck. `/readyz` is each service's own (the upstream asks its
//! storage; the consumer stays ready while its upstream is away), but both answer 503 once
//! [`Lifecycle::start_draining`] has been called, so a load balancer stops sending traffic while
//! in-flight requests finish.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::problem::Problem;

/// The body of a successful health answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` for liveness; `ready` (or the consumer's `degraded`) for readiness.
    pub status: String,
}

/// Whether the process is draining, and the trigger that starts it without a signal.
#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    inner: Arc<LifecycleInner>,
}

#[derive(Debug, Default)]
struct LifecycleInner {
    draining: AtomicBool,
    stop: Notify,
}

impl Lifecycle {
    pub fn new() -> Self {
        Self::default()
    }

    /// Readiness answers 503 from now on.
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Asks the server to shut down as it would on SIGTERM (used by in-process tests).
    pub fn request_stop(&self) {
        self.inner.stop.notify_one();
    }

    pub(crate) async fn stop_requested(&self) {
        self.inner.stop.notified().await
    }

    /// The 503 readiness answers while draining, or `None` when serving normally.
    pub fn draining_response(&self) -> Option<HttpResponse> {
        self.is_draining().then(|| {
            Problem::with_detail(StatusCode::SERVICE_UNAVAILABLE, "shutting down").response()
        })
    }
}

/// `GET /livez`: 200 while the process can answer at all.
pub async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok".to_owned(),
    })
}
