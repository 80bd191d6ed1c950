//! Counters, added to atomically, and the idempotency keys that make a retried increment count
//! once.
//!
//! One counter's key is remembered per counter. A batch of increments (many counters in one
//! atomic step) has one key for the whole batch, remembered with a digest of what it asked
//! for and the values it produced: a client that sends many counts at once (the consumer's
//! clicks) leaves one row per batch, not one per counter.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::schema::unix_now;
use super::{Store, StoreError};
use crate::key::Key;

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

/// What an `increment_many` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Increments {
    /// Counted now; each counter's value after its increment, in the batch's order.
    Counted { values: Vec<i64> },
    /// This batch's idempotency key was already counted; the values it produced then.
    Replayed { values: Vec<i64> },
    /// This idempotency key was used for a different batch.
    KeyReused,
    /// This counter would leave the range of a 64-bit signed integer; nothing was counted.
    Overflow { name: Key },
}

impl Store {
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
                set_counter(conn, name.as_str(), value)?;
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

    /// Applies every increment of `batch`, in order (a counter may appear more than once), all
    /// or none, once per `idempotency_key`.
    pub async fn increment_many(
        &self,
        batch: Vec<(Key, i64)>,
        idempotency_key: Option<String>,
    ) -> Result<Increments, StoreError> {
        self.writer
            .run(move |conn, _| {
                let digest = batch_digest(&batch);
                if let Some(key) = &idempotency_key {
                    let earlier: Option<(Vec<u8>, String)> = conn
                        .prepare_cached(
                            "SELECT digest, answer FROM batch_idempotency WHERE key = ?1",
                        )?
                        .query_row([key], |row| Ok((row.get(0)?, row.get(1)?)))
                        .optional()?;
                    if let Some((earlier_digest, answer)) = earlier {
                        if earlier_digest != digest {
                            return Ok(Increments::KeyReused);
                        }
                        let values = serde_json::from_str(&answer).map_err(|error| {
                            rusqlite::Error::FromSqlConversionFailure(
                                1,
                                rusqlite::types::Type::Text,
                                Box::new(error),
                            )
                        })?;
                        return Ok(Increments::Replayed { values });
                    }
                }
                // Every sum is known before anything is written, so an overflow writes nothing.
                let mut current: HashMap<&str, i64> = HashMap::new();
                let mut values = Vec::with_capacity(batch.len());
                for (name, amount) in &batch {
                    let value = match current.get(name.as_str()) {
                        Some(value) => *value,
                        None => counter_value(conn, name)?,
                    };
                    let Some(value) = value.checked_add(*amount) else {
                        return Ok(Increments::Overflow { name: name.clone() });
                    };
                    current.insert(name.as_str(), value);
                    values.push(value);
                }
                for (name, value) in &current {
                    set_counter(conn, name, *value)?;
                }
                if let Some(key) = &idempotency_key {
                    let answer = serde_json::to_string(&values).expect("integers serialize");
                    conn.prepare_cached(
                        "INSERT INTO batch_idempotency (key, digest, answer, created_at)
                         VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![key, digest, answer, unix_now()])?;
                }
                Ok(Increments::Counted { values })
            })
            .await
    }

    /// The counter's value; 0 when it was never incremented.
    pub async fn counter(&self, name: Key) -> Result<i64, StoreError> {
        self.read(move |conn| counter_value(conn, &name)).await
    }
}

fn counter_value(conn: &Connection, name: &Key) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT value FROM counters WHERE name = ?1")?
        .query_row([name.as_str()], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

fn set_counter(conn: &Connection, name: &str, value: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO counters (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![name, value])?;
    Ok(())
}

/// What identifies a batch's request: a SHA-256 of its names and amounts, in order.
fn batch_digest(batch: &[(Key, i64)]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    for (name, amount) in batch {
        // A name is at most 256 bytes; its length first keeps two batches from reading alike.
        hasher.update((name.as_str().len() as u64).to_be_bytes());
        hasher.update(name.as_str());
        hasher.update(amount.to_be_bytes());
    }
    hasher.finalize().to_vec()
}
