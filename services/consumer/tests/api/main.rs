//! In-process tests of the consumer against a real upstream running in the same process, each
//! pair on its own ephemeral ports with its own database.

// Test code: an unwrap that fails is a failing test, with its message.
#![allow(clippy::unwrap_used)]

mod core_only;
mod hostile;
mod links;
mod on_postgres;
mod on_redis;
mod page;
mod planted;
mod resilience;
