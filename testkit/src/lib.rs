//! What every portbound test suite uses, written once: `cargo test` in any crate of the
//! workspace reaches for the same helpers, with the same strictness.
//!
//! Dev-only (`publish = false`): the services' integration tests and the end-to-end suite in
//! `tests/` depend on it; no service does.
//!
//! # Layout
//!
//! - [`inprocess`]: the upstream and the consumer built as libraries and served on port 0
//!   inside the test's runtime, each with its own database file: the fast way to test an API.
//! - [`process`]: the real binaries, built once, started on port 0 with a clean environment and
//!   their logs kept; the port is read from the "listening on" line they print. Also the
//!   external-stack mode (`E2E_CONSUMER_URL`, …) of the end-to-end suite.
//! - [`proxy`]: the fault-injecting TCP proxy between a consumer and its upstream, which also
//!   checks every request it passes on against the upstream's contract.
//! - [`contract`]: that check: a request against the upstream's OpenAPI document.
//! - [`kinds`]: a real backing service of each kind, upstream or Redis, for the consumer's
//!   cases that run one body against every kind.
//! - [`core_only`]: a backend that honours only the core of the contract, none of its optional
//!   operations, in front of a real upstream.
//! - [`misbehaving`]: stand-ins for a backend that misbehaves — one that never answers, a port
//!   that refuses connections, a hostile one.
//! - [`browser`]: headless Chromium over WebDriver, for the page.
//! - [`redis`]: a real `redis-server`, for the consumer attached to Redis.
//! - [`postgres`]: a real PostgreSQL server, with a streaming standby where a test wants one.
//! - [`assert_problem`], [`assert_not_allowed`], [`eventually`] and [`within`], [`get_json`],
//!   [`get_text`], [`metric`], [`skipped`] and [`missing`] (here): what every suite does.
//!
//! Ports are never guessed: every server binds port 0 and the test learns the port from it,
//! and a port that must refuse connections is held by a socket that never listens.

// Test support: an unwrap that fails is a failing test, with its message.
#![allow(clippy::unwrap_used)]

pub mod browser;
pub mod contract;
pub mod core_only;
pub mod inprocess;
pub mod kinds;
pub mod misbehaving;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod redis;
pub mod tls;

use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode};
use serde_json::Value;

/// Asserts an RFC 9457 problem: the status, `application/problem+json`, `type` `about:blank`,
/// the status's reason as `title`, and a `request_id` equal to the `X-Request-Id` header.
/// Returns the body.
pub async fn assert_problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "status");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {name} header"))
    };
    assert_eq!(header("content-type"), shared::problem::CONTENT_TYPE);
    let request_id = header("x-request-id");
    let body: Value = response.json().await.expect("a JSON problem body");
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert_eq!(body["type"], "about:blank", "{body}");
    assert_eq!(
        body["title"],
        status.canonical_reason().expect("a known status"),
        "{body}"
    );
    assert_eq!(body["request_id"], request_id.as_str(), "{body}");
    body
}

/// Asserts that `method` on `url` is a 405 problem whose `Allow` header is `allow`.
pub async fn assert_not_allowed(client: &reqwest::Client, method: &str, url: &str, allow: &str) {
    let method = method.parse().expect("an HTTP method");
    let response = client.request(method, url).send().await.expect("answered");
    assert_eq!(response.headers()["allow"], allow, "{url}");
    assert_problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
}

/// `GET url` with `client`, its body read as JSON.
pub async fn get_json(client: &reqwest::Client, url: impl reqwest::IntoUrl) -> Value {
    let response = client.get(url).send().await.expect("GET answered");
    response.json().await.expect("a JSON body")
}

/// `GET url` with `client`, its body as text.
pub async fn get_text(client: &reqwest::Client, url: impl reqwest::IntoUrl) -> String {
    let response = client.get(url).send().await.expect("GET answered");
    response.text().await.expect("a text body")
}

/// The value of `series` (its name and labels as printed) in Prometheus text, if present.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Polls `probe` until it returns true, or panics after `limit` naming `what`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let found = within(limit, async || probe().await.then_some(())).await;
    assert!(found.is_some(), "not within {limit:?}: {what}");
}

/// How often [`within`] asks again.
const POLL: Duration = Duration::from_millis(20);

