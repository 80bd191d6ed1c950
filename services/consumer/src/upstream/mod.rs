//! The attached resource: everything the consumer knows about its upstream, and how it talks
//! to it.
//!
//! One [`Upstream`] (one `reqwest::Client`, so one connection pool) serves the whole process.
//! Every call has a connect timeout and a total deadline (`UPSTREAM_TIMEOUT`, covering the retry
//! too). The consumer makes only idempotent calls and increments that carry an
//! `Idempotency-Key`, so each is retried once after a jittered pause when the connection could
//! not be made or was closed before a response came back — the two failures where trying again
//! is both safe and likely to work. A [`Breaker`] fails fast while the upstream is down and
//! probes for its return.
//!
//! Failures are [`UpstreamError`]s, which the API turns into 503 (unreachable, circuit open;
//! with `Retry-After`), 504 (deadline) or 502 (5xx, rejected credentials, malformed reply). The
//! upstream's own bodies are never passed on or logged.

mod attachment;
mod breaker;

use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use attachment::{Attachment, Credentials};
pub use breaker::{Breaker, Circuit};
use shared::config::{ConfigError, DURATION_EXPECTED, Layers, duration, in_range};

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
    /// `http(s)://[user:token@]host:port[/prefix/]`, no query or fragment. `user:token@` is sent
    /// as Basic credentials, a lone `token@` as a Bearer token.
    pub attachment: Attachment,
    /// Longest wait to connect, per attempt. `UPSTREAM_CONNECT_TIMEOUT`, default `1s`; at most
    /// `UPSTREAM_TIMEOUT`.
    pub connect_timeout: Duration,
    /// Deadline for a whole call, retry included. `UPSTREAM_TIMEOUT`, default `2s`.
    pub timeout: Duration,
    /// How long an idle pooled connection is kept. `UPSTREAM_POOL_IDLE_TIMEOUT`, default `4s`:
    /// shorter than the upstream's 5 s keep-alive, so the consumer retires a connection before
    /// the upstream closes it under a request.
    pub pool_idle_timeout: Duration,
    /// Consecutive failed calls that open the circuit. `CIRCUIT_FAILURES`, default 5.
    pub circuit_failures: u32,
    /// How long an open circuit fails fast before one call probes the upstream again.
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

/// The most the consumer reads of any reply: what the largest answer of the contract it uses
/// can take. That is a link document whose 2048-character URL is all four-byte characters,
/// stored percent-encoded (12 bytes each: 24 KiB), with its creation time and id; counters and
/// `/v1/info` are far smaller. A reply announcing more is refused before its body is read, and
/// one that sends more is cut off there, so a backend cannot make the consumer buffer more.
pub const MAX_REPLY_BYTES: usize = 32 * 1024;

const _: () = assert!(crate::links::MAX_URL_LEN * 12 + 1024 <= MAX_REPLY_BYTES);

/// Seconds a client is asked to wait while the upstream's storage is full: long enough not to
/// press on a backend that needs its operator, short enough to notice space coming back.
const FULL_RETRY_AFTER: u64 = 30;

/// The public detail of [`UpstreamError::TooLarge`] (a test holds it to the constant).
const TOO_LARGE: &str = "the upstream store answered more than 32768 bytes";

/// Where a link's document and its click counter live upstream: `links/{code}` and
/// `clicks/{code}`, the key's `/` written as `%2F`. A path parameter must not hold a raw `/`
/// (OpenAPI 3.1, path templating), so this is how the contract lets a client name such a key.
const LINKS: &str = "links%2F";
const CLICKS: &str = "clicks%2F";

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
    #[error("the upstream answered {0}")]
    Failed(StatusCode),
    #[error("the upstream refused the credentials in UPSTREAM_URL ({0})")]
    Rejected(StatusCode),
    #[error("the upstream's answer is not what the v1 contract promises: {0}")]
    Malformed(String),
    #[error("the upstream answered more than {MAX_REPLY_BYTES} bytes")]
    TooLarge,
    #[error("the upstream's storage is full (507)")]
    Full,
}

impl UpstreamError {
    /// The status the consumer answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::Unreachable(_) | UpstreamError::CircuitOpen(_) | UpstreamError::Full => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            UpstreamError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::Failed(_)
            | UpstreamError::Rejected(_)
            | UpstreamError::Malformed(_)
            | UpstreamError::TooLarge => StatusCode::BAD_GATEWAY,
        }
    }

    /// Seconds a client should wait before retrying, for 503s.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            UpstreamError::CircuitOpen(wait) => Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            UpstreamError::Unreachable(_) => Some(1),
            UpstreamError::Full => Some(FULL_RETRY_AFTER),
            _ => None,
        }
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
            UpstreamError::TooLarge => TOO_LARGE,
            UpstreamError::Full => "the upstream store is full; try again later",
        }
    }
}

