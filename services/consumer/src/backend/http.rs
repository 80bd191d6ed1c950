//! The HTTP adapter: the consumer's state in portbound's upstream, or in any backend that
//! honours its v1 contract (`links/{code}` documents, `clicks/{code}` counters, added to in
//! batches by `POST /v1/counters`).
//!
//! One `reqwest::Client` (so one connection pool) for the process, with a connect timeout and
//! pooled connections retired before the backend's keep-alive closes them. No reply is read
//! beyond [`MAX_REPLY_BYTES`], and none of the backend's bodies is passed on or logged.

use std::error::Error as _;

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::attachment::HttpAttachment;
use super::store::{Attempt, MAX_BATCH_CODES, Store};
use super::{BackendError, BackendSettings, Created, Info};
use crate::links::{Code, LinkDocument, MAX_CODE_LEN, MAX_URL_LEN};

/// The most the consumer reads of any reply: what the largest answer of the contract it uses
/// can take. That is a link document whose URL of [`MAX_URL_LEN`] characters is all four-byte
/// characters, stored percent-encoded (12 bytes each), with its creation time and id; counters
/// and `/v1/info` are far smaller. A reply announcing more is refused before its body is read, and
/// one that sends more is cut off there, so a backend cannot make the consumer buffer more.
pub const MAX_REPLY_BYTES: usize = 32 * 1024;

const _: () = assert!(MAX_URL_LEN * 12 + 1024 <= MAX_REPLY_BYTES);

/// The longest counter in a click batch's reply: `{"name":"clicks/…","value":…},` with a code
/// of [`MAX_CODE_LEN`] characters and a value of 20 digits.
const MAX_COUNTER_REPLY_BYTES: usize =
    r#"{"name":"clicks/"#.len() + MAX_CODE_LEN + r#"","value":"#.len() + 20 + "},".len();

/// The most the consumer reads of a click batch's reply: [`MAX_BATCH_CODES`] of the longest
/// counters, plus 1 KiB for the rest.
pub const MAX_BATCH_REPLY_BYTES: usize = MAX_BATCH_CODES * MAX_COUNTER_REPLY_BYTES + 1024;

/// Where a link's document and its click counter live in the backend: `links/{code}` and
/// `clicks/{code}`, the key's `/` written as `%2F`. A path parameter must not hold a raw `/`
/// (OpenAPI 3.1, path templating), so this is how the contract lets a client name such a key.
const LINKS: &str = "links%2F";
const CLICKS: &str = "clicks%2F";

/// A complete answer from the backend.
struct Reply {
    status: StatusCode,
    body: Vec<u8>,
    /// The backend's `Retry-After` in seconds, where it sent one.
    retry_after: Option<u64>,
}

/// The upstream's v1 contract over HTTP.
pub struct HttpStore {
    http: reqwest::Client,
    attachment: HttpAttachment,
}

impl HttpStore {
    pub fn new(attachment: HttpAttachment, settings: &BackendSettings) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            // Retire idle connections before the backend's keep-alive (5 s) closes them, so a
            // request never lands on a connection the server is closing.
            .pool_idle_timeout(settings.pool_idle_timeout)
            .user_agent(concat!("portbound-consumer/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the HTTP client builds with rustls");
        HttpStore { http, attachment }
    }

    /// One request, its whole body read, up to `reply_limit` bytes.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: HeaderMap,
        reply_limit: usize,
    ) -> Result<Reply, BackendError> {
        let url = self.attachment.endpoint(path);
        let mut request = self.http.request(method, url).headers(headers);
        if let Some(authorization) = self.attachment.authorization() {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        if let Some(id) = shared::request_id::current() {
            request = request.header("x-request-id", id.as_str());
        }
        if let Some(body) = body {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) if answered_garbage(&error) => {
                let cause = describe(&error);
                return Err(BackendError::Malformed(format!(
                    "not an HTTP answer: {cause}"
                )));
            }
            // Not sent, or its answer lost: safe to send again.
            Err(error) => return Err(BackendError::Unreachable(describe(&error))),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok()?.trim().parse().ok());
        Ok(Reply {
            status,
            retry_after,
            body: bounded_body(response, reply_limit).await?,
        })
    }

    async fn get(&self, path: &str) -> Result<Reply, BackendError> {
        self.call(Method::GET, path, None, HeaderMap::new(), MAX_REPLY_BYTES)
            .await
    }
}

