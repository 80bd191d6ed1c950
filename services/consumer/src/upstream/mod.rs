//! The attached resource: everything the consumer knows about its backing service, and how it
//! talks to it, whatever kind it is.
//!
//! - [`attachment`]: `UPSTREAM_URL`, whose scheme chooses the kind — read there, once.
//! - [`store`]: the [`Store`] interface, what the consumer needs from any backing service.
//! - [`http`] and [`redis`]: one adapter per kind; [`Upstream::new`] is the one place that
//!   picks between them.
//! - [`Upstream`] (here): the same resilience around any adapter, written once. Every call has
//!   a total deadline (`UPSTREAM_TIMEOUT`, covering the retry too). Every call is safe to repeat
//!   (reads, create-only writes whose repeat is recognised, increments with an idempotency
//!   key), so one that failed before reaching the backend or lost its answer is tried once more
//!   after a jittered pause. A [`Breaker`] fails fast while the backend is down and probes for
//!   its return.
//!
//! Failures are [`UpstreamError`]s, which the API turns into 503 (unreachable, circuit open,
//! busy, full; with `Retry-After`), 504 (deadline) or 502 (failed, rejected credentials, malformed
//! reply) — the same for every kind. The backend's own answers are never passed on or logged.

pub mod attachment;
mod breaker;
pub mod http;
pub mod redis;
pub mod store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use serde::Deserialize;

pub use attachment::{Attachment, Credentials};
pub use breaker::{Breaker, Circuit, FIRST_COOLDOWN};
pub use http::MAX_REPLY_BYTES;
use shared::config::{ConfigError, DURATION_EXPECTED, Layers, duration, in_range};
use store::{Attempt, Store};

use crate::links::{Code, LinkDocument};

/// The variables [`UpstreamSettings`] reads.
pub const VARIABLES: [&str; 6] = [
    "UPSTREAM_URL",
    "UPSTREAM_CONNECT_TIMEOUT",
    "UPSTREAM_TIMEOUT",
    "UPSTREAM_POOL_IDLE_TIMEOUT",
    "CIRCUIT_FAILURES",
    "CIRCUIT_COOLDOWN",
];

/// The attached resource and how it is called.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// `UPSTREAM_URL`, default `http://127.0.0.1:8081/`:
    /// `http(s)://[user:token@]host:port[/prefix/]`, no query or fragment (`user:token@` is sent
    /// as Basic credentials, a lone `token@` as a Bearer token); or
    /// `redis(s)://[user][:password]@host[:port][/db]`.
    pub attachment: Attachment,
    /// Longest wait to connect, per attempt. `UPSTREAM_CONNECT_TIMEOUT`, default `1s`; at most
    /// `UPSTREAM_TIMEOUT`.
    pub connect_timeout: Duration,
    /// Deadline for a whole call, retry included. `UPSTREAM_TIMEOUT`, default `2s`.
    pub timeout: Duration,
    /// How long an idle pooled HTTP connection is kept. `UPSTREAM_POOL_IDLE_TIMEOUT`, default
    /// `4s`: shorter than the upstream's 5 s keep-alive, so the consumer retires a connection before
    /// the upstream closes it under a request.
    pub pool_idle_timeout: Duration,
    /// Consecutive failed calls that open the circuit. `CIRCUIT_FAILURES`, default 5.
    pub circuit_failures: u32,
    /// The longest an open circuit fails fast before one call probes the upstream again; the
    /// first wait is [`FIRST_COOLDOWN`] and grows with each failed probe up to this.
    /// `CIRCUIT_COOLDOWN`, default `5s`.
    pub circuit_cooldown: Duration,
}

impl UpstreamSettings {
    pub fn from_layers(layers: &Layers) -> Result<Self, ConfigError> {
        let settings = UpstreamSettings {
            attachment: layers.parse(
                "UPSTREAM_URL",
                "http://127.0.0.1:8081/",
                Attachment::EXPECTED,
                Attachment::parse,
            )?,
            connect_timeout: layers.parse(
                "UPSTREAM_CONNECT_TIMEOUT",
                "1s",
                DURATION_EXPECTED,
                duration,
            )?,
            timeout: layers.parse("UPSTREAM_TIMEOUT", "2s", DURATION_EXPECTED, duration)?,
            pool_idle_timeout: layers.parse(
                "UPSTREAM_POOL_IDLE_TIMEOUT",
                "4s",
                DURATION_EXPECTED,
                duration,
            )?,
            circuit_failures: layers.parse(
                "CIRCUIT_FAILURES",
                "5",
                "a number of failures from 1 to 1000",
                in_range::<u32>(1..=1000),
            )?,
            circuit_cooldown: layers.parse(
                "CIRCUIT_COOLDOWN",
                "5s",
                DURATION_EXPECTED,
                duration,
            )?,
        };
        if settings.connect_timeout > settings.timeout {
            return Err(ConfigError::invalid(
                "UPSTREAM_CONNECT_TIMEOUT",
                &humantime::format_duration(settings.connect_timeout).to_string(),
                format_args!(
                    "at most UPSTREAM_TIMEOUT ({})",
                    humantime::format_duration(settings.timeout)
                ),
            ));
        }
        Ok(settings)
    }
}

