//! The single writer: every change to the database goes through one thread, in group commits.
//!
//! `synchronous=FULL` makes each `COMMIT` wait for the disk. Doing that once per request would
//! cap durable writes at the disk's flush rate, so the writer takes every job waiting in its
//! queue (up to [`MAX_BATCH`]), runs each in its own savepoint inside one transaction, commits
//! once, and only then answers each job. A job that fails rolls back its own savepoint and no
//! one else's; a failed commit fails every job of the batch. No caller hears "done" before its
//! change is on disk.
//!
//! The writer is also the only one to change the [read cache](super::cache): after a commit it
//! records what the batch wrote, before answering, and it loads keys that readers missed, in
//! its own order, so the cache never holds anything older than what is committed.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus::{Histogram, IntCounter, Registry};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::StoreError;
use super::cache::{self, Known, ReadCache};
use super::schema;

/// What a job changed, for the read cache: each key and its new state.
pub(super) type Effects = Vec<(String, Known)>;

/// The most jobs one commit carries.
pub const MAX_BATCH: usize = 256;

/// Writes that may wait for the writer by default (`WRITE_QUEUE_LIMIT`): 16 full commits.
pub const DEFAULT_QUEUE: usize = 4096;

/// Room in the queue beyond the writes for cache-load hints, which never take a write's place.
const LOAD_ROOM: usize = 1024;

/// How often expired idempotency keys are removed (on the next write after this much time).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// A unit of work for the writer.
trait Job: Send {
    /// Runs inside the batch's transaction; returns how to answer once the commit's outcome is
    /// known, and whether the job itself failed for want of disk space.
    fn run(self: Box<Self>, tx: &mut Transaction<'_>, effects: &mut Effects) -> (Completion, bool);
    /// Answers without having run, when the batch could not even begin.
    fn refuse(self: Box<Self>, error: StoreError);
}

type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A caller's closure and the channel its answer goes back on.
struct Pending<F, T> {
    work: F,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<F, T> Job for Pending<F, T>
where
    T: Send + 'static,
    F: FnOnce(&Connection, &mut Effects) -> Result<T, StoreError> + Send + 'static,
{
    fn run(self: Box<Self>, tx: &mut Transaction<'_>, effects: &mut Effects) -> (Completion, bool) {
        let Pending { work, reply } = *self;
        let outcome = tx
            .savepoint()
            .map_err(StoreError::from)
            .and_then(|savepoint| {
                let mut own = Effects::new();
                let outcome = work(&savepoint, &mut own)?;
                savepoint.commit()?;
                // Only a job whose changes are kept reports them.
                effects.append(&mut own);
                Ok(outcome)
            });
        let out_of_space = matches!(outcome, Err(StoreError::Full));
        let complete = Box::new(move |committed: Result<(), StoreError>| {
            let _ = reply.send(committed.and(outcome));
        });
        (complete, out_of_space)
    }

    fn refuse(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

enum Message {
    /// A job, and the place it holds among the writes that may wait (none for the reads of an
    /// in-memory database).
    Job(Box<dyn Job>, Option<OwnedSemaphorePermit>),
    /// A reader missed this key: cache its committed state.
    Load(String),
    Close,
}

/// The handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub(super) struct Writer {
    queue: mpsc::Sender<Message>,
    /// A permit for each write that may wait in the queue; one that finds none is refused.
    room: Arc<Semaphore>,
    /// Writes refused for want of room.
    busy: IntCounter,
}

/// What the writer thread needs besides its connection.
pub(super) struct WriterContext {
    pub batch_sizes: Histogram,
    pub cache: ReadCache,
    pub full: FullDisk,
}

/// How long a full disk goes without a log line while writes keep being refused.
const FULL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Writes refused because the disk is full: counted in a metric, and logged once when a burst
/// begins, then at most every [`FULL_LOG_EVERY`], and once more when writes succeed again,
/// rather than once per request.
pub(super) struct FullDisk {
    refused: IntCounter,
    unlogged: u64,
    last_logged: Option<Instant>,
}

impl FullDisk {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let refused = IntCounter::new(
            "upstream_storage_full_total",
            "Writes refused because the disk was full",
        )?;
        registry.register(Box::new(refused.clone()))?;
        Ok(FullDisk {
            refused,
            unlogged: 0,
            last_logged: None,
        })
    }

    fn refused(&mut self, writes: usize) {
        self.refused.inc_by(writes as u64);
        self.unlogged += writes as u64;
        if self
            .last_logged
            .is_none_or(|at| at.elapsed() >= FULL_LOG_EVERY)
        {
            log::error!(
                "storage: the disk is full; {} writes refused (reads go on; writes resume when there is space)",
                self.unlogged
            );
            self.unlogged = 0;
            self.last_logged = Some(Instant::now());
        }
    }

    fn committed(&mut self) {
        if self.last_logged.take().is_some() {
            log::warn!(
                "storage: writes succeed again ({} more refused since the last line)",
                self.unlogged
            );
            self.unlogged = 0;
        }
    }
}

impl Writer {
    /// Starts the writer thread, which owns `conn` from now on; at most `queue` jobs wait for
    /// it, and `busy` counts the writes refused beyond that.
    pub fn start(
        conn: Connection,
        context: WriterContext,
        queue: usize,
        busy: IntCounter,
    ) -> (Writer, JoinHandle<()>) {
        let room = Arc::new(Semaphore::new(queue));
        let (queue, jobs) = mpsc::channel(queue + LOAD_ROOM);
        let thread = std::thread::Builder::new()
            .name("storage-writer".to_owned())
            .spawn(move || run(conn, jobs, context))
            .expect("the writer thread can be started");
        (Writer { queue, room, busy }, thread)
    }

