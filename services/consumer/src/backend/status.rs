//! The attached backend as `/api/status` and the page show it: which kind, which instance,
//! reachable or not, how fast, and the circuit. Asking costs one `info` call, the same at any
//! size of the data.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Backend;

/// How long `/readyz` and the page wait for the backend's status: well inside the
/// `healthcheck` subcommand's 2 s, so a hanging backend makes the consumer "degraded", never
/// unhealthy.
pub const STATUS_WAIT: Duration = Duration::from_secs(1);

/// The attached resource as seen from here.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackendStatus {
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

impl Backend {
    /// How the backend is doing, waiting at most `limit` (or the call's own deadline) for its
    /// answer.
    pub async fn report(&self, limit: Option<Duration>) -> BackendStatus {
        let started = Instant::now();
        let info = match limit {
            Some(limit) => tokio::time::timeout(limit, self.info())
                .await
                .map_err(|_| format!("the backend did not answer within {limit:?}")),
            None => Ok(self.info().await),
        };
        let latency_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
        let info = info.and_then(|answer| answer.map_err(|error| error.public_detail()));
        let (instance, latency_ms, error) = match info {
            Ok(info) => (Some(info.instance), Some(latency_ms), None),
            Err(error) => (None, None, Some(error)),
        };
        BackendStatus {
            kind: self.attachment().kind().to_owned(),
            url: self.attachment().redacted(),
            reachable: instance.is_some(),
            instance,
            latency_ms,
            circuit: self.circuit().as_str().to_owned(),
            error,
        }
    }
}
