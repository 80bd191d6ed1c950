//! The Redis adapter: the consumer's state in a Redis server, attached by
//! `UPSTREAM_URL=redis://[user][:password]@host[:port][/db]` (or `rediss://` for TLS).
//!
//! Keys, readable with `redis-cli`:
//!
//! - `portbound:links:{code}`: the link document, JSON, written only if absent (`SET … NX`),
//!   read by `GETRANGE`s pipelined in one round trip, each taking at most
//!   [`MAX_DOCUMENT_BYTES`] and one byte more, so that a huge value planted under a link's key
//!   is refused without being read whole, and without holding the shared connection while it
//!   would be sent;
//! - `portbound:clicks:{code}`: the click count (`INCRBY`);
//! - `portbound:batches:{idempotency key}`: a click batch already counted, kept 24 hours. A
//!   Lua script checks it and adds to every code of the batch in one atomic step, so a batch
//!   sent again counts once.
//!
//! One [`ConnectionManager`] (one multiplexed connection) serves the process. It is made at the
//! first call, so the consumer starts while Redis is away, and it reconnects by itself when
//! Redis restarts. A command that does not finish — its deadline passed while the connection
//! stayed open but silent, as behind a network that drops packets — or whose connection broke
//! leaves that connection suspect: it is dropped, and the next call makes a new one, instead of
//! every later command queueing behind answers that may never come, or the retry failing at
//! once on a connection still being remade. Wrong credentials are `Rejected` (502); neither
//! the password nor a value is ever logged.

use std::sync::RwLock;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, ErrorKind, RedisError, RedisResult, Script, ServerErrorKind};

use super::attachment::RedisAttachment;
use super::coalescer::Lookup;
use super::store::{Attempt, Store};
use super::{BackendError, BackendSettings, Created, Info};
use crate::links::{Code, LinkDocument, MAX_DOCUMENT_BYTES};

/// How long a counted batch's key is kept: as long as the backend keeps an `Idempotency-Key`.
const BATCH_KEY_SECONDS: u64 = 24 * 60 * 60;

/// Counts a click batch once: `KEYS[1]` the batch's key, `KEYS[2…]` the counters; `ARGV[1]`
/// how long the batch's key is kept, `ARGV[2…]` the clicks for each counter. Returns 1 when it
/// counted, 0 when the batch had been counted before. (Once a script has written, Redis lets
/// it finish even past `maxmemory`, so a batch is counted whole or not at all.)
const ADD_ONCE: &str = r"
if not redis.call('SET', KEYS[1], #KEYS - 1, 'NX', 'EX', ARGV[1]) then
  return 0
end
for i = 2, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[i])
end
return 1
";

/// A Redis server holding links and clicks.
pub struct RedisStore {
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// The connection in use, with its generation.
    current: RwLock<Option<(u64, ConnectionManager)>>,
    /// Held while a connection is being made, so only one is.
    making: tokio::sync::Mutex<u64>,
    address: String,
    /// The host a TLS certificate must name.
    host: String,
    add_once: Script,
}

/// A command under way on a connection; dropped before [`Unfinished::finished`] (its deadline
/// passed, or its caller gave up), it drops that connection.
struct Unfinished<'a> {
    current: &'a RwLock<Option<(u64, ConnectionManager)>>,
    generation: u64,
    armed: bool,
}

impl Unfinished<'_> {
    /// The command ended with `result`. A connection that timed out, broke or was dropped is
    /// suspect all the same: the next call makes a new one, instead of failing again at once
    /// on a connection still being remade.
    fn finished<T>(mut self, result: Result<T, RedisError>) -> Result<T, BackendError> {
        self.armed = result.as_ref().is_err_and(|error| {
            error.is_timeout() || error.is_io_error() || error.is_connection_dropped()
        });
        result.map_err(failure)
    }
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut current = self.current.write().expect("the connection lock");
        if current
            .as_ref()
            .is_some_and(|(generation, _)| *generation == self.generation)
        {
            log::warn!("redis: a command did not finish or its connection broke; dropping it");
            *current = None;
        }
    }
}

