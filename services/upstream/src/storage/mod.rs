//! Durable storage in one SQLite file: values, counters and idempotency keys.
//!
//! - Writes go to the [`writer`] thread, which owns the only writing connection and commits in
//!   groups. The database runs in WAL mode with `synchronous=FULL`, so an answered write
//!   survives a `kill -9` or a power cut.
//! - Reads use a small pool of read-only connections on the blocking thread pool; WAL lets them
//!   run alongside the writer. An in-memory database (`:memory:`) has only the writer's
//!   connection, so there reads queue behind writes.
//!
//! - A bounded [`cache`] of values answers most GETs from memory; the writer alone keeps it in
//!   step with what is committed.
//!
//! Nothing here blocks an async executor thread. Versions are one database-wide sequence, so a
//! key that is deleted and created again never reuses an `ETag` a client may still hold.

mod cache;
mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{Histogram, HistogramOpts, Registry};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::key::Key;
use bytes::Bytes;
use cache::{Known, ReadCache};
use writer::{Writer, WriterContext};

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Read connections kept open next to the writer.
const READERS: u32 = 4;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS kv (
        key     TEXT PRIMARY KEY,
        value   TEXT NOT NULL,
        version INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS idempotency (
        counter    TEXT NOT NULL,
        key        TEXT NOT NULL,
        amount     INTEGER NOT NULL,
        value      INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (counter, key)
    );
    CREATE INDEX IF NOT EXISTS idempotency_created_at ON idempotency (created_at);
    CREATE TABLE IF NOT EXISTS sequence (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    INSERT OR IGNORE INTO sequence (name, value) VALUES ('version', 0);
";

/// Why storage could not answer. The message is for logs, never for clients.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(Arc<rusqlite::Error>),
    #[error("no read connection: {0}")]
    Pool(Arc<r2d2::Error>),
    #[error("a blocking storage task failed")]
    Blocking,
    #[error("storage is shut down")]
    Closed,
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Sqlite(Arc::new(error))
    }
}

/// A stored value (JSON text) and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Bytes,
    pub version: i64,
}

/// The condition a write is made under (from `If-Match` / `If-None-Match`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// Write whatever is there.
    None,
    /// Only if the key does not exist (`If-None-Match: *`).
    Absent,
    /// Only if the key exists (`If-Match: *`).
    Present,
    /// Only if the key exists at one of these versions (`If-Match: "3", "4"`).
    OneOf(Vec<i64>),
    /// Only if the key is absent or at none of these versions (`If-None-Match: "3"`).
    NoneOf(Vec<i64>),
    /// Only if both hold (`If-Match` and `If-None-Match` together, RFC 9110 §13.2.2).
    Both(Box<Precondition>, Box<Precondition>),
}

impl Precondition {
    fn holds(&self, current: Option<i64>) -> bool {
        match self {
            Precondition::None => true,
            Precondition::Absent => current.is_none(),
            Precondition::Present => current.is_some(),
            Precondition::OneOf(versions) => current.is_some_and(|v| versions.contains(&v)),
            Precondition::NoneOf(versions) => current.is_none_or(|v| !versions.contains(&v)),
            Precondition::Both(first, second) => first.holds(current) && second.holds(current),
        }
    }
}

/// What a `put` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Created { version: i64 },
    Replaced { version: i64 },
    PreconditionFailed,
}

/// What a `delete` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delete {
    Deleted,
    NotFound,
    PreconditionFailed,
}

/// What an `increment` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Increment {
    /// Counted now; the counter's new value.
    Counted { value: i64 },
    /// This idempotency key was already counted; the value it produced then.
    Replayed { value: i64 },
    /// This idempotency key was used for a different amount.
    KeyReused,
    /// The counter would leave the range of a 64-bit signed integer.
    Overflow,
}

/// One page of a key listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub keys: Vec<(String, i64)>,
    /// The `after` to ask for the next page, if there is one.
    pub next: Option<String>,
}

