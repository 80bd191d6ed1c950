//! Values under keys: JSON text with a version from one database-wide sequence, written only
//! when the caller's precondition holds.

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Entry, Store, StoreError, schema};
use crate::key::Key;

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

/// One page of a key listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub keys: Vec<(String, i64)>,
    /// The `after` to ask for the next page, if there is one.
    pub next: Option<String>,
}

impl Store {
    /// The value at `key`: from the cache when it knows, otherwise from SQLite (and then the
    /// writer is asked to cache it).
    pub async fn get(&self, key: Key) -> Result<Option<Entry>, StoreError> {
        if let Some(known) = self.cache.get(key.as_str()) {
            return Ok(known);
        }
        let name = key.as_str().to_owned();
        let entry = self
            .read(move |conn| Ok(super::cache::load_known(conn, &name)?))
            .await?;
        if self.cache.is_enabled() {
            self.writer.load(key.to_string());
        }
        Ok(entry)
    }

    /// The values at `keys`, in their order: the cache answers what it knows, and one read
    /// transaction the rest, so that every value read from SQLite is of the same moment.
    pub async fn get_many(&self, keys: Vec<Key>) -> Result<Vec<Option<Entry>>, StoreError> {
        let mut found: Vec<Option<Option<Entry>>> = keys
            .iter()
            .map(|key| self.cache.get(key.as_str()))
            .collect();
        let missing: Vec<String> = keys
            .iter()
            .zip(&found)
            .filter(|(_, known)| known.is_none())
            .map(|(key, _)| key.to_string())
            .collect();
        if !missing.is_empty() {
            let loaded = {
                let missing = missing.clone();
                self.read(move |conn| {
                    let transaction = conn.unchecked_transaction()?;
                    let loaded = missing
                        .iter()
                        .map(|key| super::cache::load_known(&transaction, key))
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    transaction.finish()?;
                    Ok(loaded)
                })
                .await?
            };
            let mut loaded = loaded.into_iter();
            for slot in found.iter_mut().filter(|slot| slot.is_none()) {
                *slot = loaded.next();
            }
            if self.cache.is_enabled() {
                for key in missing {
                    self.writer.load(key);
                }
            }
        }
        Ok(found.into_iter().map(Option::flatten).collect())
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
                if current.is_none() {
                    schema::count_keys(conn, 1)?;
                }
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
                schema::count_keys(conn, -1)?;
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
