//! The HTTP adapter: the consumer's state in portbound's upstream, or in any backend that
//! honours its v1 contract (`links/{code}` documents, `clicks/{code}` counters).
//!
//! The contract's optional operations are used where the backend offers them, as its
//! `/v1/info` lists them (asked at the first call that needs to know, and again at every
//! `info`): click batches go in one `POST /v1/counters` where it is offered, and otherwise one
//! `POST /v1/counters/{name}` per counter under the batch's `Idempotency-Key` (which the
//! contract remembers per counter), so each click still counts once. A backend that answers
//! `404` or `405` to an operation it listed is taken at its word the other way, and asked
//! again later.
//!
//! One `reqwest::Client` (so one connection pool) for the process, with a connect timeout and
//! pooled connections retired before the backend's keep-alive closes them. No reply is read
//! beyond [`MAX_REPLY_BYTES`], and none of the backend's bodies is passed on or logged.

use std::borrow::Cow;
use std::error::Error as _;
use std::sync::atomic::{AtomicU8, Ordering};

use futures_util::{StreamExt, TryStreamExt};

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use rustls::ClientConfig;
use serde::{Deserialize, Serialize};

use serde_json::value::RawValue;

use super::attachment::HttpAttachment;
use super::coalescer::Lookup;
use super::store::{Attempt, MAX_BATCH_CODES, Store};
use super::{BackendError, BackendSettings, Created, Info};
use crate::links::{Code, LinkDocument, MAX_CODE_LEN, MAX_DOCUMENT_BYTES};

/// The most the consumer reads of any reply but a batch's: what the largest answer of the
/// contract it uses can take, a link document of [`MAX_DOCUMENT_BYTES`]; counters and
/// `/v1/info` are far smaller. A reply announcing more is refused before its body is read, and
/// one that sends more is cut off there, so a backend cannot make the consumer buffer more.
pub const MAX_REPLY_BYTES: usize = MAX_DOCUMENT_BYTES;

/// What one key of a batch read's reply may take besides its value:
/// `{"key":"links/…","found":true,"version":"…","value":},` with a code of [`MAX_CODE_LEN`]
/// characters and a version of 20 digits.
const MAX_READ_OVERHEAD_BYTES: usize =
    r#"{"key":"links/","found":true,"version":"","value":},"#.len() + MAX_CODE_LEN + 20;

/// The most the consumer reads of a batch read's reply for `keys` keys.
fn max_read_reply_bytes(keys: usize) -> usize {
    keys * (MAX_DOCUMENT_BYTES + MAX_READ_OVERHEAD_BYTES) + 1024
}

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

/// How many of a click batch's counters are sent at once to a backend without click batches.
const COUNTERS_AT_ONCE: usize = 8;

/// How many links are read at once, one `GET` each, from a backend without batch reads.
const READS_AT_ONCE: usize = 8;

/// The optional operations of the contract a backend offers, by `operationId`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Offered {
    /// `POST /v1/kv:batchGet`.
    batch_reads: bool,
    /// `POST /v1/counters`.
    counter_batches: bool,
}

impl Offered {
    fn from_operations(operations: &[String]) -> Self {
        let offers = |id: &str| operations.iter().any(|name| name == id);
        Offered {
            batch_reads: offers("getValues"),
            counter_batches: offers("incrementCounters"),
        }
    }
}

/// What the backend last said it offers; not known until it is asked.
#[derive(Default)]
struct OfferedCell(AtomicU8);

impl OfferedCell {
    const KNOWN: u8 = 1;
    const BATCH_READS: u8 = 2;
    const COUNTER_BATCHES: u8 = 4;

    fn get(&self) -> Option<Offered> {
        let bits = self.0.load(Ordering::Relaxed);
        (bits & Self::KNOWN != 0).then_some(Offered {
            batch_reads: bits & Self::BATCH_READS != 0,
            counter_batches: bits & Self::COUNTER_BATCHES != 0,
        })
    }

    fn set(&self, offered: Offered) {
        let bit = |on: bool, bit: u8| if on { bit } else { 0 };
        let bits = Self::KNOWN
            | bit(offered.batch_reads, Self::BATCH_READS)
            | bit(offered.counter_batches, Self::COUNTER_BATCHES);
        self.0.store(bits, Ordering::Relaxed);
    }