impl Store for HttpStore {
    fn info(&self) -> Attempt<'_, Info> {
        Box::pin(async move {
            let reply = self.get("v1/info").await?;
            expect_status(&reply, &[StatusCode::OK])?;
            parse(&reply)
        })
    }

    fn link<'a>(&'a self, code: &'a Code) -> Attempt<'a, Option<LinkDocument>> {
        Box::pin(async move {
            let reply = self.get(&format!("v1/kv/{LINKS}{code}")).await?;
            match reply.status {
                StatusCode::NOT_FOUND => Ok(None),
                _ => {
                    expect_status(&reply, &[StatusCode::OK])?;
                    parse(&reply).map(Some)
                }
            }
        })
    }

    fn create_link<'a>(
        &'a self,
        code: &'a Code,
        document: &'a LinkDocument,
    ) -> Attempt<'a, Created> {
        Box::pin(async move {
            let path = format!("v1/kv/{LINKS}{code}");
            let body = serde_json::to_vec(document).expect("a link document serializes");
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
            let reply = self
                .call(Method::PUT, &path, Some(body), headers, MAX_REPLY_BYTES)
                .await?;
            match reply.status {
                StatusCode::CREATED => Ok(Created::Yes),
                StatusCode::PRECONDITION_FAILED => Ok(Created::Taken),
                _ => Err(unexpected(&reply)),
            }
        })
    }

    fn clicks<'a>(&'a self, code: &'a Code) -> Attempt<'a, i64> {
        #[derive(Deserialize)]
        struct Counter {
            value: i64,
        }
        Box::pin(async move {
            let reply = self.get(&format!("v1/counters/{CLICKS}{code}")).await?;
            expect_status(&reply, &[StatusCode::OK])?;
            parse::<Counter>(&reply).map(|counter| counter.value)
        })
    }

    fn add_clicks<'a>(
        &'a self,
        batch: &'a [(String, u64)],
        idempotency_key: &'a str,
    ) -> Attempt<'a, ()> {
        #[derive(Serialize)]
        struct Increment<'a> {
            name: String,
            by: &'a u64,
        }
        #[derive(Serialize)]
        struct Increments<'a> {
            increments: Vec<Increment<'a>>,
        }
        Box::pin(async move {
            let increments: Vec<Increment> = batch
                .iter()
                .map(|(code, by)| Increment {
                    name: format!("clicks/{code}"),
                    by,
                })
                .collect();
            let body = serde_json::to_vec(&Increments { increments }).expect("JSON");
            let mut headers = HeaderMap::new();
            let key = HeaderValue::from_str(idempotency_key)
                .map_err(|_| BackendError::Malformed("unusable idempotency key".to_owned()))?;
            headers.insert("idempotency-key", key);
            let reply = self
                .call(
                    Method::POST,
                    "v1/counters",
                    Some(body),
                    headers,
                    MAX_BATCH_REPLY_BYTES,
                )
                .await?;
            expect_status(&reply, &[StatusCode::OK])
        })
    }
}

/// The body of `response`, at most `limit` bytes: refused at once when its `Content-Length`
/// says more, cut off as soon as more arrives. Dropping the response unread
/// closes its connection instead of returning it to the pool. A body that breaks off after the
/// backend began to answer is its failure (502), not a reason to call it again.
async fn bounded_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BackendError> {
    let announced = response.content_length().unwrap_or(0);
    if announced > limit as u64 {
        return Err(BackendError::TooLarge(limit));
    }
    let mut body = Vec::with_capacity(announced as usize);
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() > limit => {
                return Err(BackendError::TooLarge(limit));
            }
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => return Ok(body),
            Err(error) => {
                let cause = describe(&error);
                return Err(BackendError::Malformed(format!(
                    "the body broke off: {cause}"
                )));
            }
        }
    }
}

/// Whether the backend answered, but not in HTTP: a status line or headers that do not parse,
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

/// The error and its causes in one line, without the URL (reqwest leaves it out of these).
fn describe(error: &reqwest::Error) -> String {
    super::with_causes(error)
}

fn expect_status(reply: &Reply, expected: &[StatusCode]) -> Result<(), BackendError> {
    if expected.contains(&reply.status) {
        Ok(())
    } else {
        Err(unexpected(reply))
    }
}

fn unexpected(reply: &Reply) -> BackendError {
    match reply.status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            BackendError::Rejected(format!("it answered {}", reply.status))
        }
        StatusCode::INSUFFICIENT_STORAGE => BackendError::Full,
        // Shedding writes (or shutting down): an answer that asks to come back later.
        StatusCode::SERVICE_UNAVAILABLE => BackendError::Busy(reply.retry_after.unwrap_or(1)),
        status if status.is_server_error() => BackendError::Failed(format!("it answered {status}")),
        status => BackendError::Malformed(format!("unexpected status {status}")),
    }
}

fn parse<T: DeserializeOwned>(reply: &Reply) -> Result<T, BackendError> {
    serde_json::from_slice(&reply.body)
        .map_err(|error| BackendError::Malformed(format!("unreadable body: {error}")))
}
