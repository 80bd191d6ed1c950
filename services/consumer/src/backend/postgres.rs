//! The PostgreSQL adapter: the consumer's state in a PostgreSQL database, attached by
//! `UPSTREAM_URL=postgres://user:password@host[:port][,host2[:port]…]/dbname[?…]`.
//!
//! Tables, readable with `psql`:
//!
//! - `portbound_links (code, url, created_at, creation_id)`: a link, inserted only if its code is
//!   free (`INSERT … ON CONFLICT DO NOTHING`);
//! - `portbound_clicks (code, clicks)`: the click count;
//! - `portbound_batches (key, counted_at)`: a click batch already counted. Its key and its
//!   increments go in one transaction, so a batch sent again counts once; keys older than 24
//!   hours are removed, at most once a minute, by the batches that follow;
//! - `portbound_schema (version)`: which of [`MIGRATIONS`] have run. The first call of a process
//!   creates or upgrades the tables in one transaction under an advisory lock, so consumers
//!   started together against an empty database wait for one another instead of colliding.
//!
//! Connections come from a pool made at startup that connects at the first call, so the consumer
//! starts while PostgreSQL is away. Each connection prepares a statement once and keeps it
//! (deadpool's statement cache), so a command is one round trip, not a parse and then a run. With several hosts and `target_session_attrs=read-write`,
//! each new connection goes to whichever host is the primary now, which is how the consumer
//! follows a failover by its URL alone. A connection never outlives one: one that answers
//! "read-only" (SQLSTATE 25006, a demoted primary), "shutting down" (57P01–57P03) or stops
//! answering (its deadline passed mid-command) is dropped instead of returned to the pool, and
//! the call counts as `Unreachable`, which the one retry then sends on a new connection. Wrong
//! credentials are `Rejected` (502); neither the password nor a value is ever logged.
//!
//! With `sslmode=verify-full` (or `require`) every connection speaks TLS through rustls, its
//! certificate verified against the consumer's trust ([`super::tls`]) for the host it connects
//! to; one that does not verify is `Untrusted`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use rustls::ClientConfig;
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::attachment::PostgresAttachment;
use super::coalescer::Lookup;
use super::store::{Attempt, Store};
use super::{BackendError, BackendSettings, Created, Info};
use crate::links::{Code, LinkDocument, MAX_DOCUMENT_BYTES};