/// What `/v1/info` tells about the attached instance.
#[derive(Debug, Clone, Deserialize)]
pub struct Info {
    pub instance: String,
}

/// How a create-only write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Yes,
    /// The key exists with another document.
    Taken,
}

/// A complete answer from the upstream.
struct Reply {
    status: StatusCode,
    body: Bytes,
}

/// The connection to the attached resource; one per process.
pub struct Upstream {
    http: reqwest::Client,
    attachment: Attachment,
    breaker: Arc<Breaker>,
    deadline: Duration,
    calls: IntCounterVec,
}

impl Upstream {
    /// Builds the client for `settings` and registers its metrics in `registry`.
    pub fn new(settings: &UpstreamSettings, registry: &Registry) -> prometheus::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            // Retire idle connections before the upstream's keep-alive (5 s) closes them, so a
            // request never lands on a connection the server is closing.
            .pool_idle_timeout(settings.pool_idle_timeout)
            .user_agent(concat!("portbound-consumer/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the HTTP client builds with rustls");
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
            http,
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

    /// `GET /v1/info`.
    pub async fn info(&self) -> Result<Info, UpstreamError> {
        let reply = self
            .call(Method::GET, "v1/info", None, HeaderMap::new())
            .await?;
        expect_status(&reply, &[StatusCode::OK])?;
        parse(&reply)
    }

    /// The link stored under `code`, if any.
    pub async fn link(&self, code: &Code) -> Result<Option<LinkDocument>, UpstreamError> {
        let path = format!("v1/kv/{LINKS}{code}");
        let reply = self
            .call(Method::GET, &path, None, HeaderMap::new())
            .await?;
        match reply.status {
            StatusCode::NOT_FOUND => Ok(None),
            _ => {
                expect_status(&reply, &[StatusCode::OK])?;
                parse(&reply).map(Some)
            }
        }
    }

    /// Stores `document` under `code` unless the code is taken. A create retried after a lost
    /// answer may find its own first attempt; reading the document back tells that apart from a
    /// code taken by someone else.
    pub async fn create_link(
        &self,
        code: &Code,
        document: &LinkDocument,
    ) -> Result<Created, UpstreamError> {
        let path = format!("v1/kv/{LINKS}{code}");
        let body = serde_json::to_vec(document).expect("a link document serializes");
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        let reply = self.call(Method::PUT, &path, Some(body), headers).await?;
        match reply.status {
            StatusCode::CREATED => Ok(Created::Yes),
            StatusCode::PRECONDITION_FAILED => match self.link(code).await? {
                Some(existing) if existing.written_by(document) => Ok(Created::Yes),
                _ => Ok(Created::Taken),
            },
            _ => Err(unexpected(&reply)),
        }
    }

    /// The click counter of `code`.
    pub async fn clicks(&self, code: &Code) -> Result<i64, UpstreamError> {
        #[derive(Deserialize)]
        struct Counter {
            value: i64,
        }
        let path = format!("v1/counters/{CLICKS}{code}");
        let reply = self
            .call(Method::GET, &path, None, HeaderMap::new())
            .await?;
        expect_status(&reply, &[StatusCode::OK])?;
        parse::<Counter>(&reply).map(|counter| counter.value)
    }

    /// Adds `by` clicks to `code`, once per `idempotency_key`.
    pub async fn add_clicks(
        &self,
        code: &str,
        by: u64,
        idempotency_key: &str,
    ) -> Result<(), UpstreamError> {
        let path = format!("v1/counters/{CLICKS}{code}");
        let body = serde_json::to_vec(&serde_json::json!({ "by": by })).expect("JSON");
        let mut headers = HeaderMap::new();
        let key = HeaderValue::from_str(idempotency_key)
            .map_err(|_| UpstreamError::Malformed("unusable idempotency key".to_owned()))?;
        headers.insert("idempotency-key", key);
        let reply = self.call(Method::POST, &path, Some(body), headers).await?;
        expect_status(&reply, &[StatusCode::OK])
    }

    /// One call: breaker, deadline, at most one retry; the whole body is read in the deadline.
    /// Every call the consumer makes may be retried: GETs, the create-only PUT (whose repeat
    /// [`Upstream::create_link`] recognises) and increments carrying an `Idempotency-Key`.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: HeaderMap,
    ) -> Result<Reply, UpstreamError> {
        let permit = self
            .breaker
            .admit(Instant::now())
            .map_err(UpstreamError::CircuitOpen)
            .inspect_err(|_| self.calls.with_label_values(&["circuit_open"]).inc())?;
        let url = self.attachment.endpoint(path);
        let attempts = self.attempts(&method, &url, body, headers);
        let outcome = match tokio::time::timeout(self.deadline, attempts).await {
            Ok(outcome) => outcome,
            Err(_) => Err(UpstreamError::Timeout(self.deadline)),
        };
        let label = match &outcome {
            // A full disk is an answer of the contract: the upstream works and still serves
            // reads, so it must not open the circuit that redirects go through.
            Ok(reply) if reply.status == StatusCode::INSUFFICIENT_STORAGE => "full",
            Ok(reply) if reply.status.is_server_error() => "server_error",
            Ok(_) => "answered",
            Err(UpstreamError::Timeout(_)) => "timeout",
            Err(UpstreamError::TooLarge) => "oversized",
            Err(UpstreamError::Malformed(_)) => "malformed",
            Err(_) => "unreachable",
        };
        self.calls.with_label_values(&[label]).inc();
        if matches!(label, "answered" | "full") {
            permit.succeeded();
        } else {
            permit.failed();
        }
        if let Err(error) = &outcome {
            log::warn!("{method} {url}: {error}");
        }
        outcome
    }