    /// Runs `f` in its own savepoint and answers once the transaction holding it has committed
    /// (and the cache holds what `f` reported in its effects). When as many writes as the
    /// queue has room for are waiting already it does not wait: [`StoreError::Busy`], so that
    /// more writers than the disk can commit for get a prompt "try again" rather than a wait
    /// that grows with their number.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Effects) -> Result<T, StoreError> + Send + 'static,
    {
        let place = self.room.clone().try_acquire_owned().map_err(|_| {
            self.busy.inc();
            StoreError::Busy
        })?;
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Pending { work: f, reply });
        // Never waits long: loads leave room for every write that holds a place.
        self.queue
            .send(Message::Job(job, Some(place)))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Like [`Writer::run`], but waits for room in the queue: for the reads of an in-memory
    /// database, which have no other connection to go to.
    pub async fn run_queued<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Effects) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Pending { work: f, reply });
        self.queue
            .send(Message::Job(job, None))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Asks the thread to cache `key`; dropped where it would take room a write may need, as it
    /// is only a hint.
    pub fn load(&self, key: String) {
        if self.queue.capacity() > self.room.available_permits() {
            let _ = self.queue.try_send(Message::Load(key));
        }
    }

    /// Asks the thread to finish the jobs already queued and stop.
    pub async fn close(&self) {
        let _ = self.queue.send(Message::Close).await;
    }
}

fn run(mut conn: Connection, mut queue: mpsc::Receiver<Message>, mut context: WriterContext) {
    let mut last_prune = Instant::now();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut loads = Vec::new();
    let mut closing = false;
    while !closing {
        let Some(first) = queue.blocking_recv() else {
            break;
        };
        for message in std::iter::once(first).chain(std::iter::from_fn(|| queue.try_recv().ok())) {
            match message {
                // Taken off the queue: its place goes to the next write.
                Message::Job(job, _place) => batch.push(job),
                Message::Load(key) => loads.push(key),
                Message::Close => {
                    closing = true;
                    break;
                }
            }
            if batch.len() == MAX_BATCH {
                break;
            }
        }
        if !batch.is_empty() {
            context.batch_sizes.observe(batch.len() as f64);
            let prune = last_prune.elapsed() >= PRUNE_EVERY;
            if prune {
                last_prune = Instant::now();
            }
            commit_batch(&mut conn, batch.drain(..), prune, &mut context);
        }
        // After the batch: a load sees every write committed before it.
        for key in loads.drain(..) {
            if context.cache.contains(&key) {
                continue;
            }
            match cache::load_known(&conn, &key) {
                Ok(known) => context.cache.record(key, known),
                Err(error) => log::warn!("storage: loading {key:?} into the cache failed: {error}"),
            }
        }
    }
    if let Err(error) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        log::warn!("storage: final checkpoint failed: {error}");
    }
    log::info!("storage: writer stopped");
}

fn commit_batch(
    conn: &mut Connection,
    jobs: impl Iterator<Item = Box<dyn Job>>,
    prune: bool,
    context: &mut WriterContext,
) {
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(error) => {
            let error = StoreError::from(error);
            let jobs: Vec<_> = jobs.collect();
            match error {
                StoreError::Full => context.full.refused(jobs.len()),
                _ => log::error!("storage: cannot begin a transaction: {error}"),
            }
            jobs.into_iter().for_each(|job| job.refuse(error.clone()));
            return;
        }
    };
    let mut effects = Effects::new();
    let mut out_of_space = 0;
    let completions: Vec<Completion> = jobs
        .map(|job| {
            let (complete, full) = job.run(&mut tx, &mut effects);
            out_of_space += usize::from(full);
            complete
        })
        .collect();
    if prune {
        match schema::prune_idempotency_keys(&tx) {
            Ok(0) => {}
            Ok(n) => log::info!("storage: removed {n} expired idempotency keys"),
            Err(error) => log::warn!("storage: pruning idempotency keys failed: {error}"),
        }
    }
    let committed = tx.commit().map_err(StoreError::from);
    match &committed {
        Ok(()) if out_of_space > 0 => context.full.refused(out_of_space),
        Ok(()) => context.full.committed(),
        Err(StoreError::Full) => context.full.refused(completions.len()),
        Err(error) => log::error!(
            "storage: commit failed, {} writes refused: {error}",
            completions.len()
        ),
    }
    if committed.is_ok() {
        // Before anyone is answered, so that a client reads its own writes.
        for (key, known) in effects {
            context.cache.record(key, known);
        }
    }
    for complete in completions {
        complete(committed.clone());
    }
}
