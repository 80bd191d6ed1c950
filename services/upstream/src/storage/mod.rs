//! Durable storage in one SQLite file: values, counters and idempotency keys.
//!
//! - Writes go to the [`writer`] thread, which owns the only writing connection and commits in
//!   groups. The database runs in WAL mode with `synchronous=FULL`, so an answered write
//!   survives a `kill -9` or a power cut.
//! - Reads use a small pool of read-only connections on the blocking thread pool; WAL lets them
//!   run alongside the writer. An in-memory database (`:memory:`) has only the writer's
//!   connection, so there reads queue behind writes.
//! - A bounded [`cache`] of values answers most GETs from memory; the writer alone keeps it in
//!   step with what is committed.
//!
//! Nothing here blocks an async executor thread. Versions are one database-wide sequence, so a
//! key that is deleted and created again never reuses an `ETag` a client may still hold.
//!
//! # Layout
//!
//! - here: the [`Store`] handle (opening, closing, reads, health), its errors and [`Entry`];
//! - [`schema`]: the tables, the pragmas that make them durable, and their upkeep (expired
//!   idempotency keys);
//! - [`kv`]: values under keys, with versions and preconditions;
//! - [`counters`]: counters and their idempotency keys;
//! - [`writer`]: the single writing thread and its group commits;
//! - [`cache`]: the read cache, and how a key's committed state is read into it.

mod cache;
mod counters;
mod kv;
mod schema;
mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use prometheus::{Histogram, HistogramOpts, IntCounter, Registry};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};

use cache::ReadCache;
use writer::{FullDisk, Writer, WriterContext};

pub use counters::{Increment, Increments};
pub use kv::{Delete, Page, Precondition, Put};
pub use schema::IDEMPOTENCY_TTL;
pub use writer::DEFAULT_QUEUE as DEFAULT_WRITE_QUEUE;

/// Read connections kept open next to the writer.
const READERS: u32 = 4;

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
    #[error("the disk is full")]
    Full,
    #[error("too many writes are waiting")]
    Busy,
    #[error("a stored value is not JSON: {0}")]
    Corrupt(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        // SQLite reports a write that found no space (ENOSPC) as SQLITE_FULL.
        if error.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            return StoreError::Full;
        }
        StoreError::Sqlite(Arc::new(error))
    }
}

/// A stored value (JSON text) and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Bytes,
    pub version: i64,
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
    /// with a read cache of `cache_bytes` (0: none) and room for `write_queue` writes waiting
    /// for the writer (more are refused, [`StoreError::Busy`]), and registers the storage
    /// metrics in `registry`.
    pub fn open(
        path: &str,
        cache_bytes: u64,
        write_queue: usize,
        registry: &Registry,
    ) -> Result<Store, OpenError> {
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
        schema::prepare(&conn)?;

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
            cache: cache.clone(),
            full: FullDisk::new(registry).map_err(|e| OpenError(e.to_string()))?,
        };
        let busy = IntCounter::new(
            "upstream_storage_busy_total",
            "Writes refused because WRITE_QUEUE_LIMIT writes were already waiting",
        )
        .map_err(|e| OpenError(e.to_string()))?;
        registry
            .register(Box::new(busy.clone()))
            .map_err(|e| OpenError(e.to_string()))?;
        let (writer, thread) = Writer::start(conn, context, write_queue, busy);
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
            return self.writer.run_queued(|conn, _| f(conn)).await;
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

    /// Whether the read cache holds `key`.
    #[cfg(test)]
    fn is_cached(&self, key: &str) -> bool {
        self.cache.contains(key)
    }

    /// How many keys are stored: one row read, whatever the number.
    pub async fn key_count(&self) -> Result<i64, StoreError> {
        self.read(|conn| {
            let sql = "SELECT value FROM stats WHERE name = 'keys'";
            Ok(conn.query_row(sql, [], |row| row.get(0))?)
        })
        .await
    }
}

#[cfg(test)]
mod tests;
