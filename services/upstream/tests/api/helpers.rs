//! `spawn_app()` and the typed helpers the API tests share.

use std::io::{Read, Write};
use std::net::TcpStream;

use reqwest::{Response, StatusCode};
use serde_json::Value;
use shared::health::Lifecycle;
use upstream::{Application, Settings};

/// A running upstream on an ephemeral port, with its own database.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub lifecycle: Lifecycle,
    _dir: tempfile::TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts an upstream after `configure` has adjusted its settings.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut settings = Settings::local(0);
    settings.database_path = dir.path().join("upstream.sqlite3").display().to_string();
    configure(&mut settings);
    let application = Application::build(settings).expect("the upstream starts");
    let port = application.port();
    let lifecycle = application.lifecycle();
    tokio::spawn(application.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        client: reqwest::Client::new(),
        lifecycle,
        _dir: dir,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.lifecycle.request_stop();
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
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

    /// Sends `request` as written, for what an HTTP client would normalise away (`..`).
    pub fn raw(&self, request: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connects");
        stream.write_all(request.as_bytes()).expect("sends");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("reads");
        answer
    }
}

/// Asserts an RFC 9457 problem with `status`, and returns its body.
pub async fn assert_problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "status");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.expect("a JSON problem");
    assert_eq!(body["status"], status.as_u16());
    assert_eq!(body["type"], "about:blank");
    assert_eq!(body["title"], status.canonical_reason().unwrap());
    assert_eq!(body["request_id"], request_id.as_str());
    body
}

pub fn etag(response: &Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_owned()
}
