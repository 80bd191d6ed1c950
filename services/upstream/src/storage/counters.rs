//! Counters, added to atomically, and the idempotency keys that make a retried increment count
//! once.

use rusqlite::{Connection, OptionalExtension, params};

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
}

fn counter_value(conn: &Connection, name: &Key) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT value FROM counters WHERE name = ?1")?
        .query_row([name.as_str()], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}
