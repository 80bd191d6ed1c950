//! The tables, the pragmas that make every answered write durable, and their upkeep.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

use super::OpenError;

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

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
    -- A batch of increments' key: a digest of the batch and the values it produced, as JSON.
    CREATE TABLE IF NOT EXISTS batch_idempotency (
        key        TEXT PRIMARY KEY,
        digest     BLOB NOT NULL,
        answer     TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS batch_idempotency_created_at
        ON batch_idempotency (created_at);
    CREATE TABLE IF NOT EXISTS sequence (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    INSERT OR IGNORE INTO sequence (name, value) VALUES ('version', 0);
    -- How many keys kv holds, kept by every write that adds or removes one, so that /v1/info
    -- (which every consumer's readiness probe asks) costs the same at any size. A database from
    -- before it is counted once, here.
    CREATE TABLE IF NOT EXISTS stats (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    INSERT OR IGNORE INTO stats (name, value) SELECT 'keys', count(*) FROM kv;
";

/// Makes `conn` ready: a busy timeout, WAL (really in force), `synchronous=FULL`, the tables.
pub(super) fn prepare(conn: &Connection) -> Result<(), OpenError> {
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

/// Removes the idempotency keys older than [`IDEMPOTENCY_TTL`]; the writer calls it now and
/// then, inside one of its transactions.
pub(super) fn prune_idempotency_keys(conn: &Connection) -> rusqlite::Result<usize> {
    let cutoff = unix_now() - IDEMPOTENCY_TTL.as_secs() as i64;
    let one = conn.execute("DELETE FROM idempotency WHERE created_at < ?1", [cutoff])?;
    let batches = conn.execute(
        "DELETE FROM batch_idempotency WHERE created_at < ?1",
        [cutoff],
    )?;
    Ok(one + batches)
}

/// Adds `change` (1 or -1) to the number of keys, in the caller's transaction.
pub(super) fn count_keys(conn: &Connection, change: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE stats SET value = value + ?1 WHERE name = 'keys'")?
        .execute([change])
        .map(drop)
}

pub(super) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}