/// The store; cheap to clone, shared by all HTTP workers.
#[derive(Clone)]
pub struct Store {
    writer: Writer,
    readers: Option<r2d2::Pool<SqliteConnectionManager>>,
    cache: ReadCache,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

/// Why the database could not be opened; reported against `DATABASE_PATH`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OpenError(String);

impl Store {
    /// Opens (creating if needed) the database at `path`, or an in-memory one for `:memory:`,
    /// with a read cache of `cache_bytes` (0: none), and registers the storage metrics in
    /// `registry`.
    pub fn open(path: &str, cache_bytes: u64, registry: &Registry) -> Result<Store, OpenError> {
        let conn = if path == ":memory:" {
            Connection::open_in_memory()
        } else {
            if let Some(dir) = Path::new(path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).map_err(|e| {
                    OpenError(format!("cannot create directory {}: {e}", dir.display()))
                })?;
            }
            Connection::open(path)
        }
        .map_err(|e| OpenError(e.to_string()))?;
        prepare(&conn)?;

        let readers = if path == ":memory:" {
            None
        } else {
            let manager = SqliteConnectionManager::file(path)
                .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .with_init(|c| c.execute_batch("PRAGMA busy_timeout = 5000;"));
            // No validation query on every checkout: the pool owns these connections, and one
            // that failed would fail its own query just the same.
            let pool = r2d2::Pool::builder()
                .max_size(READERS)
                .min_idle(Some(1))
                .test_on_check_out(false)
                .connection_timeout(Duration::from_secs(5))
                .build(manager)
                .map_err(|e| OpenError(format!("cannot open read connections: {e}")))?;
            Some(pool)
        };

