//! The attached resource: everything the consumer knows about its backing service, and how it
//! talks to it, whatever kind it is.
//!
//! - [`attachment`]: `UPSTREAM_URL`, whose scheme chooses the kind — read there, once.
//! - [`store`]: the [`Store`] interface, what the consumer needs from any backing service.
//! - [`BackendStatus`]: how the attached backend is doing, for `/api/status` and the page.
//! - [`http`], [`redis`] and [`postgres`]: one adapter per kind; [`Backend::new`] is the one place that
//!   picks between them.
//! - [`coalescer`]: lookups coalesced into calls of many, above whichever adapter is attached.
//! - [`tls`]: the verified TLS every kind speaks (`UPSTREAM_CA_FILE`, a client certificate), and
//!   a certificate that does not verify told apart from other failures.
//! - [`Backend`] (here): the same resilience around any adapter, written once. Every call has
//!   a total deadline (`UPSTREAM_TIMEOUT`, covering the retry too). Every call is safe to repeat
//!   (reads, create-only writes whose repeat is recognised, increments with an idempotency
//!   key), so one that failed before reaching the backend or lost its answer is tried once more
//!   after a jittered pause. A [`Breaker`] fails fast while the backend is down and probes for
//!   its return. Lookups of links go through a [`coalescer::Coalescer`]: those that arrive
//!   while the backend is busy go together in the next call, which is one call for the
//!   deadline, the retry and the breaker.
//!
//! Failures are [`BackendError`]s, the same for every kind, which the HTTP layer
//! ([`crate::http_error`]) turns into 503 (unreachable, circuit open, busy, full; with
//! `Retry-After`), 504 (deadline) or 502 (failed, rejected credentials, a certificate that does
//! not verify, malformed reply). The
//! backend's own answers are never passed on or logged.

pub mod attachment;
mod breaker;
pub mod coalescer;
pub mod http;
pub mod postgres;
pub mod redis;
mod status;
pub mod store;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};
use serde::Deserialize;

pub use attachment::{Attachment, Credentials};
pub use breaker::{Breaker, Circuit, FIRST_COOLDOWN};
use coalescer::{Coalescer, Fetch};
pub use http::MAX_REPLY_BYTES;
use shared::config::{ConfigError, DURATION_EXPECTED, Layers, duration};
pub use status::{BackendStatus, STATUS_WAIT};
use store::{Attempt, Store};
pub use tls::TlsSettings;

use crate::links::{Code, LinkDocument};

/// The attached resource and how it is called.
#[derive(Debug, Clone)]
pub struct BackendSettings {
    /// `UPSTREAM_URL`, default `http://127.0.0.1:8081/`:
    /// `http(s)://[user:token@]host:port[/prefix/]`, no query or fragment (`user:token@` is sent
    /// as Basic credentials, a lone `token@` as a Bearer token);
    /// `redis(s)://[user][:password]@host[:port][/db]`; or
    /// `postgres(ql)://user:password@host[:port][,host…]/dbname[?…]`.
    pub attachment: Attachment,
    /// Longest wait to connect, per attempt. `UPSTREAM_CONNECT_TIMEOUT`, default `1s`; at most
    /// `UPSTREAM_TIMEOUT`.
    pub connect_timeout: Duration,
    /// Deadline for a whole call, retry included. `UPSTREAM_TIMEOUT`, default `2s`.
    pub timeout: Duration,
    /// How long an idle pooled HTTP connection is kept. `UPSTREAM_POOL_IDLE_TIMEOUT`, default
    /// `4s`: shorter than the backend's 5 s keep-alive, so the consumer retires a connection before
    /// the backend closes it under a request.
    pub pool_idle_timeout: Duration,
    /// Consecutive failed calls that open the circuit. `CIRCUIT_FAILURES`, default 5.
    pub circuit_failures: u32,
    /// The longest an open circuit fails fast before one call probes the backend again; the
    /// first wait is [`FIRST_COOLDOWN`] and grows with each failed probe up to this.
    /// `CIRCUIT_COOLDOWN`, default `5s`.
    pub circuit_cooldown: Duration,
    /// What TLS trusts and presents: `UPSTREAM_CA_FILE` (default unset: the public roots),
    /// `UPSTREAM_CLIENT_CERT_FILE` and `UPSTREAM_CLIENT_KEY_FILE` (default unset: none).
    pub tls: TlsSettings,
}