/// Seconds a client is asked to wait while the upstream's storage is full: long enough not to
/// press on a backend that needs its operator, short enough to notice space coming back.
const FULL_RETRY_AFTER: u64 = 30;

/// The longest wait a busy upstream's `Retry-After` is passed on with: the consumer does not
/// send its clients away for longer on a backend's word.
const MAX_BUSY_RETRY_AFTER: u64 = 60;

/// The public detail of [`UpstreamError::TooLarge`], which clients see only for the calls
/// bounded by [`MAX_REPLY_BYTES`] (a test holds it to the constant).
const TOO_LARGE: &str = "the upstream store answered more than 32768 bytes";

/// Why a call to the upstream did not give an answer the consumer can use. The messages are for
/// logs: they never contain credentials or the upstream's bodies.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("the upstream is unreachable: {0}")]
    Unreachable(String),
    #[error("the circuit is open: failing fast for {0:?}")]
    CircuitOpen(Duration),
    #[error("the upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the upstream failed: {0}")]
    Failed(String),
    #[error("the upstream refused the credentials in UPSTREAM_URL: {0}")]
    Rejected(String),
    #[error("the upstream's answer is not what it promises: {0}")]
    Malformed(String),
    /// It answered more than this many bytes (`MAX_REPLY_BYTES`, or a click batch's bound).
    #[error("the upstream answered more than {0} bytes")]
    TooLarge(usize),
    #[error("the upstream's storage is full")]
    Full,
    /// It answered 503, asking to be called again in this many seconds.
    #[error("the upstream is busy: it answered 503, retry after {0} s")]
    Busy(u64),
}

impl UpstreamError {
    /// The status the consumer answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::Unreachable(_)
            | UpstreamError::CircuitOpen(_)
            | UpstreamError::Full
            | UpstreamError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            UpstreamError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::Failed(_)
            | UpstreamError::Rejected(_)
            | UpstreamError::Malformed(_)
            | UpstreamError::TooLarge(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// Seconds a client should wait before retrying, for 503s.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            UpstreamError::CircuitOpen(wait) => Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            UpstreamError::Unreachable(_) => Some(1),
            UpstreamError::Full => Some(FULL_RETRY_AFTER),
            UpstreamError::Busy(seconds) => Some((*seconds).clamp(1, MAX_BUSY_RETRY_AFTER)),
            _ => None,
        }
    }

    /// Whether the call may not have reached the backend, or its answer was lost: the one
    /// failure worth trying again at once.
    pub fn worth_retrying(&self) -> bool {
        matches!(self, UpstreamError::Unreachable(_))
    }

    /// What the client is told: which kind of failure, nothing internal.
    pub fn public_detail(&self) -> &'static str {
        match self {
            UpstreamError::Unreachable(_) => "the upstream store is unreachable",
            UpstreamError::CircuitOpen(_) => {
                "the upstream store is failing; not calling it until it recovers"
            }
            UpstreamError::Timeout(_) => "the upstream store did not answer in time",
            UpstreamError::Failed(_) => "the upstream store failed",
            UpstreamError::Rejected(_) => "the upstream store refused this service's credentials",
            UpstreamError::Malformed(_) => "the upstream store answered something unexpected",
            UpstreamError::TooLarge(_) => TOO_LARGE,
            UpstreamError::Full => "the upstream store is full; try again later",
            UpstreamError::Busy(_) => "the upstream store is busy; try again shortly",
        }
    }
}

/// Who answers: the attached instance as it names itself.
#[derive(Debug, Clone, Deserialize)]
pub struct Info {
    pub instance: String,
}

/// How a create-only write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Yes,
    /// Something is stored under the code already.
    Taken,
}

/// The attached backing service behind deadlines, one retry and a circuit breaker; one per
/// process.
pub struct Upstream {
    store: Box<dyn Store>,
    attachment: Attachment,
    breaker: Arc<Breaker>,
    deadline: Duration,
    calls: IntCounterVec,
}