/// The schema, one step a version: step `n` takes the schema from version `n` to `n + 1`. A
/// new version is a new step at the end; a step never changes once released.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE portbound_links (
        code text PRIMARY KEY,
        url text NOT NULL,
        created_at text NOT NULL,
        creation_id text
    );
    CREATE TABLE portbound_clicks (
        code text PRIMARY KEY,
        clicks bigint NOT NULL
    );
    CREATE TABLE portbound_batches (
        key text PRIMARY KEY,
        counted_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX portbound_batches_counted_at ON portbound_batches (counted_at);
"];

/// A link's columns, each only if they fit in `$2` bytes together, and whether they do. The
/// length is read from each value's header, so an oversized one is refused without being read
/// (or sent) whole.
macro_rules! bounded_link {
    ($from:literal) => {
        concat!(
            "SELECT found.code, fits, CASE WHEN fits THEN url END, ",
            "CASE WHEN fits THEN created_at END, CASE WHEN fits THEN creation_id END FROM ",
            $from,
            "(SELECT code, url, created_at, creation_id, ",
            "octet_length(url) + octet_length(created_at) ",
            "+ coalesce(octet_length(creation_id), 0) <= $2 AS fits ",
            "FROM portbound_links WHERE code = "
        )
    };
}

/// One link: one probe of the primary key.
const ONE_LINK: &str = concat!(bounded_link!(""), "$1) AS found");

/// Several links: one probe of the primary key for each code asked. Not `code = ANY($1)`, and
/// not a plain lateral join either: PostgreSQL flattens that into a join, and the plan a pooled
/// connection keeps for its prepared statement then scans the table whole when it was chosen
/// while the table was small, until the statistics are next gathered (seen: 141 redirects/s at
/// 10⁶ links just loaded into a table planned at 10³). `OFFSET 0` keeps the subquery a probe
/// per code, an index scan at any size.
pub const LINKS: &str = concat!(
    bounded_link!("unnest($1::text[]) AS asked(wanted), LATERAL "),
    "asked.wanted OFFSET 0) AS found"
);

/// The most bytes a link's columns may hold together to be read: a link document's bound.
const MAX_LINK_BYTES: i32 = MAX_DOCUMENT_BYTES as i32;

/// The advisory lock that makes one consumer at a time create or upgrade the schema.
const SCHEMA_LOCK: i64 = 0x0070_6f72_7462_6e64; // "portbnd" in ASCII

/// How long a counted batch's key is kept: as long as the upstream keeps an `Idempotency-Key`.
const BATCH_KEY_HOURS: u32 = 24;

/// Seconds between removals of expired batch keys.
const PRUNE_EVERY: u64 = 60;

/// Connections kept open to PostgreSQL.
const POOL_SIZE: usize = 16;

/// A PostgreSQL database holding links and clicks.
pub struct PostgresStore {
    pool: Pool,
    dbname: String,
    /// The hosts, for a certificate's failure.
    hosts: String,
    /// Set once this process has seen the schema at its latest version.
    schema: OnceCell<()>,
    /// When expired batch keys were last removed, in seconds since the epoch.
    pruned: AtomicU64,
}

/// A pooled connection in use; dropped before [`Lease::finished`] (its deadline passed, or its
/// caller gave up), it is closed rather than returned to the pool, since an answer may still be
/// on its way or never come.
struct Lease {
    client: Option<Object>,
}

impl Lease {
    fn client(&self) -> &Object {
        self.client
            .as_ref()
            .expect("a lease holds its client until it ends")
    }

    /// The command ended with `result`: the connection goes back to the pool, unless the
    /// failure says it can no longer serve (closed, read-only, shutting down).
    fn finished<T>(self, result: Result<T, tokio_postgres::Error>) -> Result<T, BackendError> {
        match result {
            Ok(answer) => {
                self.release();
                Ok(answer)
            }
            Err(error) => Err(self.failed(&error)),
        }
    }

    /// What `error` means to the consumer; a connection that can no longer serve is dropped.
    fn failed(mut self, error: &tokio_postgres::Error) -> BackendError {
        let client = self.client.take().expect("a lease ends once");
        let failure = failure(error);
        if matches!(failure, BackendError::Unreachable(_)) {
            drop(Object::take(client));
        }
        failure
    }

    /// Returns the connection to the pool.
    fn release(mut self) {
        drop(self.client.take());
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            log::warn!("postgres: a command did not finish; closing its connection");
            drop(Object::take(client));
        }
    }
}

impl PostgresStore {
    pub fn new(attachment: &PostgresAttachment, settings: &BackendSettings) -> Self {
        let config = attachment.config(settings.connect_timeout);
        // Broken connections are dropped as they fail (see Lease); a closed one is never
        // handed out again, which the pool checks without a round trip.
        let recycling = || ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = if attachment.tls() {
            let tls = MakeRustlsConnect::new(ClientConfig::clone(&settings.tls.client_config()));
            Manager::from_config(config, tls, recycling())
        } else {
            Manager::from_config(config, NoTls, recycling())
        };
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .expect("a pool with a runtime builds");
        PostgresStore {
            pool,
            dbname: attachment.dbname().to_owned(),
            hosts: attachment.hosts(),
            schema: OnceCell::new(),
            pruned: AtomicU64::new(0),
        }
    }

    /// A connection to the primary, the schema at its latest version.
    async fn lease(&self) -> Result<Lease, BackendError> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|error| pool_failure(error, &self.hosts))?;
        let mut lease = Lease {
            client: Some(client),
        };
        if !self.schema.initialized() {
            let client = lease.client.as_mut().expect("a new lease holds its client");
            match migrate(client).await {
                Ok(Ok(())) => {
                    let _ = self.schema.set(());
                }
                Ok(Err(newer)) => {
                    lease.release();
                    return Err(newer);
                }
                Err(error) => return Err(lease.failed(&error)),
            }
        }
        Ok(lease)
    }

    /// Removes batch keys older than [`BATCH_KEY_HOURS`], when a minute has passed since the
    /// last removal; a failure is left for the next time.
    async fn prune(&self) -> Result<(), BackendError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let last = self.pruned.load(Ordering::Relaxed);
        if now < last + PRUNE_EVERY
            || self
                .pruned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return Ok(());
        }
        let lease = self.lease().await?;
        let removed = lease
            .client()
            .execute(
            "DELETE FROM portbound_batches WHERE counted_at < now() - make_interval(hours => $1)",
            &[&(BATCH_KEY_HOURS as i32)],
        )
        .await;
        let removed = lease.finished(removed)?;
        if removed > 0 {
            log::info!("postgres: removed {removed} expired click batch keys");
        }
        Ok(())
    }
}

