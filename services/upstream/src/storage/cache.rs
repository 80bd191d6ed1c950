//! The read cache: recently read and written values, in memory, in front of SQLite.
//!
//! Only the writer thread changes it. After each commit it records what the batch wrote (a
//! deleted key as known-absent) before any caller of that batch is answered, so a client always
//! reads its own writes. A read that misses goes to SQLite and asks the writer to load the key;
//! because loads run in the writer's order, after every write committed before them, a load can
//! never bring back a value that a later write replaced. The cache is bounded in bytes
//! (`READ_CACHE_BYTES`) and evicts what is least used.

use std::sync::Arc;

use prometheus::{IntCounter, Registry};
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension};

use super::Entry;

/// What the cache knows of a key: its entry, or that it does not exist.
pub(super) type Known = Option<Entry>;

/// Rough per-entry bookkeeping cost, added to the key and value bytes.
const OVERHEAD: u64 = 64;

#[derive(Clone)]
struct ByBytes;

impl Weighter<String, Known> for ByBytes {
    fn weight(&self, key: &String, known: &Known) -> u64 {
        key.len() as u64 + known.as_ref().map_or(0, |e| e.value.len() as u64) + OVERHEAD
    }
}

/// The cache, shared by the readers and the writer; disabled when its capacity is 0.
#[derive(Clone)]
pub(super) struct ReadCache {
    entries: Option<Arc<Cache<String, Known, ByBytes>>>,
    hits: IntCounter,
    misses: IntCounter,
}

impl ReadCache {
    pub fn new(capacity_bytes: u64, registry: &Registry) -> prometheus::Result<Self> {
        let hits = IntCounter::new(
            "upstream_read_cache_hits_total",
            "GETs answered from memory",
        )?;
        let misses = IntCounter::new("upstream_read_cache_misses_total", "GETs that read SQLite")?;
        registry.register(Box::new(hits.clone()))?;
        registry.register(Box::new(misses.clone()))?;
        let entries = (capacity_bytes > 0).then(|| {
            let estimated_items = (capacity_bytes / 512).clamp(16, 1 << 20) as usize;
            Arc::new(Cache::with_weighter(
                estimated_items,
                capacity_bytes,
                ByBytes,
            ))
        });
        Ok(ReadCache {
            entries,
            hits,
            misses,
        })
    }

    /// What is known of `key`, counting the hit or miss.
    pub fn get(&self, key: &str) -> Option<Known> {
        let known = self.entries.as_ref().and_then(|entries| entries.get(key));
        match known {
            Some(_) => self.hits.inc(),
            None => self.misses.inc(),
        }
        known
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries
            .as_ref()
            .is_some_and(|entries| entries.get(key).is_some())
    }

    pub fn is_enabled(&self) -> bool {
        self.entries.is_some()
    }

    /// Records the committed state of `key`. Writer thread only.
    pub fn record(&self, key: String, known: Known) {
        if let Some(entries) = &self.entries {
            entries.insert(key, known);
        }
    }
}

/// The committed state of `key`, read from SQLite.
pub(super) fn load_known(conn: &Connection, key: &str) -> rusqlite::Result<Known> {
    conn.prepare_cached("SELECT value, version FROM kv WHERE key = ?1")?
        .query_row([key], |row| {
            Ok(Entry {
                value: Bytes::from(row.get::<_, String>(0)?),
                version: row.get(1)?,
            })
        })
        .optional()
}