    /// Forgets one operation the backend listed but does not serve.
    fn withdraw(&self, bit: u8) {
        self.0.fetch_and(!bit, Ordering::Relaxed);
    }
}

/// `/v1/info` as this adapter reads it: the optional operations too.
#[derive(Deserialize)]
struct InfoReply {
    instance: String,
    #[serde(default)]
    operations: Vec<String>,
}

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
    offered: OfferedCell,
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
            .use_preconfigured_tls(ClientConfig::clone(&settings.tls.client_config()))
            .build()
            .expect("the HTTP client builds with rustls");
        HttpStore {
            http,
            attachment,
            offered: OfferedCell::default(),
        }
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
            Err(error) => {
                return Err(
                    match super::tls::untrusted(&error, self.attachment.host()) {
                        Some(reason) => BackendError::Untrusted(reason),
                        // Not sent, or its answer lost: safe to send again.
                        None => BackendError::Unreachable(describe(&error)),
                    },
                );
            }
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

    /// `/v1/info`, remembering the optional operations it lists.
    async fn ask_info(&self) -> Result<(Info, Offered), BackendError> {
        let reply = self.get("v1/info").await?;
        expect_status(&reply, &[StatusCode::OK])?;
        let InfoReply {
            instance,
            operations,
        } = parse(&reply)?;
        let offered = Offered::from_operations(&operations);
        self.offered.set(offered);
        Ok((Info { instance }, offered))
    }

    /// What the backend offers, asked if it is not known yet.
    async fn offered(&self) -> Result<Offered, BackendError> {
        match self.offered.get() {
            Some(offered) => Ok(offered),
            None => Ok(self.ask_info().await?.1),
        }
    }

    /// One link by `GET /v1/kv/links%2F{code}`. The call failing fails the attempt; a document
    /// that does not read fails only its lookup.
    async fn link(&self, code: &Code) -> Result<Lookup, BackendError> {
        let reply = self.get(&format!("v1/kv/{LINKS}{code}")).await?;
        match reply.status {
            StatusCode::NOT_FOUND => Ok(Ok(None)),
            StatusCode::OK => Ok(document(&reply.body).map(Some)),
            _ => Err(unexpected(&reply)),
        }
    }

    /// `codes`' links in one `POST /v1/kv:batchGet`; `None` when the backend does not serve it.
    async fn read_at_once(&self, codes: &[Code]) -> Result<Option<Vec<Lookup>>, BackendError> {
        #[derive(Serialize)]
        struct ReadMany {
            keys: Vec<String>,
        }
        #[derive(Deserialize)]
        struct Reads<'a> {
            #[serde(borrow)]
            values: Vec<Read<'a>>,
        }
        #[derive(Deserialize)]
        struct Read<'a> {
            #[serde(borrow)]
            key: Cow<'a, str>,
            found: bool,
            #[serde(borrow, default)]
            value: Option<&'a RawValue>,
        }
        let keys = codes.iter().map(|code| format!("links/{code}")).collect();
        let body = serde_json::to_vec(&ReadMany { keys }).expect("JSON");
        let reply = self
            .call(
                Method::POST,
                "v1/kv:batchGet",
                Some(body),
                HeaderMap::new(),
                max_read_reply_bytes(codes.len()),
            )
            .await?;
        if not_served(&reply) {
            return Ok(None);
        }
        expect_status(&reply, &[StatusCode::OK])?;
        let Reads { values } = parse(&reply)?;
        if values.len() != codes.len() {
            return Err(BackendError::Malformed(format!(
                "{} answers to a batch read of {} keys",
                values.len(),
                codes.len()
            )));
        }
        codes
            .iter()
            .zip(values)
            .map(|(code, read)| {
                if read.key.strip_prefix("links/") != Some(code.as_str()) {
                    return Err(BackendError::Malformed(
                        "a batch read answered its keys out of order".to_owned(),
                    ));
                }
                Ok(match (read.found, read.value) {
                    (false, _) => Ok(None),
                    (true, Some(value)) if value.get().len() > MAX_DOCUMENT_BYTES => {
                        Err(BackendError::TooLarge(MAX_DOCUMENT_BYTES))
                    }
                    (true, Some(value)) => document(value.get().as_bytes()).map(Some),
                    (true, None) => Err(BackendError::Malformed(
                        "a batch read found a key without its value".to_owned(),
                    )),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// A click batch in one `POST /v1/counters`; `None` when the backend does not serve it.
    async fn add_clicks_at_once(
        &self,
        batch: &[(String, u64)],
        key: HeaderValue,
    ) -> Result<Option<()>, BackendError> {
        #[derive(Serialize)]
        struct Increment<'a> {
            name: String,
            by: &'a u64,
        }
        #[derive(Serialize)]
        struct Increments<'a> {
            increments: Vec<Increment<'a>>,
        }
        let increments: Vec<Increment> = batch
            .iter()
            .map(|(code, by)| Increment {
                name: format!("clicks/{code}"),
                by,
            })
            .collect();
        let body = serde_json::to_vec(&Increments { increments }).expect("JSON");
        let mut headers = HeaderMap::new();
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
        if not_served(&reply) {
            return Ok(None);
        }
        expect_status(&reply, &[StatusCode::OK]).map(Some)
    }

    /// A click batch as one `POST /v1/counters/clicks%2F{code}` per code, a few at a time, each
    /// under the batch's key: the contract remembers a key per counter, so a batch sent again
    /// counts each code once, whichever of its calls had been answered.
    async fn add_clicks_one_by_one(
        &self,
        batch: &[(String, u64)],
        key: HeaderValue,
    ) -> Result<(), BackendError> {
        // The calls made before they are streamed: a closure inside the stream would have to
        // hold for every lifetime of its argument, which an async block borrowing it cannot.
        let calls: Vec<_> = batch
            .iter()
            .map(|(code, by)| {
                let mut headers = HeaderMap::new();
                headers.insert("idempotency-key", key.clone());
                let path = format!("v1/counters/{CLICKS}{code}");
                let body = serde_json::to_vec(&serde_json::json!({ "by": by })).expect("JSON");
                async move {
                    let reply = self
                        .call(Method::POST, &path, Some(body), headers, MAX_REPLY_BYTES)
                        .await?;
                    expect_status(&reply, &[StatusCode::OK])
                }
            })
            .collect();
        futures_util::stream::iter(calls)
            .buffer_unordered(COUNTERS_AT_ONCE)
            .try_collect()
            .await
    }
}

impl Store for HttpStore {
    fn info(&self) -> Attempt<'_, Info> {
        Box::pin(async move { Ok(self.ask_info().await?.0) })
    }

    fn links<'a>(&'a self, codes: &'a [Code]) -> Attempt<'a, Vec<Lookup>> {
        Box::pin(async move {
            if let [code] = codes {
                // A lone lookup is a plain GET: the cheapest call, and cacheable.
                return self.link(code).await.map(|lookup| vec![lookup]);
            }
            if self.offered().await?.batch_reads {
                if let Some(found) = self.read_at_once(codes).await? {
                    return Ok(found);
                }
                log::warn!(
                    "the backend listed POST /v1/kv:batchGet but does not serve it; \
                     reading each link on its own"
                );
                self.offered.withdraw(OfferedCell::BATCH_READS);
            }
            let reads: Vec<_> = codes.iter().map(|code| self.link(code)).collect();
            futures_util::stream::iter(reads)
                .buffered(READS_AT_ONCE)
                .try_collect()
                .await
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
        Box::pin(async move {
            let key = HeaderValue::from_str(idempotency_key)
                .map_err(|_| BackendError::Malformed("unusable idempotency key".to_owned()))?;
            if self.offered().await?.counter_batches {
                if let Some(counted) = self.add_clicks_at_once(batch, key.clone()).await? {
                    return Ok(counted);
                }
                log::warn!(
                    "the backend listed POST /v1/counters but does not serve it; \
                     sending each counter of the batch on its own"
                );
                self.offered.withdraw(OfferedCell::COUNTER_BATCHES);
            }
            self.add_clicks_one_by_one(batch, key).await
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

/// Whether the backend answered that it has no such operation.
fn not_served(reply: &Reply) -> bool {
    matches!(
        reply.status,
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
    )
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

/// A stored link document, or why it is not one.
fn document(json: &[u8]) -> Result<LinkDocument, BackendError> {
    serde_json::from_slice(json)
        .map_err(|error| BackendError::Malformed(format!("an unreadable link document: {error}")))
}

fn parse<'a, T: Deserialize<'a>>(reply: &'a Reply) -> Result<T, BackendError> {
    serde_json::from_slice(&reply.body)
        .map_err(|error| BackendError::Malformed(format!("unreadable body: {error}")))
}