        let batch_sizes = Histogram::with_opts(
            HistogramOpts::new(
                "upstream_storage_batch_writes",
                "Writes committed together in one transaction (group commit)",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )
        .map_err(|e| OpenError(e.to_string()))?;
        registry
            .register(Box::new(batch_sizes.clone()))
            .map_err(|e| OpenError(e.to_string()))?;

        let cache = ReadCache::new(cache_bytes, registry).map_err(|e| OpenError(e.to_string()))?;
        let context = WriterContext {
            batch_sizes,
            prune: prune_idempotency_keys,
            cache: cache.clone(),
            load: load_known,
        };
        let (writer, thread) = Writer::start(conn, context);
        Ok(Store {
            writer,
            readers,
            cache,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Finishes queued writes, checkpoints the WAL and stops the writer thread.
    pub async fn close(&self) {
        self.writer.close().await;
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// Runs a read on a read connection (or, in memory, through the writer).
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let Some(pool) = &self.readers else {
            return self.writer.run(|conn, _| f(conn)).await;
        };
        let pool = pool.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.get().map_err(|e| StoreError::Pool(Arc::new(e)))?;
            f(&conn)
        })
        .await
        .map_err(|_| StoreError::Blocking)?
    }

    /// Whether storage answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    /// The value at `key`: from the cache when it knows, otherwise from SQLite (and then the
    /// writer is asked to cache it).
    pub async fn get(&self, key: Key) -> Result<Option<Entry>, StoreError> {
        if let Some(known) = self.cache.get(key.as_str()) {
            return Ok(known);
        }
        let name = key.as_str().to_owned();
        let entry = self.read(move |conn| Ok(load_known(conn, &name)?)).await?;
        if self.cache.is_enabled() {
            self.writer.load(key.to_string());
        }
        Ok(entry)
    }

    /// Whether the read cache holds `key`.
    #[cfg(test)]
    fn is_cached(&self, key: &str) -> bool {
        self.cache.contains(key)
    }

    /// Stores `value` (already checked to be JSON) under `key` if `precondition` holds.
    pub async fn put(
        &self,
        key: Key,
        value: String,
        precondition: Precondition,
    ) -> Result<Put, StoreError> {
        self.writer
            .run(move |conn, effects| {
                let current = current_version(conn, &key)?;
                if !precondition.holds(current) {
                    return Ok(Put::PreconditionFailed);
                }
                let version = next_version(conn)?;
                conn.prepare_cached(
                    "INSERT INTO kv (key, value, version) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                                                     version = excluded.version",
                )?
                .execute(params![key.as_str(), value, version])?;
                let value = Bytes::from(value);
                effects.push((key.to_string(), Some(Entry { value, version })));
                Ok(match current {
                    None => Put::Created { version },
                    Some(_) => Put::Replaced { version },
                })
            })
            .await
    }

    pub async fn delete(&self, key: Key, precondition: Precondition) -> Result<Delete, StoreError> {
        self.writer
            .run(move |conn, effects| {
                let current = current_version(conn, &key)?;
                if !precondition.holds(current) {
                    return Ok(Delete::PreconditionFailed);
                }
                if current.is_none() {
                    return Ok(Delete::NotFound);
                }
                conn.prepare_cached("DELETE FROM kv WHERE key = ?1")?
                    .execute([key.as_str()])?;
                effects.push((key.to_string(), None));
                Ok(Delete::Deleted)
            })
            .await
    }

    /// Keys starting with `prefix`, in byte order, after `after`, at most `limit`.
    pub async fn list(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.read(move |conn| {
            // Keys are ASCII below 0x7f, so the prefix range ends at the prefix with its last
            // byte raised by one (or at 0x7f for the empty prefix).
            let mut end = prefix.clone().into_bytes();
            match end.last_mut() {
                Some(last) => *last += 1,
                None => end.push(0x7f),
            }
            let end = String::from_utf8(end).unwrap_or_default();
            let start = after.unwrap_or_default();
            let mut statement = conn.prepare_cached(
                "SELECT key, version FROM kv
                 WHERE key >= ?1 AND key < ?2 AND key > ?3
                 ORDER BY key LIMIT ?4",
            )?;
            let mut keys = statement
                .query_map(params![prefix, end, start, limit as i64 + 1], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let next = if keys.len() > limit {
                keys.truncate(limit);
                keys.last().map(|(key, _)| key.clone())
            } else {
                None
            };
            Ok(Page { keys, next })
        })
        .await
    }

    /// Adds `amount` to counter `name`, once per `idempotency_key`.
    pub async fn increment(
        &self,
        name: Key,
        amount: i64,
        idempotency_key: Option<String>,
    ) -> Result<Increment, StoreError> {
        self.writer
            .run(move |conn, _| {
                if let Some(key) = &idempotency_key {
                    let earlier: Option<(i64, i64)> = conn
                        .prepare_cached(
                            "SELECT amount, value FROM idempotency WHERE counter = ?1 AND key = ?2",
                        )?
                        .query_row([name.as_str(), key], |row| Ok((row.get(0)?, row.get(1)?)))
                        .optional()?;
                    if let Some((earlier_amount, value)) = earlier {
                        return Ok(if earlier_amount == amount {
                            Increment::Replayed { value }
                        } else {
                            Increment::KeyReused
                        });
                    }
                }
                let current = counter_value(conn, &name)?;
                let Some(value) = current.checked_add(amount) else {
                    return Ok(Increment::Overflow);
                };
                conn.prepare_cached(
                    "INSERT INTO counters (name, value) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                )?
                .execute(params![name.as_str(), value])?;
                if let Some(key) = &idempotency_key {
                    conn.prepare_cached(
                        "INSERT INTO idempotency (counter, key, amount, value, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![
                        name.as_str(),
                        key,
                        amount,
                        value,
                        unix_now()
                    ])?;
                }
                Ok(Increment::Counted { value })
            })
            .await
    }

    /// The counter's value; 0 when it was never incremented.
    pub async fn counter(&self, name: Key) -> Result<i64, StoreError> {
        self.read(move |conn| counter_value(conn, &name)).await
    }

    /// How many keys are stored.
    pub async fn key_count(&self) -> Result<i64, StoreError> {
        self.read(|conn| Ok(conn.query_row("SELECT count(*) FROM kv", [], |row| row.get(0))?))
            .await
    }
}

fn prepare(conn: &Connection) -> Result<(), OpenError> {
    let sqlite = |e: rusqlite::Error| OpenError(e.to_string());
    conn.busy_timeout(Duration::from_secs(5)).map_err(sqlite)?;
    // In memory there is no journal file; elsewhere WAL must really be in force.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(sqlite)?;
    if mode != "wal" && mode != "memory" {
        return Err(OpenError(format!(
            "the database cannot use WAL mode (journal_mode is {mode})"
        )));
    }
    conn.execute_batch("PRAGMA synchronous = FULL;")
        .and_then(|()| conn.execute_batch(SCHEMA))
        .map_err(sqlite)
}

/// The committed state of `key`.
fn load_known(conn: &Connection, key: &str) -> rusqlite::Result<Known> {
    conn.prepare_cached("SELECT value, version FROM kv WHERE key = ?1")?
        .query_row([key], |row| {
            Ok(Entry {
                value: Bytes::from(row.get::<_, String>(0)?),
                version: row.get(1)?,
            })
        })
        .optional()
}

fn current_version(conn: &Connection, key: &Key) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT version FROM kv WHERE key = ?1")?
        .query_row([key.as_str()], |row| row.get(0))
        .optional()
}

fn next_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "UPDATE sequence SET value = value + 1 WHERE name = 'version' RETURNING value",
    )?
    .query_row([], |row| row.get(0))
}

