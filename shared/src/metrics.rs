//! Prometheus metrics at `/metrics`: request counts and latencies per route pattern (so the
//! label set stays bounded; unmatched paths share one label), plus process metrics. Services
//! register their own metrics in the middleware's registry.

use actix_web_prom::{PrometheusMetrics, PrometheusMetricsBuilder};

pub use prometheus::Registry;

/// The metrics middleware for a service; its metric names start with `namespace`.
pub fn middleware(namespace: &str, registry: Registry) -> std::io::Result<PrometheusMetrics> {
    PrometheusMetricsBuilder::new(namespace)
        .registry(registry)
        .endpoint("/metrics")
        .mask_unmatched_patterns("UNMATCHED")
        .build()
        .map_err(std::io::Error::other)
}
