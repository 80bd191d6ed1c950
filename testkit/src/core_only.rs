//! A backend that honours only the core of the upstream's contract, as a third party's may: a
//! real upstream behind a front that answers `404` to the optional operations
//! (`POST /v1/kv:batchGet`, `POST /v1/counters`) and, as [`Lists`] says, lists none of them in
//! `/v1/info` or (a backend swapped behind the same URL, say) lists them all the same.
//! Everything else passes through unchanged. The front records each request it takes
//! (`METHOD /path`), so a test can see what the consumer sent instead.

use std::sync::{Arc, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::http::{Method, StatusCode};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::Value;

/// The optional operations of the contract, as `METHOD /path`.
const OPTIONAL: [&str; 2] = ["POST /v1/kv:batchGet", "POST /v1/counters"];

/// What the front's `/v1/info` says of the optional operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lists {
    /// None: the field is left out, as a backend written before it would.
    Nothing,
    /// What the upstream lists, though the front serves none of it.
    WhatItDoesNotServe,
}

/// A running front; dropping it stops it.
pub struct CoreOnly {
    /// Its address, to attach a consumer to (`UPSTREAM_URL`), with the trailing `/`.
    pub url: String,
    seen: Arc<Mutex<Vec<String>>>,
    server: ServerHandle,
}

struct Front {
    /// The upstream's address, without the trailing `/`.
    target: String,
    client: reqwest::Client,
    seen: Arc<Mutex<Vec<String>>>,
    lists: Lists,
}

/// A core-only front for the upstream at `target` (its URL without the trailing `/`).
pub async fn core_only(target: &str, lists: Lists) -> CoreOnly {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let front = web::Data::new(Front {
        target: target.to_owned(),
        client: reqwest::Client::new(),
        seen: seen.clone(),
        lists,
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(front.clone())
            .default_service(web::to(forward))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    CoreOnly {
        url: format!("http://127.0.0.1:{port}/"),
        seen,
        server: handle,
    }
}

impl CoreOnly {
    /// Every request taken so far, as `METHOD /path` (the path as sent, still encoded).
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for CoreOnly {
    fn drop(&mut self) {
        drop(self.server.stop(false));
    }
}

async fn forward(req: HttpRequest, body: web::Bytes, front: web::Data<Front>) -> HttpResponse {
    let line = format!("{} {}", req.method(), req.uri().path());
    front.seen.lock().unwrap().push(line.clone());
    if OPTIONAL.contains(&line.as_str()) {
        return HttpResponse::NotFound()
            .content_type("application/problem+json")
            .body(r#"{"type":"about:blank","title":"Not Found","status":404}"#);
    }
    let path = req.uri().path_and_query().map_or("/", |path| path.as_str());
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap();
    let mut request = front
        .client
        .request(method, format!("{}{path}", front.target))
        .body(body.to_vec());
    for (name, value) in req.headers() {
        if name != "host" && name != "content-length" {
            request = request.header(name.as_str(), value.as_bytes());
        }
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(_) => return HttpResponse::BadGateway().finish(),
    };
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let headers: Vec<(String, Vec<u8>)> = response
        .headers()
        .iter()
        .filter(|(name, _)| *name != "content-length" && *name != "transfer-encoding")
        .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
        .collect();
    let mut body = response.bytes().await.unwrap_or_default().to_vec();
    let info = req.method() == Method::GET && req.uri().path() == "/v1/info";
    if info && status == StatusCode::OK && front.lists == Lists::Nothing {
        let mut info: Value = serde_json::from_slice(&body).unwrap();
        info.as_object_mut().unwrap().remove("operations");
        body = serde_json::to_vec(&info).unwrap();
    }
    let mut answer = HttpResponse::build(status);
    for (name, value) in headers {
        answer.insert_header((name, value));
    }
    answer.body(body)
}
