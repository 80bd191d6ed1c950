//! Click counting that never slows a redirect and never counts a click twice.
//!
//! A redirect only bumps an in-memory count for its code ([`Clicks::record`], a map update
//! under a mutex). A background task sends the counts every `CLICK_FLUSH_INTERVAL`: the codes
//! clicked since the last flush, up to [`MAX_BATCH_CODES`] to a batch, each batch in one atomic
//! call with its own `Idempotency-Key`, one batch after another. So the backend remembers one
//! key per batch — at most `ceil(codes clicked / 1000)` a flush, whatever the number of codes
//! or clicks — and a flush is one durable write for up to a thousand codes.
//!
//! A batch that fails on the way (backend away, circuit open, deadline) is kept whole with its
//! key, so sending it again can never count it twice, and new clicks go into a new batch. What
//! is kept is bounded by `CLICK_BUFFER_LIMIT` codes' counts waiting (in batches or not); clicks
//! beyond are dropped and counted in `consumer_clicks_dropped_total`. On shutdown everything
//! pending is sent once more, within a bound.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use prometheus::{IntCounter, IntGauge, Registry};

use crate::backend::store::MAX_BATCH_CODES;
use crate::backend::{Backend, BackendError};
use crate::links::Code;

/// Batches sent to the backend at the same time during a flush: one, so that a flush's writes
/// take turns with the lookups rather than hold the backend in a burst. Sixteen at a time held
/// PostgreSQL busy for hundreds of milliseconds each second with codes drawn from 10⁵ links, and
/// a redirect's p99 with it (200–780 ms, against 6–8 ms one at a time, in `bench/scale.py`'s
/// placement); Redis ran the sixteen scripts back to back (p99 28–62 ms, against 3–7 ms).
const CONCURRENT_SENDS: usize = 1;

/// Clicks for up to [`MAX_BATCH_CODES`] codes, to be added in the backend under one idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Batch {
    /// Each code and its clicks.
    counts: Vec<(String, u64)>,
    key: String,
}

impl Batch {
    fn clicks(&self) -> u64 {
        self.counts.iter().map(|(_, by)| by).sum()
    }
}

#[derive(Debug, Default)]
struct Pending {
    /// Clicks not yet in a batch, by code.
    counts: HashMap<String, u64>,
    /// Batches that were tried and must be sent again as they are.
    unsent: VecDeque<Batch>,
    /// The codes' counts in `unsent`.
    unsent_codes: usize,
}

impl Pending {
    /// Codes' counts waiting, in batches or not: what `CLICK_BUFFER_LIMIT` bounds.
    fn waiting(&self) -> usize {
        self.counts.len() + self.unsent_codes
    }
}

/// What one flush did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Clicks the backend acknowledged.
    pub sent: u64,
    /// Clicks kept for a later flush.
    pub kept: u64,
    /// Clicks given up on (the backend refused them, or no room to keep them).
    pub dropped: u64,
}

/// The click buffer of this process.
pub struct Clicks {
    pending: Mutex<Pending>,
    limit: usize,
    backend: Arc<Backend>,
    pending_gauge: IntGauge,
    sent_total: IntCounter,
    dropped_total: IntCounter,
}

