//! The upstream and the consumer served inside the test's own runtime, on port 0, each
//! upstream with its own database file. Dropping a handle stops its server.

use std::io::{Read, Write};
use std::net::TcpStream;

use reqwest::{Response, StatusCode, redirect};
use serde_json::{Value, json};
use shared::health::Lifecycle;
use tokio::task::JoinHandle;

/// A running upstream. `url` has no trailing `/`; [`Upstream::attach_url`] has one.
pub struct Upstream {
    pub url: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub lifecycle: Lifecycle,
    _dir: tempfile::TempDir,
}

/// An upstream with default settings.
pub async fn upstream() -> Upstream {
    upstream_with(|_| {}).await
}

/// An upstream whose settings `configure` has adjusted.
pub async fn upstream_with(configure: impl FnOnce(&mut upstream::Settings)) -> Upstream {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = upstream::Settings::local(0);
    settings.database_path = dir.path().join("upstream.sqlite3").display().to_string();
    configure(&mut settings);
    let application = upstream::Application::build(settings).expect("the upstream starts");
    let port = application.port();
    let lifecycle = application.lifecycle();
    tokio::spawn(application.run_until_stopped());
    Upstream {
        url: format!("http://127.0.0.1:{port}"),
        port,
        client: reqwest::Client::new(),
        lifecycle,
        _dir: dir,
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.lifecycle.request_stop();
    }
}

impl Upstream {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// The `UPSTREAM_URL` that attaches a consumer to this upstream.
    pub fn attach_url(&self) -> String {
        format!("{}/", self.url)
    }

    pub async fn put_json(&self, key: &str, value: &Value) -> Response {
        self.client
            .put(self.url(&format!("/v1/kv/{key}")))
            .json(value)
            .send()
            .await
            .expect("PUT answered")
    }

    pub async fn get_key(&self, key: &str) -> Response {
        self.client
            .get(self.url(&format!("/v1/kv/{key}")))
            .send()
            .await
            .expect("GET answered")
    }

    pub async fn increment(&self, name: &str, body: Option<Value>, key: Option<&str>) -> Response {
        let mut request = self.client.post(self.url(&format!("/v1/counters/{name}")));
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("POST answered")
    }

    /// The value of counter `name`.
    pub async fn counter(&self, name: &str) -> i64 {
        let response = self
            .client
            .get(self.url(&format!("/v1/counters/{name}")))
            .send()
            .await
            .expect("GET answered");
        let body: Value = response.json().await.unwrap();
        body["value"].as_i64().unwrap()
    }

    /// Sends `request` as written, for what an HTTP client would normalise away (`..`).
    pub fn raw(&self, request: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connects");
        stream.write_all(request.as_bytes()).expect("sends");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("reads");
        answer
    }
}

/// A running consumer; `client` does not follow redirects.
pub struct Consumer {
    pub url: String,
    pub client: reqwest::Client,
    pub lifecycle: Lifecycle,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// A consumer attached to `upstream_url`, with default settings.
pub async fn consumer(upstream_url: &str) -> Consumer {
    consumer_with(upstream_url, |_| {}).await
}

/// A consumer attached to `upstream_url`, whose settings `configure` has adjusted.
pub async fn consumer_with(
    upstream_url: &str,
    configure: impl FnOnce(&mut consumer::Settings),
) -> Consumer {
    let mut settings = consumer::Settings::local(0, upstream_url).expect("a usable UPSTREAM_URL");
    configure(&mut settings);
    let application = consumer::Application::build(settings).expect("the consumer starts");
    let port = application.port();
    let lifecycle = application.lifecycle();
    let task = tokio::spawn(application.run_until_stopped());
    Consumer {
        url: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::builder()
            .redirect(redirect::Policy::none())
            .build()
            .unwrap(),
        lifecycle,
        task: Some(task),
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.lifecycle.request_stop();
    }
}

impl Consumer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
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

    /// How many of its calls to its backend ended with `outcome`
    /// (`consumer_backend_calls_total`).
    pub async fn backend_calls(&self, outcome: &str) -> u64 {
        let text = crate::get_text(&self.client, self.url("/metrics")).await;
        let series = format!(r#"consumer_backend_calls_total{{outcome="{outcome}"}}"#);
        crate::metric(&text, &series).map_or(0, |value| value as u64)
    }

    /// Stops as SIGTERM would, and waits until it has finished (clicks flushed).
    pub async fn stop(&mut self) {
        self.lifecycle.request_stop();
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}