/// Asks `probe` every 20 ms until it finds something, and returns that; `None` once `limit` has
/// passed. For a wait whose failure must say more than [`eventually`] can (a process's logs, what
/// a page shows), or that keeps what it found.
pub async fn within<T>(limit: Duration, mut probe: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe().await {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Says, where it is seen even when the harness captures output, that `test` did not run and
/// why: for a case that cannot run by design where the suite runs (against an external stack).
pub fn skipped(test: &str, why: &str) {
    use std::io::Write;
    // Straight to stderr: the test harness captures eprintln!, and a skip must be seen.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// For a case that needs what this machine lacks (`why`: what, and how to install it): says
/// SKIPPED, or fails the test when `CI=true`, so that a green CI has run every case.
pub fn missing(test: &str, why: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} cannot run: {why}; with CI=true every case must run"
    );
    skipped(test, why);
}

/// A port of 127.0.0.1 free now, for a server that cannot take port 0 and say which it got
/// (`redis-server`, PostgreSQL).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// `program` on the `PATH`, if it is installed.
pub fn installed(program: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// What a trickling client sends a byte every 100 ms, never finishing it.
#[derive(Debug, Clone, Copy)]
pub enum Trickle {
    /// The request head.
    Head,
    /// The body, after this whole head (which must announce a body longer than it can send).
    Body(&'static str),
}

impl Trickle {
    /// How long the server gives it.
    fn allowed(self) -> Duration {
        match self {
            Trickle::Head => shared::server::REQUEST_HEAD_TIMEOUT,
            Trickle::Body(_) => shared::request_body::REQUEST_BODY_TIMEOUT,
        }
    }
}

/// Opens `count` connections to `port` that each send what `trickle` says a byte every 100 ms;
/// returns once all are connected. Each task ends when the server answers or closes its
/// connection, with the time that took and the beginning of the answer.
pub async fn trickling_clients(
    port: u16,
    count: usize,
    trickle: Trickle,
) -> Vec<tokio::task::JoinHandle<(Duration, String)>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        // Timed from before the connection, not from the task's first turn: the server's
        // clock starts at accept, and the task may first run only after all the others have
        // connected, which made a client look closed early on a loaded machine.
        let started = Instant::now();
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("a trickling client connects");
        clients.push(tokio::spawn(async move {
            let slow: &[u8] = match trickle {
                Trickle::Head => b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Trickle: ",
                Trickle::Body(head) => {
                    stream
                        .write_all(head.as_bytes())
                        .await
                        .expect("the head is sent");
                    b"{\"url\": \""
                }
            };
            let mut ticks = tokio::time::interval(Duration::from_millis(100));
            let mut answer = Vec::new();
            for byte in slow.iter().chain(std::iter::repeat(&b'x')) {
                ticks.tick().await;
                // The server's answer (408) or close ends it. It is read before the next byte
                // is written: a byte sent to a closed connection draws a reset, which would
                // discard the answer unread.
                let mut buffer = [0; 512];
                match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buffer)).await
                {
                    Ok(Ok(0) | Err(_)) => break,
                    Ok(Ok(n)) => {
                        answer.extend_from_slice(&buffer[..n]);
                        // The rest of the answer, if it came in pieces.
                        let rest = tokio::time::timeout(
                            Duration::from_millis(200),
                            stream.read(&mut buffer),
                        );
                        if let Ok(Ok(n)) = rest.await {
                            answer.extend_from_slice(&buffer[..n]);
                        }
                        break;
                    }
                    Err(_) => {}
                }
                if stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
            }
            (
                started.elapsed(),
                String::from_utf8_lossy(&answer).into_owned(),
            )
        }));
    }
    clients
}

/// Asserts what a service owes clients that trickle a request's head or body: 200 of them do
/// not keep it from answering `/livez` to others at once, and each is answered `408` once its
/// time ([`shared::server::REQUEST_HEAD_TIMEOUT`] for a head,
/// [`shared::request_body::REQUEST_BODY_TIMEOUT`] for a body) has passed, with a margin for a
/// loaded machine; a body's `408` is a problem.
pub async fn assert_serves_beside_trickling_clients(url: &str, port: u16, trickle: Trickle) {
    let tricklers = trickling_clients(port, 200, trickle).await;
    let client = reqwest::Client::new();
    for _ in 0..10 {
        let started = Instant::now();
        let live = client
            .get(format!("{url}/livez"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("answered beside the trickling clients");
        assert_eq!(live.status(), StatusCode::OK);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "answered after {took:?}");
    }
    let allowed = trickle.allowed();
    for trickler in tricklers {
        let (held, answer) = tokio::time::timeout(allowed + Duration::from_secs(3), trickler)
            .await
            .expect("the service closes a trickling client")
            .unwrap();
        assert!(
            held >= allowed - Duration::from_millis(200),
            "closed after {held:?}"
        );
        assert!(answer.starts_with("HTTP/1.1 408"), "answered {answer:?}");
        if let Trickle::Body(_) = trickle {
            assert!(
                answer.contains("application/problem+json"),
                "answered {answer:?}"
            );
        }
    }
}