fn counter_value(conn: &Connection, name: &Key) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT value FROM counters WHERE name = ?1")?
        .query_row([name.as_str()], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

fn prune_idempotency_keys(conn: &Connection) -> rusqlite::Result<usize> {
    let cutoff = unix_now() - IDEMPOTENCY_TTL.as_secs() as i64;
    conn.execute("DELETE FROM idempotency WHERE created_at < ?1", [cutoff])
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Key {
        Key::parse(text).unwrap()
    }

    fn memory() -> Store {
        Store::open(":memory:", 1 << 20, &Registry::new()).unwrap()
    }

    #[tokio::test]
    async fn a_value_round_trips_with_a_fresh_version_on_each_write() {
        let store = memory();
        let Put::Created { version: v1 } = store
            .put(key("a"), "1".into(), Precondition::None)
            .await
            .unwrap()
        else {
            panic!("not created")
        };
        let Put::Replaced { version: v2 } = store
            .put(key("a"), "2".into(), Precondition::None)
            .await
            .unwrap()
        else {
            panic!("not replaced")
        };
        assert!(v2 > v1);
        let entry = store.get(key("a")).await.unwrap().unwrap();
        assert_eq!(
            entry,
            Entry {
                value: "2".into(),
                version: v2
            }
        );
    }

    #[tokio::test]
    async fn a_recreated_key_never_reuses_a_version() {
        let store = memory();
        store
            .put(key("a"), "1".into(), Precondition::None)
            .await
            .unwrap();
        let old = store.get(key("a")).await.unwrap().unwrap().version;
        store.delete(key("a"), Precondition::None).await.unwrap();
        store
            .put(key("a"), "1".into(), Precondition::None)
            .await
            .unwrap();
        let stale = Precondition::OneOf(vec![old]);
        let outcome = store.put(key("a"), "2".into(), stale).await.unwrap();
        assert_eq!(outcome, Put::PreconditionFailed);
    }

    #[tokio::test]
    async fn listing_pages_through_a_prefix_in_key_order() {
        let store = memory();
        for k in ["l/c", "l/a", "m/x", "l/b", "k/z"] {
            store
                .put(key(k), "0".into(), Precondition::None)
                .await
                .unwrap();
        }
        let first = store.list("l/".into(), None, 2).await.unwrap();
        let names: Vec<_> = first.keys.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["l/a", "l/b"]);
        assert_eq!(first.next.as_deref(), Some("l/b"));
        let second = store.list("l/".into(), first.next, 2).await.unwrap();
        let names: Vec<_> = second.keys.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["l/c"]);
        assert_eq!(second.next, None);
        assert_eq!(
            store
                .list(String::new(), None, 10)
                .await
                .unwrap()
                .keys
                .len(),
            5
        );
    }

    #[tokio::test]
    async fn an_idempotency_key_counts_once_and_refuses_another_amount() {
        let store = memory();
        let retry = || store.increment(key("c"), 5, Some("k1".into()));
        assert_eq!(retry().await.unwrap(), Increment::Counted { value: 5 });
        assert_eq!(retry().await.unwrap(), Increment::Replayed { value: 5 });
        assert_eq!(store.counter(key("c")).await.unwrap(), 5);
        let other = store
            .increment(key("c"), 6, Some("k1".into()))
            .await
            .unwrap();
        assert_eq!(other, Increment::KeyReused);
    }

    #[tokio::test]
    async fn counters_refuse_to_overflow() {
        let store = memory();
        store.increment(key("c"), i64::MAX, None).await.unwrap();
        assert_eq!(
            store.increment(key("c"), 1, None).await.unwrap(),
            Increment::Overflow
        );
        assert_eq!(store.counter(key("c")).await.unwrap(), i64::MAX);
    }

    #[tokio::test]
    async fn a_file_database_uses_wal_and_full_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/db.sqlite3");
        let store = Store::open(path.to_str().unwrap(), 1 << 20, &Registry::new()).unwrap();
        store
            .put(key("a"), "true".into(), Precondition::None)
            .await
            .unwrap();
        assert_eq!(store.get(key("a")).await.unwrap().unwrap().value, "true");
        assert!(store.is_cached("a"), "a written key is cached");
        store.close().await;
        let conn = Connection::open(&path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    /// Polls `probe` (a cache load is asynchronous) for up to two seconds.
    async fn eventually(mut probe: impl FnMut() -> bool) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while !probe() {
            if std::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    #[tokio::test]
    async fn every_write_is_read_back_at_once_through_the_cache() {
        let store = memory();
        for n in 0..200 {
            let value = format!("{{\"n\":{n}}}");
            let (Put::Created { version } | Put::Replaced { version }) = store
                .put(key("hot"), value.clone(), Precondition::None)
                .await
                .unwrap()
            else {
                panic!("not written")
            };
            let read = store.get(key("hot")).await.unwrap().unwrap();
            assert_eq!((read.value, read.version), (Bytes::from(value), version));
        }
        store.delete(key("hot"), Precondition::None).await.unwrap();
        assert_eq!(store.get(key("hot")).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_key_written_before_startup_is_loaded_then_kept_in_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let path = path.to_str().unwrap();
        let first = Store::open(path, 0, &Registry::new()).unwrap();
        first
            .put(key("cold"), "1".into(), Precondition::None)
            .await
            .unwrap();
        first.close().await;

        let store = Store::open(path, 1 << 20, &Registry::new()).unwrap();
        assert!(!store.is_cached("cold"));
        assert_eq!(store.get(key("cold")).await.unwrap().unwrap().value, "1");
        assert!(
            eventually(|| store.is_cached("cold")).await,
            "a missed key is loaded"
        );

        store
            .put(key("cold"), "2".into(), Precondition::None)
            .await
            .unwrap();
        assert_eq!(store.get(key("cold")).await.unwrap().unwrap().value, "2");
        store.delete(key("cold"), Precondition::None).await.unwrap();
        assert_eq!(store.get(key("cold")).await.unwrap(), None);
        // An unknown key is remembered as absent, and creating it replaces that.
        assert_eq!(store.get(key("never")).await.unwrap(), None);
        assert!(eventually(|| store.is_cached("never")).await);
        store
            .put(key("never"), "3".into(), Precondition::Absent)
            .await
            .unwrap();
        assert_eq!(store.get(key("never")).await.unwrap().unwrap().value, "3");
        store.close().await;
    }

    #[tokio::test]
    async fn without_a_cache_reads_go_to_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let store = Store::open(path.to_str().unwrap(), 0, &Registry::new()).unwrap();
        store
            .put(key("k"), "1".into(), Precondition::None)
            .await
            .unwrap();
        assert_eq!(store.get(key("k")).await.unwrap().unwrap().value, "1");
        assert!(!store.is_cached("k"));
        store.close().await;
    }

    #[tokio::test]
    async fn a_path_that_is_not_a_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("text");
        std::fs::write(&path, "this is not sqlite, not at all, no header here").unwrap();
        assert!(Store::open(path.to_str().unwrap(), 0, &Registry::new()).is_err());
        assert!(Store::open(dir.path().to_str().unwrap(), 0, &Registry::new()).is_err());
    }
}