impl RedisStore {
    pub fn new(attachment: &RedisAttachment, settings: &BackendSettings) -> Self {
        let url = attachment.url().as_str();
        let client = if attachment.url().scheme() == "rediss" {
            redis::Client::build_with_tls(url, settings.tls.redis_certificates())
        } else {
            redis::Client::open(url)
        }
        .expect("the attachment checked the URL the redis crate reads");
        // Each attempt is bounded here; the deadline and the one retry are the caller's, so the
        // client connects once per attempt (a certificate that does not verify fails at once).
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(0);
        RedisStore {
            client,
            config,
            current: RwLock::new(None),
            making: tokio::sync::Mutex::new(0),
            address: attachment.address(),
            host: attachment.host().to_owned(),
            add_once: Script::new(ADD_ONCE),
        }
    }

    /// The shared connection, made by the first call that finds none, and the guard of the
    /// command about to use it.
    async fn connection(&self) -> Result<(ConnectionManager, Unfinished<'_>), BackendError> {
        let current = || self.current.read().expect("the connection lock").clone();
        let (generation, connection) = match current() {
            Some(found) => found,
            None => {
                let mut made = self.making.lock().await;
                match current() {
                    Some(found) => found,
                    None => {
                        let connection = ConnectionManager::new_with_config(
                            self.client.clone(),
                            self.config.clone(),
                        )
                        .await
                        .map_err(|error| {
                            match super::tls::untrusted(&error, &self.host) {
                                Some(reason) => BackendError::Untrusted(reason),
                                None => failure(error),
                            }
                        })?;
                        *made += 1;
                        *self.current.write().expect("the connection lock") =
                            Some((*made, connection.clone()));
                        (*made, connection)
                    }
                }
            }
        };
        let unfinished = Unfinished {
            current: &self.current,
            generation,
            armed: true,
        };
        Ok((connection, unfinished))
    }
}

fn link_key(code: &Code) -> String {
    format!("portbound:links:{code}")
}

fn clicks_key(code: &str) -> String {
    format!("portbound:clicks:{code}")
}