    async fn attempts(
        &self,
        method: &Method,
        url: &Url,
        body: Option<Vec<u8>>,
        headers: HeaderMap,
    ) -> Result<Reply, UpstreamError> {
        let mut tried = false;
        loop {
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(authorization) = self.attachment.authorization() {
                request = request.header(header::AUTHORIZATION, authorization.clone());
            }
            if let Some(id) = shared::request_id::current() {
                request = request.header("x-request-id", id.as_str());
            }
            if let Some(body) = &body {
                request = request
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) if !tried && worth_retrying(&error) => {
                    tried = true;
                    log::info!("{method} {url}: {}; retrying once", error.without_url());
                    tokio::time::sleep(jitter()).await;
                    continue;
                }
                Err(error) if answered_garbage(&error) => {
                    let cause = describe(&error);
                    return Err(UpstreamError::Malformed(format!(
                        "not an HTTP answer: {cause}"
                    )));
                }
                Err(error) => return Err(UpstreamError::Unreachable(describe(&error))),
            };
            let status =
                StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            return Ok(Reply {
                status,
                body: bounded_body(response).await?,
            });
        }
    }
}

/// The body of `response`, at most [`MAX_REPLY_BYTES`]: refused at once when its
/// `Content-Length` says more, cut off as soon as more arrives. Dropping the response unread
/// closes its connection instead of returning it to the pool. A body that breaks off after the
/// upstream began to answer is its failure (502), not a reason to call it again.
async fn bounded_body(mut response: reqwest::Response) -> Result<Bytes, UpstreamError> {
    let announced = response.content_length().unwrap_or(0);
    if announced > MAX_REPLY_BYTES as u64 {
        return Err(UpstreamError::TooLarge);
    }
    let mut body = Vec::with_capacity(announced as usize);
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() > MAX_REPLY_BYTES => {
                return Err(UpstreamError::TooLarge);
            }
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => return Ok(Bytes::from(body)),
            Err(error) => {
                let cause = describe(&error);
                return Err(UpstreamError::Malformed(format!(
                    "the body broke off: {cause}"
                )));
            }
        }
    }
}

/// A pause of 25–75 ms, so retries from many requests do not arrive together.
fn jitter() -> Duration {
    Duration::from_millis(rand::random_range(25..=75))
}

/// Connection refused or not made, or closed before the answer: the request either never
/// reached the upstream or is safe to send again.
fn worth_retrying(error: &reqwest::Error) -> bool {
    if error.is_connect() {
        return true;
    }
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>()
            && (hyper.is_incomplete_message() || hyper.is_canceled())
        {
            return true;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            )
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Whether the upstream answered, but not in HTTP: a status line or headers that do not parse,
/// or a head larger than any answer.
fn answered_garbage(error: &reqwest::Error) -> bool {
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>() {
            return hyper.is_parse() || hyper.is_parse_status();
        }
        source = cause.source();
    }
    false
}

/// The error and its causes in one line, without the URL.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn expect_status(reply: &Reply, expected: &[StatusCode]) -> Result<(), UpstreamError> {
    if expected.contains(&reply.status) {
        Ok(())
    } else {
        Err(unexpected(reply))
    }
}

fn unexpected(reply: &Reply) -> UpstreamError {
    match reply.status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => UpstreamError::Rejected(reply.status),
        StatusCode::INSUFFICIENT_STORAGE => UpstreamError::Full,
        status if status.is_server_error() => UpstreamError::Failed(status),
        status => UpstreamError::Malformed(format!("unexpected status {status}")),
    }
}

fn parse<T: DeserializeOwned>(reply: &Reply) -> Result<T, UpstreamError> {
    serde_json::from_slice(&reply.body)
        .map_err(|error| UpstreamError::Malformed(format!("unreadable body: {error}")))
}