impl Clicks {
    pub fn new(
        backend: Arc<Backend>,
        limit: usize,
        registry: &Registry,
    ) -> prometheus::Result<Self> {
        let pending_gauge = IntGauge::new(
            "consumer_clicks_pending",
            "Clicks counted but not yet acknowledged by the backend",
        )?;
        let sent_total = IntCounter::new(
            "consumer_clicks_sent_total",
            "Clicks acknowledged by the backend",
        )?;
        let dropped_total = IntCounter::new(
            "consumer_clicks_dropped_total",
            "Clicks given up on: buffer full, or refused by the backend",
        )?;
        registry.register(Box::new(pending_gauge.clone()))?;
        registry.register(Box::new(sent_total.clone()))?;
        registry.register(Box::new(dropped_total.clone()))?;
        Ok(Clicks {
            pending: Mutex::new(Pending::default()),
            limit,
            backend,
            pending_gauge,
            sent_total,
            dropped_total,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one click on `code`; never waits on the backend.
    pub fn record(&self, code: &Code) {
        let mut pending = self.lock();
        if let Some(count) = pending.counts.get_mut(code.as_str()) {
            *count += 1;
        } else if pending.waiting() < self.limit {
            pending.counts.insert(code.to_string(), 1);
        } else {
            drop(pending);
            self.dropped_total.inc();
            return;
        }
        drop(pending);
        self.pending_gauge.inc();
    }

    /// Clicks on `code` counted here and not yet acknowledged by the backend.
    pub fn pending_for(&self, code: &Code) -> u64 {
        let pending = self.lock();
        let unsent: u64 = pending
            .unsent
            .iter()
            .flat_map(|batch| &batch.counts)
            .filter(|(batched, _)| batched == code.as_str())
            .map(|(_, by)| by)
            .sum();
        pending.counts.get(code.as_str()).copied().unwrap_or(0) + unsent
    }

    /// Sends everything pending; failures are kept for the next flush.
    pub async fn flush(&self) -> Flushed {
        let batches: Vec<Batch> = {
            let mut pending = self.lock();
            let fresh: Vec<(String, u64)> = pending.counts.drain().collect();
            pending.unsent_codes = 0;
            let fresh = fresh.chunks(MAX_BATCH_CODES).map(|counts| Batch {
                counts: counts.to_vec(),
                key: uuid::Uuid::new_v4().to_string(),
            });
            pending.unsent.drain(..).chain(fresh).collect()
        };
        if batches.is_empty() {
            return Flushed::default();
        }
        let outcomes: Vec<(Batch, Result<(), BackendError>)> = futures_util::stream::iter(batches)
            .map(|batch| async move {
                let outcome = self.backend.add_clicks(&batch.counts, &batch.key).await;
                (batch, outcome)
            })
            .buffer_unordered(CONCURRENT_SENDS)
            .collect()
            .await;

        let mut flushed = Flushed::default();
        let mut pending = self.lock();
        for (batch, outcome) in outcomes {
            let clicks = batch.clicks();
            match outcome {
                Ok(()) => flushed.sent += clicks,
                Err(BackendError::Malformed(reason)) => {
                    log::error!(
                        "clicks: the backend refused a batch of {clicks} clicks on {} codes: \
                         {reason}",
                        batch.counts.len()
                    );
                    flushed.dropped += clicks;
                }
                Err(_) if pending.waiting() + batch.counts.len() <= self.limit => {
                    flushed.kept += clicks;
                    pending.unsent_codes += batch.counts.len();
                    pending.unsent.push_back(batch);
                }
                Err(_) => flushed.dropped += clicks,
            }
        }
        drop(pending);
        self.sent_total.inc_by(flushed.sent);
        self.dropped_total.inc_by(flushed.dropped);
        self.pending_gauge
            .sub((flushed.sent + flushed.dropped) as i64);
        if flushed.dropped > 0 || flushed.kept > 0 {
            log::warn!(
                "clicks: {} sent, {} kept for later, {} dropped",
                flushed.sent,
                flushed.kept,
                flushed.dropped
            );
        }
        flushed
    }

    /// Flushes every `interval` until `stop` is notified; then flushes one last time, giving up
    /// after `last_chance`.
    pub async fn run(
        self: Arc<Self>,
        interval: Duration,
        stop: Arc<tokio::sync::Notify>,
        last_chance: Duration,
    ) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    self.flush().await;
                }
                () = stop.notified() => break,
            }
        }
        match tokio::time::timeout(last_chance, self.flush()).await {
            Ok(flushed) => log::info!(
                "clicks: final flush sent {}, could not send {}",
                flushed.sent,
                flushed.kept + flushed.dropped
            ),
            Err(_) => log::error!(
                "clicks: final flush did not finish within {last_chance:?}; {} clicks lost",
                self.pending_gauge.get()
            ),
        }
    }
}
