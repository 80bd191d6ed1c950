//! `spawn_upstream()`, `spawn_consumer()` and the typed helpers the tests share.

use std::time::{Duration, Instant};

use consumer::Settings;
use reqwest::{Response, StatusCode, redirect};
use serde_json::{Value, json};
use shared::health::Lifecycle;
use tokio::task::JoinHandle;

/// A running upstream with its own database file.
pub struct TestUpstream {
    pub url: String,
    pub port: u16,
    pub lifecycle: Lifecycle,
    _dir: tempfile::TempDir,
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.lifecycle.request_stop();
    }
}

pub async fn spawn_upstream() -> TestUpstream {
    spawn_upstream_with(|_| {}).await
}

pub async fn spawn_upstream_with(configure: impl FnOnce(&mut upstream::Settings)) -> TestUpstream {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = upstream::Settings::local(0);
    settings.database_path = dir.path().join("upstream.sqlite3").display().to_string();
    configure(&mut settings);
    let application = upstream::Application::build(settings).unwrap();
    let port = application.port();
    let lifecycle = application.lifecycle();
    tokio::spawn(application.run_until_stopped());
    TestUpstream {
        url: format!("http://127.0.0.1:{port}/"),
        port,
        lifecycle,
        _dir: dir,
    }
}

impl TestUpstream {
    /// The click counter of `code`, read directly from the upstream.
    pub async fn clicks(&self, code: &str) -> i64 {
        let url = format!("{}v1/counters/clicks/{code}", self.url);
        let body: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        body["value"].as_i64().unwrap()
    }
}

/// A running consumer; `client` does not follow redirects.
pub struct TestConsumer {
    pub address: String,
    pub client: reqwest::Client,
    pub lifecycle: Lifecycle,
    pub task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Drop for TestConsumer {
    fn drop(&mut self) {
        self.lifecycle.request_stop();
    }
}

pub async fn spawn_consumer(upstream_url: &str) -> TestConsumer {
    spawn_consumer_with(upstream_url, |_| {}).await
}

pub async fn spawn_consumer_with(
    upstream_url: &str,
    configure: impl FnOnce(&mut Settings),
) -> TestConsumer {
    let mut settings = Settings::local(0, upstream_url).unwrap();
    configure(&mut settings);
    let application = consumer::Application::build(settings).unwrap();
    let port = application.port();
    let lifecycle = application.lifecycle();
    let task = tokio::spawn(application.run_until_stopped());
    TestConsumer {
        address: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::builder()
            .redirect(redirect::Policy::none())
            .build()
            .unwrap(),
        lifecycle,
        task: Some(task),
    }
}

impl TestConsumer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn shorten(&self, body: Value) -> Response {
        self.client
            .post(self.url("/api/links"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Shortens `url` and returns the new code.
    pub async fn shorten_ok(&self, url: &str) -> String {
        let response = self.shorten(json!({ "url": url })).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        body["code"].as_str().unwrap().to_owned()
    }

    /// `GET path`, parsed as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        response.json().await.unwrap()
    }

    pub async fn follow(&self, code: &str) -> Response {
        self.client
            .get(self.url(&format!("/{code}")))
            .send()
            .await
            .unwrap()
    }

    /// Stops as SIGTERM would, and waits until it has finished (clicks flushed).
    pub async fn stop(&mut self) {
        self.lifecycle.request_stop();
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

/// Asserts an RFC 9457 problem with `status`, and returns its body.
pub async fn assert_problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "status");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(body["request_id"].is_string());
    body
}

/// Polls `probe` until it returns true, or panics after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !probe().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An upstream that accepts connections and reads requests but never answers; it lives as long
/// as the returned task. Returns its port.
pub async fn never_answering() -> (u16, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (port, task)
}

/// A port that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
