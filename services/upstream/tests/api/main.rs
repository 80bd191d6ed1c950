//! In-process tests of the upstream's HTTP contract: each test starts its own instance on port
//! 0 with its own database file, so they run in parallel.

// Test code: an unwrap that fails is a failing test, with its message.
#![allow(clippy::unwrap_used)]

mod counters;
mod cross_cutting;
mod kv;