impl Upstream {
    /// Attaches the adapter for the kind `settings` names, and registers the metrics in
    /// `registry`. Nothing is called yet: the backend need not be up.
    pub fn new(settings: &UpstreamSettings, registry: &Registry) -> prometheus::Result<Self> {
        let store: Box<dyn Store> = match &settings.attachment {
            Attachment::Http(attachment) => {
                Box::new(http::HttpStore::new(attachment.clone(), settings))
            }
            Attachment::Redis(attachment) => Box::new(redis::RedisStore::new(attachment, settings)),
        };
        let circuit = IntGauge::new(
            "consumer_upstream_circuit",
            "State of the upstream circuit breaker: 0 closed, 1 half-open, 2 open",
        )?;
        let calls = IntCounterVec::new(
            Opts::new(
                "consumer_upstream_calls_total",
                "Calls to the upstream by outcome",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(circuit.clone()))?;
        registry.register(Box::new(calls.clone()))?;
        let breaker = Breaker::new(
            settings.circuit_failures,
            settings.circuit_cooldown,
            move |state| {
                log::warn!("upstream circuit is now {}", state.as_str());
                circuit.set(match state {
                    Circuit::Closed => 0,
                    Circuit::HalfOpen => 1,
                    Circuit::Open => 2,
                });
            },
        );
        Ok(Upstream {
            store,
            attachment: settings.attachment.clone(),
            breaker,
            deadline: settings.timeout,
            calls,
        })
    }

    pub fn attachment(&self) -> &Attachment {
        &self.attachment
    }

    pub fn circuit(&self) -> Circuit {
        self.breaker.circuit(Instant::now())
    }

    /// Who answers.
    pub async fn info(&self) -> Result<Info, UpstreamError> {
        self.call("info", || self.store.info()).await
    }

    /// The link stored under `code`, if any.
    pub async fn link(&self, code: &Code) -> Result<Option<LinkDocument>, UpstreamError> {
        self.call("link", || self.store.link(code)).await
    }

    /// Stores `document` under `code` unless the code is taken. A create retried after a lost
    /// answer may find its own first attempt; reading the document back tells that apart from a
    /// code taken by someone else.
    pub async fn create_link(
        &self,
        code: &Code,
        document: &LinkDocument,
    ) -> Result<Created, UpstreamError> {
        match self
            .call("create", || self.store.create_link(code, document))
            .await?
        {
            Created::Yes => Ok(Created::Yes),
            Created::Taken => match self.link(code).await? {
                Some(existing) if existing.written_by(document) => Ok(Created::Yes),
                _ => Ok(Created::Taken),
            },
        }
    }

    /// The clicks counted for `code`.
    pub async fn clicks(&self, code: &Code) -> Result<i64, UpstreamError> {
        self.call("clicks", || self.store.clicks(code)).await
    }

    /// Adds each `(code, clicks)` of `batch` (at most [`store::MAX_BATCH_CODES`]), once per
    /// `idempotency_key`.
    pub async fn add_clicks(
        &self,
        batch: &[(String, u64)],
        idempotency_key: &str,
    ) -> Result<(), UpstreamError> {
        self.call("add clicks", || {
            self.store.add_clicks(batch, idempotency_key)
        })
        .await
    }

    /// One call through the breaker, within the deadline, tried at most twice.
    async fn call<'a, T>(
        &'a self,
        what: &str,
        attempt: impl Fn() -> Attempt<'a, T>,
    ) -> Result<T, UpstreamError> {
        let permit = self
            .breaker
            .admit(Instant::now())
            .map_err(UpstreamError::CircuitOpen)
            .inspect_err(|_| self.calls.with_label_values(&["circuit_open"]).inc())?;
        let attempts = async {
            match attempt().await {
                Err(error) if error.worth_retrying() => {
                    log::info!("{what}: {error}; retrying once");
                    tokio::time::sleep(jitter()).await;
                    attempt().await
                }
                outcome => outcome,
            }
        };
        let outcome = tokio::time::timeout(self.deadline, attempts)
            .await
            .unwrap_or(Err(UpstreamError::Timeout(self.deadline)));
        let label = match &outcome {
            Ok(_) => "answered",
            // A full or busy store and refused credentials are answers: the backend works (and
            // a full or busy one still serves reads), so none may open the circuit that
            // redirects go through.
            Err(UpstreamError::Full) => "full",
            Err(UpstreamError::Busy(_)) => "busy",
            Err(UpstreamError::Rejected(_)) => "rejected",
            Err(UpstreamError::Failed(_)) => "server_error",
            Err(UpstreamError::Timeout(_)) => "timeout",
            Err(UpstreamError::TooLarge(_)) => "oversized",
            Err(UpstreamError::Malformed(_)) => "malformed",
            Err(UpstreamError::Unreachable(_) | UpstreamError::CircuitOpen(_)) => "unreachable",
        };
        self.calls.with_label_values(&[label]).inc();
        if matches!(label, "answered" | "full" | "busy" | "rejected") {
            permit.succeeded();
        } else {
            permit.failed();
        }
        if let Err(error) = &outcome {
            log::warn!("{what} on {}: {error}", self.attachment);
        }
        outcome
    }
}

/// A pause of 25–75 ms, so retries from many requests do not arrive together.
fn jitter() -> Duration {
    Duration::from_millis(rand::random_range(25..=75))
}
