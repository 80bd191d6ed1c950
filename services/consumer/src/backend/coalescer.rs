//! Coalesced lookups: natural batching (also called smart batching), the pattern behind
//! GraphQL's DataLoader and Redis pipelining. While lookups are on their way to the backend,
//! the ones that arrive behind them wait, and the next free call carries them all together. No
//! timer is involved: a lone lookup goes at once, and under load one call carries many, so the
//! cost of a call (its request, the kernel's socket work, the backend's own overhead) is
//! shared among them.
//!
//! The rules:
//!
//! - At most [`Coalescer::new`]'s `calls` lookup calls are in flight. A lookup that arrives
//!   while they all are waits in the queue; each call, when it ends, hands its slot to the next
//!   up to [`MAX_LOOKUPS_PER_CALL`] waiting lookups, which go together in a new call.
//! - A code asked for by several waiters in one call is looked up once.
//! - Every waiter keeps its own deadline, counted from its arrival: one whose deadline passes
//!   gets [`BackendError::Timeout`] while the call goes on for the others.
//! - A waiter that goes away (its client disconnected) costs nothing: a code no live waiter
//!   still wants is left out of the call.
//! - No waiter's going away cancels a call. A lookup that finds a slot free is alone (nothing
//!   waits while a slot is free), so its call runs in its own task, with nothing spawned and
//!   nothing sent between tasks: a lone lookup pays nothing for the coalescing. Should it stop
//!   waiting (its deadline, its client), its call is handed to a task of its own and ends
//!   there. The calls for waiters in the queue run in tasks of their own from the start.
//! - What a call runs ([`Fetch`]) is the backend's whole call, with its deadline, its one
//!   retry and its one verdict for the circuit breaker: a failed call is one failure, however
//!   many waiters it carried.
//! - A call carries the request id (`X-Request-Id`) of the first lookup it serves, so that a
//!   lone lookup is followed into the backend's log as before; the consumer logs a call's
//!   failure under that id.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use shared::request_id::{self, RequestId};
use tokio::sync::oneshot;

use super::BackendError;
use crate::links::{Code, LinkDocument};

/// The most lookups one call carries: the v1 contract's bound on a batch read.
pub const MAX_LOOKUPS_PER_CALL: usize = 1000;

/// One code's answer: its link, none, or why it could not be read (a failed call, or this
/// value alone unreadable or too large).
pub type Lookup = Result<Option<LinkDocument>, BackendError>;

/// What one call answers: each code's lookup, in their order, or why the call failed.
type Answers = Result<Vec<Lookup>, BackendError>;

/// The backend call that looks up distinct codes, answering each in their order.
pub type Fetch = Arc<dyn Fn(Vec<Code>) -> BoxFuture<'static, Answers> + Send + Sync>;

/// A lookup waiting for a call.
struct Waiter {
    code: Code,
    request_id: Option<RequestId>,
    answer: oneshot::Sender<Lookup>,
}

/// Lookups waiting, and calls in flight. Nothing waits while fewer than `calls` are in flight:
/// a lookup waits only when every slot is taken, and a slot is given up only when nothing waits.
struct Queue {
    waiting: Vec<Waiter>,
    in_flight: usize,
}

/// Lookups coalesced into calls of [`Fetch`]; one per backend.
pub struct Coalescer {
    fetch: Fetch,
    calls: usize,
    queue: Mutex<Queue>,
    /// Told how many lookups each call answers.
    observe: Box<dyn Fn(usize) + Send + Sync>,
}