/// Brings the schema to the latest version, under [`SCHEMA_LOCK`], in one transaction. The
/// inner error: the database holds a newer schema than this consumer knows.
async fn migrate(client: &mut Object) -> Result<Result<(), BackendError>, tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await?;
    transaction
        .batch_execute("CREATE TABLE IF NOT EXISTS portbound_schema (version integer NOT NULL)")
        .await?;
    let version: i32 = transaction
        .query_opt("SELECT version FROM portbound_schema", &[])
        .await?
        .map_or(0, |row| row.get(0));
    let latest = MIGRATIONS.len() as i32;
    if version > latest {
        return Ok(Err(BackendError::Failed(format!(
            "the database's schema is at version {version}, newer than this consumer's {latest}"
        ))));
    }
    for step in &MIGRATIONS[version as usize..] {
        transaction.batch_execute(step).await?;
    }
    if version < latest {
        transaction
            .execute("DELETE FROM portbound_schema", &[])
            .await?;
        transaction
            .execute(
                "INSERT INTO portbound_schema (version) VALUES ($1)",
                &[&latest],
            )
            .await?;
        transaction.commit().await?;
        log::info!("postgres: schema upgraded from version {version} to {latest}");
    } else {
        transaction.commit().await?;
    }
    Ok(Ok(()))
}