impl BackendSettings {
    pub fn from_layers(layers: &Layers) -> Result<Self, ConfigError> {
        let settings = BackendSettings {
            attachment: layers.parse_explained(
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
            circuit_failures: layers.parse_in_range::<u32>(
                "CIRCUIT_FAILURES",
                5,
                "a number of failures",
                1..=1000,
            )?,
            circuit_cooldown: layers.parse(
                "CIRCUIT_COOLDOWN",
                "5s",
                DURATION_EXPECTED,
                duration,
            )?,
            tls: TlsSettings::from_layers(layers)?,
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

/// Seconds a client is asked to wait while the backend's storage is full: long enough not to
/// press on a backend that needs its operator, short enough to notice space coming back.
const FULL_RETRY_AFTER: u64 = 30;

/// The longest wait a busy backend's `Retry-After` is passed on with: the consumer does not
/// send its clients away for longer on a backend's word.
const MAX_BUSY_RETRY_AFTER: u64 = 60;

/// Why a call to the backend did not give an answer the consumer can use. The messages are for
/// logs: they never contain credentials or the backend's bodies.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("the backend is unreachable: {0}")]
    Unreachable(String),
    #[error("the circuit is open: failing fast for {0:?}")]
    CircuitOpen(Duration),
    #[error("the backend did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the backend failed: {0}")]
    Failed(String),
    #[error("the backend refused the credentials in UPSTREAM_URL: {0}")]
    Rejected(String),
    /// Its TLS certificate did not verify; the reason in words ([`tls::untrusted`]).
    #[error("{0}")]
    Untrusted(String),
    #[error("the backend's answer is not what it promises: {0}")]
    Malformed(String),
    /// It answered more than this many bytes (`MAX_REPLY_BYTES`, or a click batch's bound).
    #[error("the backend answered more than {0} bytes")]
    TooLarge(usize),
    #[error("the backend's storage is full")]
    Full,
    /// It answered 503, asking to be called again in this many seconds.
    #[error("the backend is busy: it answered 503, retry after {0} s")]
    Busy(u64),
}

impl BackendError {
    /// Seconds a client should wait before retrying, for 503s.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            BackendError::CircuitOpen(wait) => Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            BackendError::Unreachable(_) => Some(1),
            BackendError::Full => Some(FULL_RETRY_AFTER),
            BackendError::Busy(seconds) => Some((*seconds).clamp(1, MAX_BUSY_RETRY_AFTER)),
            _ => None,
        }
    }

    /// Whether the call may not have reached the backend, or its answer was lost: the one
    /// failure worth trying again at once.
    pub fn worth_retrying(&self) -> bool {
        matches!(self, BackendError::Unreachable(_))
    }

    /// What the client is told: which kind of failure, nothing internal.
    pub fn public_detail(&self) -> String {
        let detail = match self {
            BackendError::Unreachable(_) => "the backend is unreachable",
            BackendError::CircuitOpen(_) => {
                "the backend is failing; not calling it until it recovers"
            }
            BackendError::Timeout(_) => "the backend did not answer in time",
            BackendError::Failed(_) => "the backend failed",
            BackendError::Rejected(_) => "the backend refused this service's credentials",
            BackendError::Untrusted(_) => "the backend's TLS certificate did not verify",
            BackendError::Malformed(_) => "the backend answered something unexpected",
            BackendError::TooLarge(limit) => {
                return format!("the backend answered more than {limit} bytes");
            }
            BackendError::Full => "the backend is full; try again later",
            BackendError::Busy(_) => "the backend is busy; try again shortly",
        };
        detail.to_owned()
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

/// How many lookup calls may be in flight at once; lookups that arrive while they all are
/// wait, and go together in the next free one.
const LOOKUP_CALLS: usize = 4;

/// The attached backing service behind deadlines, one retry and a circuit breaker, its lookups
/// coalesced; one per process.
pub struct Backend {
    caller: Arc<Caller>,
    lookups: Arc<Coalescer>,
}

/// The adapter behind the deadline, the retry and the breaker.
struct Caller {
    store: Box<dyn Store>,
    attachment: Attachment,
    breaker: Arc<Breaker>,
    deadline: Duration,
    calls: IntCounterVec,
    /// The last certificate failure logged, so that each is logged once.
    untrusted: std::sync::Mutex<Option<String>>,
}

impl Backend {
    /// Attaches the adapter for the kind `settings` names, and registers the metrics in
    /// `registry`. Nothing is called yet: the backend need not be up.
    pub fn new(settings: &BackendSettings, registry: &Registry) -> prometheus::Result<Self> {
        let store: Box<dyn Store> = match &settings.attachment {
            Attachment::Http(attachment) => {
                Box::new(http::HttpStore::new(attachment.clone(), settings))
            }
            Attachment::Redis(attachment) => Box::new(redis::RedisStore::new(attachment, settings)),
            Attachment::Postgres(attachment) => {
                Box::new(postgres::PostgresStore::new(attachment, settings))
            }
        };
        let circuit = IntGauge::new(
            "consumer_backend_circuit",
            "State of the backend circuit breaker: 0 closed, 1 half-open, 2 open",
        )?;
        let calls = IntCounterVec::new(
            Opts::new(
                "consumer_backend_calls_total",
                "Calls to the backend by outcome",
            ),
            &["outcome"],
        )?;
        let lookups_per_call = Histogram::with_opts(
            HistogramOpts::new(
                "consumer_backend_lookups_per_call",
                "Lookups answered by each lookup call to the backend",
            )
            .buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1000.0,
            ]),
        )?;
        registry.register(Box::new(circuit.clone()))?;
        registry.register(Box::new(calls.clone()))?;
        registry.register(Box::new(lookups_per_call.clone()))?;
        let breaker = Breaker::new(
            settings.circuit_failures,
            settings.circuit_cooldown,
            move |state| {
                log::warn!("backend circuit is now {}", state.as_str());
                circuit.set(match state {
                    Circuit::Closed => 0,
                    Circuit::HalfOpen => 1,
                    Circuit::Open => 2,
                });
            },
        );
        let caller = Arc::new(Caller {
            store,
            attachment: settings.attachment.clone(),
            breaker,
            deadline: settings.timeout,
            calls,
            untrusted: std::sync::Mutex::new(None),
        });
        let fetching = caller.clone();
        let fetch: Fetch = Arc::new(move |codes: Vec<Code>, deadline| {
            let caller = fetching.clone();
            Box::pin(async move {
                caller
                    .call_by(deadline, "lookup", || caller.store.links(&codes))
                    .await
            })
        });
        let lookups = Arc::new(Coalescer::new(
            fetch,
            LOOKUP_CALLS,
            settings.timeout,
            move |codes| lookups_per_call.observe(codes as f64),
        ));
        Ok(Backend { caller, lookups })
    }

    pub fn attachment(&self) -> &Attachment {
        &self.caller.attachment
    }

    pub fn circuit(&self) -> Circuit {
        self.caller.breaker.circuit()
    }

    /// Who answers.
    pub async fn info(&self) -> Result<Info, BackendError> {
        self.caller.call("info", || self.caller.store.info()).await
    }

    /// The link stored under `code`, if any, looked up together with whatever other lookups
    /// are waiting, within the deadline (`UPSTREAM_TIMEOUT`) from now.
    pub async fn link(&self, code: &Code) -> Result<Option<LinkDocument>, BackendError> {
        self.lookups.lookup(code.clone()).await
    }

    /// Stores `document` under `code` unless the code is taken. A create retried after a lost
    /// answer may find its own first attempt; reading the document back tells that apart from a
    /// code taken by someone else.
    pub async fn create_link(
        &self,
        code: &Code,
        document: &LinkDocument,
    ) -> Result<Created, BackendError> {
        match self
            .caller
            .call("create", || self.caller.store.create_link(code, document))
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
    pub async fn clicks(&self, code: &Code) -> Result<i64, BackendError> {
        self.caller
            .call("clicks", || self.caller.store.clicks(code))
            .await
    }

    /// Adds each `(code, clicks)` of `batch` (at most [`store::MAX_BATCH_CODES`]), once per
    /// `idempotency_key`.
    pub async fn add_clicks(
        &self,
        batch: &[(String, u64)],
        idempotency_key: &str,
    ) -> Result<(), BackendError> {
        self.caller
            .call("add clicks", || {
                self.caller.store.add_clicks(batch, idempotency_key)
            })
            .await
    }
}

impl Caller {
    /// One call through the breaker, within the deadline from now, tried at most twice.
    async fn call<'a, T>(
        &'a self,
        what: &str,
        attempt: impl Fn() -> Attempt<'a, T>,
    ) -> Result<T, BackendError> {
        let deadline = tokio::time::Instant::now() + self.deadline;
        self.call_by(deadline, what, attempt).await
    }

    /// One call through the breaker, ended by `deadline`, tried at most twice.
    async fn call_by<'a, T>(
        &'a self,
        deadline: tokio::time::Instant,
        what: &str,
        attempt: impl Fn() -> Attempt<'a, T>,
    ) -> Result<T, BackendError> {
        let permit = self
            .breaker
            .admit()
            .map_err(BackendError::CircuitOpen)
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
        let outcome = tokio::time::timeout_at(deadline, attempts)
            .await
            .unwrap_or(Err(BackendError::Timeout(self.deadline)));
        let label = match &outcome {
            Ok(_) => "answered",
            // A full or busy store, refused credentials and a certificate that does not verify
            // are answers: the backend is there (and a full or busy one still serves reads), so
            // none may open the circuit that redirects go through.
            Err(BackendError::Full) => "full",
            Err(BackendError::Busy(_)) => "busy",
            Err(BackendError::Rejected(_)) => "rejected",
            Err(BackendError::Untrusted(_)) => "untrusted",
            Err(BackendError::Failed(_)) => "server_error",
            Err(BackendError::Timeout(_)) => "timeout",
            Err(BackendError::TooLarge(_)) => "oversized",
            Err(BackendError::Malformed(_)) => "malformed",
            Err(BackendError::Unreachable(_) | BackendError::CircuitOpen(_)) => "unreachable",
        };
        self.calls.with_label_values(&[label]).inc();
        if matches!(
            label,
            "answered" | "full" | "busy" | "rejected" | "untrusted"
        ) {
            permit.succeeded();
        } else {
            permit.failed();
        }
        match &outcome {
            Err(BackendError::Untrusted(reason)) => self.log_untrusted(reason),
            Err(error) => log::warn!("{what} on {}: {error}", self.attachment),
            Ok(_) => {}
        }
        outcome
    }

    /// Logs a certificate failure the first time it is seen (and again when the reason
    /// changes): every call fails the same way until the certificate or the trust changes.
    fn log_untrusted(&self, reason: &str) {
        let mut last = self.untrusted.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_deref() != Some(reason) {
            log::error!(
                "{reason}: refusing to talk to {} (UPSTREAM_CA_FILE names what is trusted)",
                self.attachment
            );
            *last = Some(reason.to_owned());
        }
    }
}

/// `error` and its causes in one line, for the log.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A pause of 25–75 ms, so retries from many requests do not arrive together.
fn jitter() -> Duration {
    Duration::from_millis(rand::random_range(25..=75))
}