impl Coalescer {
    /// At most `calls` calls of `fetch` in flight; `observe` is told how many lookups each call
    /// answers (a code asked by several waiters counts for each).
    pub fn new(
        fetch: Fetch,
        calls: usize,
        observe: impl Fn(usize) + Send + Sync + 'static,
    ) -> Self {
        assert!(calls > 0, "at least one call must be allowed");
        Coalescer {
            fetch,
            calls,
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                in_flight: 0,
            }),
            observe: Box::new(observe),
        }
    }

    /// The link stored under `code`, looked up together with whatever else is waiting; at
    /// most `deadline` from now.
    pub async fn lookup(self: &Arc<Self>, code: Code, deadline: Duration) -> Lookup {
        let request_id = request_id::current();
        let answered = {
            let mut queue = self.queue();
            if queue.in_flight < self.calls {
                debug_assert!(queue.waiting.is_empty(), "lookups wait beside a free slot");
                queue.in_flight += 1;
                None
            } else {
                let (answer, answered) = oneshot::channel();
                queue.waiting.push(Waiter {
                    code: code.clone(),
                    request_id: request_id.clone(),
                    answer,
                });
                Some(answered)
            }
        };
        let Some(answered) = answered else {
            return self.call_alone(code, request_id, deadline).await;
        };
        match tokio::time::timeout(deadline, answered).await {
            Ok(Ok(lookup)) => lookup,
            Ok(Err(_)) => Err(ended_without_an_answer()),
            Err(_) => Err(BackendError::Timeout(deadline)),
        }
    }

    /// A lone lookup's call, in the waiter's own task while it waits (see [`Alone`]).
    async fn call_alone(
        self: &Arc<Self>,
        code: Code,
        request_id: Option<RequestId>,
        deadline: Duration,
    ) -> Lookup {
        let slot = Slot(self.clone());
        (self.observe)(1);
        let fetch = (self.fetch)(vec![code]);
        let call: BoxFuture<'static, Answers> = match request_id {
            // Scoped again, for the task it may be handed to.
            Some(id) => Box::pin(request_id::scope(id, fetch)),
            None => fetch,
        };
        let mut alone = Alone {
            call: Some(call),
            slot: Some(slot),
        };
        let call = alone.call.as_mut().expect("the call, not yet ended");
        let ended = tokio::time::timeout(deadline, AssertUnwindSafe(call).catch_unwind()).await;
        match ended {
            // Still under way: `alone`, dropped, hands the call to a task of its own.
            Err(_) => Err(BackendError::Timeout(deadline)),
            Ok(ended) => {
                alone.call = None;
                match ended {
                    Ok(answers) => answer(&answers, 0),
                    // The call panicked, as a bug would: it must not be polled again.
                    Err(_) => Err(ended_without_an_answer()),
                }
            }
        }
    }

    /// One call for the distinct codes live waiters want; each waiter gets its code's answer.
    async fn call(&self, waiters: Vec<Waiter>) {
        let waiters: Vec<Waiter> = waiters
            .into_iter()
            .filter(|waiter| !waiter.answer.is_closed())
            .collect();
        let mut codes: Vec<Code> = Vec::with_capacity(waiters.len());
        let mut index: HashMap<&str, usize> = HashMap::with_capacity(waiters.len());
        for waiter in &waiters {
            if !index.contains_key(waiter.code.as_str()) {
                index.insert(waiter.code.as_str(), codes.len());
                codes.push(waiter.code.clone());
            }
        }
        if codes.is_empty() {
            return;
        }
        (self.observe)(waiters.len());
        let fetch = (self.fetch)(codes);
        let answers = match waiters[0].request_id.clone() {
            Some(id) => request_id::scope(id, fetch).await,
            None => fetch.await,
        };
        let slots: Vec<usize> = waiters
            .iter()
            .map(|waiter| index[waiter.code.as_str()])
            .collect();
        for (waiter, slot) in waiters.into_iter().zip(slots) {
            // A waiter gone meanwhile is simply not told.
            let _ = waiter.answer.send(answer(&answers, slot));
        }
    }

    /// Gives a slot up, or, when lookups wait, hands it to a call for the next of them, in a
    /// task of its own.
    fn release(self: &Arc<Self>) {
        let runtime = tokio::runtime::Handle::try_current();
        let mut queue = self.queue();
        let (Ok(runtime), false) = (runtime, queue.waiting.is_empty()) else {
            queue.in_flight -= 1;
            // Without a runtime (it is shutting down) waiters can only be dropped, which tells
            // them their call ended without an answer.
            let dropped = std::mem::take(&mut queue.waiting);
            drop(queue);
            drop(dropped);
            return;
        };
        let waiters = take(&mut queue.waiting);
        drop(queue);
        runtime.spawn(Slot(self.clone()).call(waiters));
    }

    /// The queue, even after a call panicked while holding its lock (it holds no invariant a
    /// panic could break half-way).
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One slot of the calls in flight, released when dropped: when its call ends, when its call
/// panicked, or when the runtime shuts down. A failure so costs its own waiters, who are told
/// their call ended without an answer, and never a slot.
struct Slot(Arc<Coalescer>);