impl Store for PostgresStore {
    fn info(&self) -> Attempt<'_, Info> {
        Box::pin(async move {
            let lease = self.lease().await?;
            let row = lease
                .client()
                .query_one(
                    "SELECT current_setting('server_version'), \
                        coalesce(host(inet_server_addr()), 'local'), \
                        coalesce(inet_server_port(), 0)",
                    &[],
                )
                .await;
            let row = lease.finished(row)?;
            let (version, host, port): (String, String, i32) = (row.get(0), row.get(1), row.get(2));
            Ok(Info {
                instance: format!("PostgreSQL {version} at {host}:{port}/{}", self.dbname),
            })
        })
    }

    fn links<'a>(&'a self, codes: &'a [Code]) -> Attempt<'a, Vec<Lookup>> {
        Box::pin(async move {
            let asked: Vec<&str> = codes.iter().map(Code::as_str).collect();
            let lease = self.lease().await?;
            let client = lease.client();
            let rows = async {
                if let [code] = asked[..] {
                    let statement = client.prepare_cached(ONE_LINK).await?;
                    client.query(&statement, &[&code, &MAX_LINK_BYTES]).await
                } else {
                    let statement = client.prepare_cached(LINKS).await?;
                    client.query(&statement, &[&asked, &MAX_LINK_BYTES]).await
                }
            }
            .await;
            let mut found: HashMap<String, Lookup> = lease
                .finished(rows)?
                .into_iter()
                .map(|row| {
                    let lookup = if row.get::<_, bool>(1) {
                        Ok(Some(LinkDocument {
                            url: row.get(2),
                            created_at: row.get(3),
                            creation_id: row.get(4),
                        }))
                    } else {
                        Err(BackendError::TooLarge(MAX_DOCUMENT_BYTES))
                    };
                    (row.get(0), lookup)
                })
                .collect();
            Ok(codes
                .iter()
                .map(|code| found.remove(code.as_str()).unwrap_or(Ok(None)))
                .collect())
        })
    }

    fn create_link<'a>(
        &'a self,
        code: &'a Code,
        document: &'a LinkDocument,
    ) -> Attempt<'a, Created> {
        Box::pin(async move {
            let lease = self.lease().await?;
            let client = lease.client();
            let inserted = async {
                let statement = client
                    .prepare_cached(
                        "INSERT INTO portbound_links (code, url, created_at, creation_id) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (code) DO NOTHING",
                    )
                    .await?;
                let values: [&(dyn ToSql + Sync); 4] = [
                    &code.as_str(),
                    &document.url,
                    &document.created_at,
                    &document.creation_id,
                ];
                client.execute(&statement, &values).await
            }
            .await;
            Ok(match lease.finished(inserted)? {
                0 => Created::Taken,
                _ => Created::Yes,
            })
        })
    }

    fn clicks<'a>(&'a self, code: &'a Code) -> Attempt<'a, i64> {
        Box::pin(async move {
            let lease = self.lease().await?;
            let client = lease.client();
            let row = async {
                let statement = client
                    .prepare_cached("SELECT clicks FROM portbound_clicks WHERE code = $1")
                    .await?;
                client.query_opt(&statement, &[&code.as_str()]).await
            }
            .await;
            Ok(lease.finished(row)?.map_or(0, |row| row.get(0)))
        })
    }

    fn add_clicks<'a>(
        &'a self,
        batch: &'a [(String, u64)],
        idempotency_key: &'a str,
    ) -> Attempt<'a, ()> {
        Box::pin(async move {
            let codes: Vec<&str> = batch.iter().map(|(code, _)| code.as_str()).collect();
            let clicks: Vec<i64> = batch
                .iter()
                .map(|(_, by)| i64::try_from(*by).unwrap_or(i64::MAX))
                .collect();
            let mut lease = self.lease().await?;
            let client = lease.client.as_mut().expect("a new lease holds its client");
            let counted = async {
                let transaction = client.transaction().await?;
                let key = transaction
                    .prepare_cached(
                        "INSERT INTO portbound_batches (key) VALUES ($1) ON CONFLICT (key) DO NOTHING",
                    )
                    .await?;
                if transaction.execute(&key, &[&idempotency_key]).await? == 1 {
                    let add = transaction
                        .prepare_cached(
                            "INSERT INTO portbound_clicks (code, clicks) \
                             SELECT * FROM unnest($1::text[], $2::bigint[]) \
                             ON CONFLICT (code) DO UPDATE \
                             SET clicks = portbound_clicks.clicks + excluded.clicks",
                        )
                        .await?;
                    transaction.execute(&add, &[&codes, &clicks]).await?;
                }
                transaction.commit().await
            };
            let counted = counted.await;
            lease.finished(counted)?;
            // Expired keys are the next batches' chore; the batch is counted either way.
            let _ = self.prune().await;
            Ok(())
        })
    }
}

/// What a failure to get a connection to `hosts` means to the consumer.
fn pool_failure(error: PoolError, hosts: &str) -> BackendError {
    match error {
        PoolError::Backend(error) => match super::tls::untrusted(&error, hosts) {
            Some(reason) => BackendError::Untrusted(reason),
            None => failure(&error),
        },
        PoolError::Timeout(_) => {
            BackendError::Unreachable("postgres: no connection within the deadline".to_owned())
        }
        other => BackendError::Failed(format!("postgres: the pool failed: {other}")),
    }
}

/// What a PostgreSQL error means to the consumer. Only its class and SQLSTATE are kept: a
/// server's message can quote what it was sent.
fn failure(error: &tokio_postgres::Error) -> BackendError {
    let Some(code) = error.code() else {
        // No answer from the server: refused, reset, closed, or timed out connecting.
        return BackendError::Unreachable(format!("postgres: {}", describe(error)));
    };
    let state = code.code();
    if *code == SqlState::READ_ONLY_SQL_TRANSACTION
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
    {
        BackendError::Unreachable(format!("postgres: this server cannot serve now ({state})"))
    } else if *code == SqlState::INVALID_PASSWORD
        || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        || *code == SqlState::INSUFFICIENT_PRIVILEGE
    {
        BackendError::Rejected(format!("postgres refused them ({state})"))
    } else if *code == SqlState::DISK_FULL {
        BackendError::Full
    } else if *code == SqlState::TOO_MANY_CONNECTIONS {
        BackendError::Busy(1)
    } else {
        BackendError::Failed(format!("postgres: SQLSTATE {state}"))
    }
}

/// A connection-level error and its causes in one line; these quote no data.
fn describe(error: &tokio_postgres::Error) -> String {
    super::with_causes(error)
}