impl Store for RedisStore {
    fn info(&self) -> Attempt<'_, Info> {
        Box::pin(async move {
            let (mut connection, unfinished) = self.connection().await?;
            let server: String = unfinished.finished(
                redis::cmd("INFO")
                    .arg("server")
                    .query_async(&mut connection)
                    .await,
            )?;
            let version = server
                .lines()
                .find_map(|line| line.strip_prefix("redis_version:"))
                .map_or("?", str::trim);
            Ok(Info {
                instance: format!("redis {version} at {}", self.address),
            })
        })
    }

    fn links<'a>(&'a self, codes: &'a [Code]) -> Attempt<'a, Vec<Lookup>> {
        Box::pin(async move {
            let mut reads = redis::pipe();
            reads.ignore_errors();
            for code in codes {
                reads
                    .cmd("GETRANGE")
                    .arg(link_key(code))
                    .arg(0)
                    .arg(MAX_DOCUMENT_BYTES);
            }
            let (mut connection, unfinished) = self.connection().await?;
            let found: Vec<RedisResult<Vec<u8>>> =
                unfinished.finished(reads.query_async(&mut connection).await)?;
            if found.len() != codes.len() {
                return Err(BackendError::Malformed(format!(
                    "{} answers to a read of {} keys",
                    found.len(),
                    codes.len()
                )));
            }
            // A key of another type fails its own lookup (`None` here); any other error (still
            // loading, refused) is the whole call's, as it would be for a single command.
            let mut values: Vec<Option<Vec<u8>>> = Vec::with_capacity(found.len());
            for read in found {
                match read {
                    Err(error) if error.code() != Some("WRONGTYPE") => return Err(failure(error)),
                    read => values.push(read.ok()),
                }
            }
            // `GETRANGE` answers an empty string for a key that does not exist, and for an empty
            // value: which it was is asked of those keys alone, so that a hit costs one round
            // trip and a miss two.
            let empty: Vec<usize> = (0..codes.len())
                .filter(|&i| matches!(&values[i], Some(value) if value.is_empty()))
                .collect();
            let mut absent = vec![false; codes.len()];
            if !empty.is_empty() {
                let mut exists = redis::pipe();
                for &i in &empty {
                    exists.exists(link_key(&codes[i]));
                }
                let (mut connection, unfinished) = self.connection().await?;
                let answers: Vec<bool> =
                    unfinished.finished(exists.query_async(&mut connection).await)?;
                for (&i, exists) in empty.iter().zip(answers) {
                    absent[i] = !exists;
                }
            }
            Ok(values
                .into_iter()
                .zip(absent)
                .map(|(value, absent)| match value {
                    _ if absent => Ok(None),
                    Some(value) => stored_link(&value),
                    // Not quoted: what a key holds is never logged.
                    None => Err(BackendError::Malformed(
                        "a link's key holds something other than a string".to_owned(),
                    )),
                })
                .collect())
        })
    }

    fn create_link<'a>(
        &'a self,
        code: &'a Code,
        document: &'a LinkDocument,
    ) -> Attempt<'a, Created> {
        Box::pin(async move {
            let json = serde_json::to_string(document).expect("a link document serializes");
            let (mut connection, unfinished) = self.connection().await?;
            let written: bool =
                unfinished.finished(connection.set_nx(link_key(code), json).await)?;
            Ok(if written {
                Created::Yes
            } else {
                Created::Taken
            })
        })
    }

    fn clicks<'a>(&'a self, code: &'a Code) -> Attempt<'a, i64> {
        Box::pin(async move {
            let (mut connection, unfinished) = self.connection().await?;
            let count: Option<i64> =
                unfinished.finished(connection.get(clicks_key(code.as_str())).await)?;
            Ok(count.unwrap_or(0))
        })
    }

    fn add_clicks<'a>(
        &'a self,
        batch: &'a [(String, u64)],
        idempotency_key: &'a str,
    ) -> Attempt<'a, ()> {
        Box::pin(async move {
            let mut invocation = self.add_once.prepare_invoke();
            invocation
                .key(format!("portbound:batches:{idempotency_key}"))
                .arg(BATCH_KEY_SECONDS);
            for (code, by) in batch {
                invocation.key(clicks_key(code)).arg(by);
            }
            let (mut connection, unfinished) = self.connection().await?;
            let _counted: i64 =
                unfinished.finished(invocation.invoke_async(&mut connection).await)?;
            Ok(())
        })
    }
}

/// What `GETRANGE` read of a link's key: a link document, or why it is not one.
fn stored_link(json: &[u8]) -> Lookup {
    if json.len() > MAX_DOCUMENT_BYTES {
        return Err(BackendError::TooLarge(MAX_DOCUMENT_BYTES));
    }
    serde_json::from_slice(json)
        .map(Some)
        .map_err(|error| BackendError::Malformed(format!("an unreadable link document: {error}")))
}

/// What a Redis error means to the consumer. Only the error's kind and code are kept: a
/// server's message can quote what it was sent.
fn failure(error: RedisError) -> BackendError {
    let code = error.code().unwrap_or_default().to_owned();
    match error.kind() {
        _ if error.is_io_error()
            || error.is_connection_refusal()
            || error.is_connection_dropped()
            || error.is_timeout() =>
        {
            BackendError::Unreachable(format!("redis: {:?}", error.kind()))
        }
        // Still loading its data after a restart: it will answer shortly.
        ErrorKind::Server(ServerErrorKind::BusyLoading) => {
            BackendError::Unreachable("redis is loading its data".to_owned())
        }
        ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::NoPerm) => {
            BackendError::Rejected(format!("redis refused them ({code})"))
        }
        _ if matches!(code.as_str(), "NOAUTH" | "WRONGPASS") => {
            BackendError::Rejected(format!("redis refused them ({code})"))
        }
        _ if code == "OOM" => BackendError::Full,
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => {
            BackendError::Malformed(format!("redis answered a {:?}", error.kind()))
        }
        kind => BackendError::Failed(format!("redis: {kind:?} {code}")),
    }
}