impl Slot {
    /// Calls `waiters` in this slot, then releases it.
    async fn call(self, waiters: Vec<Waiter>) {
        self.0.call(waiters).await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A lone lookup's call, run in the waiter's task. If the waiter stops waiting before the call
/// ends, the call is handed to a task of its own, and ends there (its verdict counts for the
/// circuit breaker) before its slot is released.
struct Alone {
    call: Option<BoxFuture<'static, Answers>>,
    slot: Option<Slot>,
}

impl Drop for Alone {
    fn drop(&mut self) {
        if let (Some(call), Some(slot)) = (self.call.take(), self.slot.take())
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = call.await;
                drop(slot);
            });
        }
    }
}

/// The answer at `slot` of a call's `answers`.
fn answer(answers: &Answers, slot: usize) -> Lookup {
    match answers {
        Ok(answers) => answers.get(slot).cloned().unwrap_or_else(|| {
            Err(BackendError::Malformed(
                "fewer answers than codes asked".to_owned(),
            ))
        }),
        Err(error) => Err(error.clone()),
    }
}

fn ended_without_an_answer() -> BackendError {
    BackendError::Failed("the lookup's call ended without an answer".to_owned())
}

/// The first [`MAX_LOOKUPS_PER_CALL`] of `waiting`, in their order of arrival.
fn take(waiting: &mut Vec<Waiter>) -> Vec<Waiter> {
    let rest = waiting.split_off(waiting.len().min(MAX_LOOKUPS_PER_CALL));
    std::mem::replace(waiting, rest)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::Semaphore;

    use super::*;

    const LONG: Duration = Duration::from_secs(10);

    /// A backend whose every call waits for a permit of `gate` (none: answers at once),
    /// records the codes it was asked for, and answers each with a link to
    /// `https://example.com/{code}`, or fails every call with `fail`.
    struct Fake {
        asked: Mutex<Vec<Vec<String>>>,
        /// The task each call started in.
        tasks: Mutex<Vec<tokio::task::Id>>,
        gate: Option<Arc<Semaphore>>,
        fail: Option<BackendError>,
        started: AtomicUsize,
    }

    fn fake(gate: Option<Arc<Semaphore>>, fail: Option<BackendError>) -> Arc<Fake> {
        Arc::new(Fake {
            asked: Mutex::default(),
            tasks: Mutex::default(),
            gate,
            fail,
            started: AtomicUsize::new(0),
        })
    }

    fn coalescer(fake: &Arc<Fake>, calls: usize) -> Arc<Coalescer> {
        let backend = fake.clone();
        let fetch: Fetch = Arc::new(move |codes: Vec<Code>| {
            let backend = backend.clone();
            Box::pin(async move {
                backend.tasks.lock().unwrap().push(tokio::task::id());
                backend.started.fetch_add(1, Ordering::SeqCst);
                if let Some(gate) = &backend.gate {
                    gate.acquire().await.unwrap().forget();
                }
                let names = codes.iter().map(|code| code.as_str().to_owned()).collect();
                backend.asked.lock().unwrap().push(names);
                if let Some(error) = &backend.fail {
                    return Err(error.clone());
                }
                Ok(codes
                    .iter()
                    .map(|code| Ok(Some(document(code.as_str()))))
                    .collect())
            })
        });
        Arc::new(Coalescer::new(fetch, calls, |_| {}))
    }

    fn document(code: &str) -> LinkDocument {
        LinkDocument {
            url: format!("https://example.com/{code}"),
            created_at: "2026-12-02T00:00:00Z".to_owned(),
            creation_id: None,
        }
    }

    fn code(text: &str) -> Code {
        Code::parse(text).unwrap()
    }

    fn url(lookup: &Lookup) -> String {
        lookup.as_ref().unwrap().as_ref().unwrap().url.clone()
    }

    fn spawn_lookup(
        coalescer: &Arc<Coalescer>,
        text: &str,
        deadline: Duration,
    ) -> tokio::task::JoinHandle<Lookup> {
        let (coalescer, code) = (coalescer.clone(), code(text));
        tokio::spawn(async move { coalescer.lookup(code, deadline).await })
    }

    /// Polls `condition` until it holds, for at most 5 s.
    async fn until(what: &str, condition: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !condition() {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn queued(coalescer: &Coalescer) -> usize {
        coalescer.queue.lock().unwrap().waiting.len()
    }

    #[tokio::test]
    async fn a_lone_lookup_is_called_at_once_alone_in_its_own_task() {
        let backend = fake(None, None);
        let coalescer = coalescer(&backend, 4);
        let (task, lookup) =
            tokio::spawn(
                async move { (tokio::task::id(), coalescer.lookup(code("a"), LONG).await) },
            )
            .await
            .unwrap();
        assert_eq!(url(&lookup), "https://example.com/a");
        assert_eq!(*backend.asked.lock().unwrap(), vec![vec!["a".to_owned()]]);
        assert_eq!(*backend.tasks.lock().unwrap(), vec![task]);
    }

    /// A lone lookup's call, whose waiter stops waiting (`stop`) before it ends: the call goes on
    /// to its end, holding its slot, and a lookup that arrived meanwhile is called after it.
    async fn a_lone_call_outlives_its_waiter<F: Future<Output = ()>>(
        stop: impl FnOnce(tokio::task::JoinHandle<Lookup>) -> F,
    ) {
        let gate = Arc::new(Semaphore::new(0));
        let backend = fake(Some(gate.clone()), None);
        let coalescer = coalescer(&backend, 1);
        let alone = spawn_lookup(&coalescer, "a", Duration::from_millis(50));
        until("the call starts", || {
            backend.started.load(Ordering::SeqCst) == 1
        })
        .await;
        stop(alone).await;
        let behind = spawn_lookup(&coalescer, "b", LONG);
        until("a lookup waits", || queued(&coalescer) == 1).await;
        gate.add_permits(2);
        assert_eq!(url(&behind.await.unwrap()), "https://example.com/b");
        assert_eq!(*backend.asked.lock().unwrap(), vec![vec!["a"], vec!["b"]]);
    }

    #[tokio::test]
    async fn a_lone_call_goes_on_when_its_waiters_deadline_passes() {
        a_lone_call_outlives_its_waiter(|alone| async move {
            let lookup = alone.await.unwrap();
            assert!(
                matches!(lookup, Err(BackendError::Timeout(_))),
                "{lookup:?}"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn a_lone_call_goes_on_when_its_waiter_goes_away() {
        a_lone_call_outlives_its_waiter(|alone| async move {
            alone.abort();
            assert!(alone.await.unwrap_err().is_cancelled());
        })
        .await;
    }

    #[tokio::test]
    async fn lookups_that_arrive_during_a_call_go_together_in_the_next_each_code_once() {
        let gate = Arc::new(Semaphore::new(0));
        let backend = fake(Some(gate.clone()), None);
        let coalescer = coalescer(&backend, 1);
        let first = spawn_lookup(&coalescer, "a", LONG);
        until("the first call starts", || {
            backend.started.load(Ordering::SeqCst) == 1
        })
        .await;
        let behind: Vec<_> = ["b", "c", "b", "a"]
            .iter()
            .map(|text| spawn_lookup(&coalescer, text, LONG))
            .collect();
        until("four lookups wait", || queued(&coalescer) == 4).await;
        gate.add_permits(2);

        assert_eq!(url(&first.await.unwrap()), "https://example.com/a");
        let mut answers = Vec::new();
        for task in behind {
            answers.push(url(&task.await.unwrap()));
        }
        assert_eq!(
            answers,
            ["b", "c", "b", "a"].map(|code| format!("https://example.com/{code}"))
        );
        assert_eq!(
            *backend.asked.lock().unwrap(),
            vec![vec!["a"], vec!["b", "c", "a"]]
        );
    }

    #[tokio::test]
    async fn no_more_calls_than_allowed_are_in_flight() {
        let gate = Arc::new(Semaphore::new(0));
        let backend = fake(Some(gate.clone()), None);
        let coalescer = coalescer(&backend, 2);
        let tasks: Vec<_> = (0..6)
            .map(|i| spawn_lookup(&coalescer, &format!("c{i}"), LONG))
            .collect();
        until("four lookups wait", || queued(&coalescer) == 4).await;
        assert_eq!(backend.started.load(Ordering::SeqCst), 2);
        gate.add_permits(4);
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        // The two calls in flight, then the first to be free took all four waiting.
        let mut sizes: Vec<usize> = backend.asked.lock().unwrap().iter().map(Vec::len).collect();
        sizes.sort_unstable();
        assert_eq!(sizes, [1, 1, 4]);
    }

    #[tokio::test]
    async fn a_waiter_whose_deadline_passes_times_out_while_the_call_goes_on_for_the_others() {
        let gate = Arc::new(Semaphore::new(0));
        let backend = fake(Some(gate.clone()), None);
        let coalescer = coalescer(&backend, 1);
        let patient = spawn_lookup(&coalescer, "a", LONG);
        let hasty = spawn_lookup(&coalescer, "a", Duration::from_millis(50));
        until("both wait on the call", || {
            backend.started.load(Ordering::SeqCst) == 1 && queued(&coalescer) == 1
        })
        .await;
        let hasty = hasty.await.unwrap();
        assert!(matches!(hasty, Err(BackendError::Timeout(_))), "{hasty:?}");
        gate.add_permits(1);
        assert_eq!(url(&patient.await.unwrap()), "https://example.com/a");
    }

    #[tokio::test]
    async fn a_waiter_that_goes_away_is_left_out_of_the_call() {
        let gate = Arc::new(Semaphore::new(0));
        let backend = fake(Some(gate.clone()), None);
        let coalescer = coalescer(&backend, 1);
        let first = spawn_lookup(&coalescer, "a", LONG);
        until("the first call starts", || {
            backend.started.load(Ordering::SeqCst) == 1
        })
        .await;
        let gone = spawn_lookup(&coalescer, "gone", LONG);
        let kept = spawn_lookup(&coalescer, "kept", LONG);
        until("two lookups wait", || queued(&coalescer) == 2).await;
        gone.abort();
        assert!(gone.await.unwrap_err().is_cancelled());
        gate.add_permits(2);
        first.await.unwrap().unwrap();
        assert_eq!(url(&kept.await.unwrap()), "https://example.com/kept");
        assert_eq!(
            *backend.asked.lock().unwrap(),
            vec![vec!["a"], vec!["kept"]]
        );
    }

    #[tokio::test]
    async fn a_failed_call_fails_each_of_its_waiters_once() {
        let gate = Arc::new(Semaphore::new(0));
        let backend = fake(
            Some(gate.clone()),
            Some(BackendError::Unreachable("refused".to_owned())),
        );
        let coalescer = coalescer(&backend, 1);
        let first = spawn_lookup(&coalescer, "a", LONG);
        until("the first call starts", || {
            backend.started.load(Ordering::SeqCst) == 1
        })
        .await;
        let behind: Vec<_> = ["b", "c"]
            .iter()
            .map(|text| spawn_lookup(&coalescer, text, LONG))
            .collect();
        until("two lookups wait", || queued(&coalescer) == 2).await;
        gate.add_permits(2);
        for task in std::iter::once(first).chain(behind) {
            let lookup = task.await.unwrap();
            assert!(
                matches!(lookup, Err(BackendError::Unreachable(_))),
                "{lookup:?}"
            );
        }
        // Two calls, so two verdicts for the breaker (which Fetch gives), not three.
        assert_eq!(backend.started.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn each_call_is_observed_with_the_lookups_it_answers() {
        let gate = Arc::new(Semaphore::new(0));
        let backend = fake(Some(gate.clone()), None);
        let observed = Arc::new(Mutex::new(Vec::new()));
        let fetch = coalescer(&backend, 1).fetch.clone();
        let seen = observed.clone();
        let coalescer = Arc::new(Coalescer::new(fetch, 1, move |codes| {
            seen.lock().unwrap().push(codes)
        }));
        let first = spawn_lookup(&coalescer, "a", LONG);
        until("the first call starts", || {
            backend.started.load(Ordering::SeqCst) == 1
        })
        .await;
        let behind: Vec<_> = ["b", "b", "c"]
            .iter()
            .map(|text| spawn_lookup(&coalescer, text, LONG))
            .collect();
        until("three lookups wait", || queued(&coalescer) == 3).await;
        gate.add_permits(2);
        for task in std::iter::once(first).chain(behind) {
            task.await.unwrap().unwrap();
        }
        assert_eq!(*observed.lock().unwrap(), vec![1, 3]);
    }

    #[tokio::test]
    async fn a_call_that_panics_fails_its_waiters_and_gives_its_slot_back() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let fetch: Fetch = Arc::new(move |codes: Vec<Code>| {
            let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
            Box::pin(async move {
                assert!(!first, "the first call fails as a bug would");
                Ok(codes
                    .iter()
                    .map(|code| Ok(Some(document(code.as_str()))))
                    .collect())
            })
        });
        let coalescer = Arc::new(Coalescer::new(fetch, 1, |_| {}));
        let failed = coalescer.lookup(code("a"), LONG).await;
        assert!(matches!(failed, Err(BackendError::Failed(_))), "{failed:?}");
        let after = coalescer.lookup(code("b"), LONG).await;
        assert_eq!(url(&after), "https://example.com/b");
    }
}
