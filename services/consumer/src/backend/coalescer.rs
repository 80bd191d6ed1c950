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
//!   while they all are waits in the queue; each call, when it ends, takes the next up to
//!   [`MAX_LOOKUPS_PER_CALL`] waiting lookups into a new call.
//! - A code asked for by several waiters in one call is looked up once.
//! - Every waiter keeps its own deadline, counted from its arrival: one whose deadline passes
//!   gets [`BackendError::Timeout`] while the call goes on for the others. A call's deadline is
//!   as long, counted from its start; so a lookup that starts a call, which it does as it
//!   arrives, gives the call its own deadline and waits for the call alone, with no timer of its
//!   own: a lone lookup costs one timer, as a call without coalescing did.
//! - A waiter that goes away (its client disconnected) costs nothing: a code no live waiter
//!   still wants is left out of the call.
//! - A call runs in a task of its own, so that no waiter's going away cancels it for the
//!   others; what it runs ([`Fetch`]) is the backend's whole call, with its deadline, its one
//!   retry and its one verdict for the circuit breaker: a failed call is one failure, however
//!   many waiters it carried.
//! - A call carries the request id (`X-Request-Id`) of the first lookup it serves, so that a
//!   lone lookup is followed into the backend's log as before; the consumer logs a call's
//!   failure under that id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use shared::request_id::{self, RequestId};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::BackendError;
use crate::links::{Code, LinkDocument};

/// The most lookups one call carries: the v1 contract's bound on a batch read.
pub const MAX_LOOKUPS_PER_CALL: usize = 1000;

/// One code's answer: its link, none, or why it could not be read (a failed call, or this
/// value alone unreadable or too large).
pub type Lookup = Result<Option<LinkDocument>, BackendError>;

/// The backend call that looks up distinct codes, answering each in their order, and ends by
/// the deadline it is given (with [`BackendError::Timeout`] if it must).
pub type Fetch = Arc<
    dyn Fn(Vec<Code>, Instant) -> BoxFuture<'static, Result<Vec<Lookup>, BackendError>>
        + Send
        + Sync,
>;

/// A lookup waiting for a call.
struct Waiter {
    code: Code,
    request_id: Option<RequestId>,
    answer: oneshot::Sender<Lookup>,
}

struct Queue {
    waiting: Vec<Waiter>,
    in_flight: usize,
}

/// Lookups coalesced into calls of [`Fetch`]; one per backend.
pub struct Coalescer {
    fetch: Fetch,
    calls: usize,
    /// How long a lookup may wait, from its arrival, and a call may take, from its start.
    deadline: Duration,
    queue: Mutex<Queue>,
    /// Told how many lookups each call answers.
    observe: Box<dyn Fn(usize) + Send + Sync>,
}

impl Coalescer {
    /// At most `calls` calls of `fetch` in flight, each lookup answered within `deadline` of
    /// its arrival; `observe` is told how many lookups each call answers (a code asked by
    /// several waiters counts for each).
    pub fn new(
        fetch: Fetch,
        calls: usize,
        deadline: Duration,
        observe: impl Fn(usize) + Send + Sync + 'static,
    ) -> Self {
        assert!(calls > 0, "at least one call must be allowed");
        Coalescer {
            fetch,
            calls,
            deadline,
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                in_flight: 0,
            }),
            observe: Box::new(observe),
        }
    }

    /// The link stored under `code`, looked up together with whatever else is waiting, within
    /// the deadline from now.
    pub async fn lookup(self: &Arc<Self>, code: Code) -> Lookup {
        let deadline = Instant::now() + self.deadline;
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut queue = self.queue.lock().expect("the queue lock");
            queue.waiting.push(Waiter {
                code,
                request_id: request_id::current(),
                answer,
            });
            if queue.in_flight < self.calls {
                queue.in_flight += 1;
                Some(take(&mut queue.waiting))
            } else {
                None
            }
        };
        let answered = match start {
            // This lookup's call ends by this lookup's deadline: its end is the answer.
            Some(waiters) => {
                tokio::spawn(self.clone().run(waiters, deadline));
                answered.await
            }
            None => match tokio::time::timeout_at(deadline, answered).await {
                Ok(answered) => answered,
                Err(_) => return Err(BackendError::Timeout(self.deadline)),
            },
        };
        answered.unwrap_or_else(|_| {
            Err(BackendError::Failed(
                "the lookup's call ended without an answer".to_owned(),
            ))
        })
    }

    /// One slot of the calls in flight: calls `waiters` by `deadline`, then whatever waits
    /// meanwhile, each call with a deadline of its own, until nothing waits.
    async fn run(self: Arc<Self>, mut waiters: Vec<Waiter>, mut deadline: Instant) {
        let mut slot = Slot {
            coalescer: &self,
            held: true,
        };
        loop {
            self.call(waiters, deadline).await;
            let mut queue = self.queue.lock().expect("the queue lock");
            if queue.waiting.is_empty() {
                queue.in_flight -= 1;
                slot.held = false;
                return;
            }
            waiters = take(&mut queue.waiting);
            deadline = Instant::now() + self.deadline;
        }
    }

    /// One call for the distinct codes live waiters want; each waiter gets its code's answer.
    async fn call(&self, mut waiters: Vec<Waiter>, deadline: Instant) {
        waiters.retain(|waiter| !waiter.answer.is_closed());
        let Some(first) = waiters.first_mut() else {
            return;
        };
        let request_id = first.request_id.take();
        (self.observe)(waiters.len());
        if waiters.len() == 1 {
            // A lone lookup, the usual call of an idle consumer: its code alone, its answer
            // handed over as it is.
            let waiter = waiters.pop().expect("one waiter");
            let lookup = self
                .fetch(vec![waiter.code], deadline, request_id)
                .await
                .and_then(|answers| answers.into_iter().next().unwrap_or_else(fewer_answers));
            let _ = waiter.answer.send(lookup);
            return;
        }
        let (codes, slots) = distinct(&waiters);
        let answers = self.fetch(codes, deadline, request_id).await;
        for (waiter, slot) in waiters.into_iter().zip(slots) {
            let lookup = match &answers {
                Ok(answers) => answers.get(slot).cloned().unwrap_or_else(fewer_answers),
                Err(error) => Err(error.clone()),
            };
            // A waiter gone meanwhile is simply not told.
            let _ = waiter.answer.send(lookup);
        }
    }

    /// `codes` looked up in one call of [`Fetch`] by `deadline`, under the request id of the
    /// lookup it serves first.
    async fn fetch(
        &self,
        codes: Vec<Code>,
        deadline: Instant,
        request_id: Option<RequestId>,
    ) -> Result<Vec<Lookup>, BackendError> {
        let fetch = (self.fetch)(codes, deadline);
        match request_id {
            Some(id) => request_id::scope(id, fetch).await,
            None => fetch.await,
        }
    }
}

/// The distinct codes `waiters` want, in the order first asked, and where each waiter's code
/// is among them.
fn distinct(waiters: &[Waiter]) -> (Vec<Code>, Vec<usize>) {
    let mut codes: Vec<Code> = Vec::with_capacity(waiters.len());
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(waiters.len());
    let slots = waiters
        .iter()
        .map(|waiter| {
            *index.entry(waiter.code.as_str()).or_insert_with(|| {
                codes.push(waiter.code.clone());
                codes.len() - 1
            })
        })
        .collect();
    (codes, slots)
}

/// What a waiter is told when the backend answered fewer codes than it was asked.
fn fewer_answers() -> Lookup {
    Err(BackendError::Malformed(
        "fewer answers than codes asked".to_owned(),
    ))
}

/// A slot of the calls in flight, given back if its task ends without giving it back itself (a
/// call that panicked, or a runtime shutting down): a failure then costs its own waiters, who
/// are told their call ended without an answer, and never a slot.
struct Slot<'a> {
    coalescer: &'a Coalescer,
    held: bool,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if self.held
            && let Ok(mut queue) = self.coalescer.queue.lock()
        {
            queue.in_flight -= 1;
        }
    }
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
    /// records the codes it was asked for and the deadline it was given (which it ignores, to
    /// show that waiters keep their own), and answers each with a link to
    /// `https://example.com/{code}`, or fails every call with `fail`.
    struct Fake {
        asked: Mutex<Vec<Vec<String>>>,
        deadlines: Mutex<Vec<Instant>>,
        gate: Option<Arc<Semaphore>>,
        fail: Option<BackendError>,
        started: AtomicUsize,
    }

    fn fake(gate: Option<Arc<Semaphore>>, fail: Option<BackendError>) -> Arc<Fake> {
        Arc::new(Fake {
            asked: Mutex::default(),
            deadlines: Mutex::default(),
            gate,
            fail,
            started: AtomicUsize::new(0),
        })
    }

    fn coalescer(fake: &Arc<Fake>, calls: usize) -> Arc<Coalescer> {
        coalescer_with_deadline(fake, calls, LONG)
    }

    fn coalescer_with_deadline(
        fake: &Arc<Fake>,
        calls: usize,
        deadline: Duration,
    ) -> Arc<Coalescer> {
        Arc::new(Coalescer::new(fetch(fake), calls, deadline, |_| {}))
    }

    fn fetch(fake: &Arc<Fake>) -> Fetch {
        let backend = fake.clone();
        Arc::new(move |codes: Vec<Code>, deadline| {
            let backend = backend.clone();
            Box::pin(async move {
                backend.started.fetch_add(1, Ordering::SeqCst);
                backend.deadlines.lock().unwrap().push(deadline);
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
        })
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

    fn spawn_lookup(coalescer: &Arc<Coalescer>, text: &str) -> tokio::task::JoinHandle<Lookup> {
        let (coalescer, code) = (coalescer.clone(), code(text));
        tokio::spawn(async move { coalescer.lookup(code).await })
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
    async fn a_lone_lookup_is_called_at_once_alone() {
        let backend = fake(None, None);
        let coalescer = coalescer(&backend, 4);
        let lookup = coalescer.lookup(code("a")).await;
        assert_eq!(url(&lookup), "https://example.com/a");
        assert_eq!(*backend.asked.lock().unwrap(), vec![vec!["a".to_owned()]]);
    }

    #[tokio::test]
    async fn lookups_that_arrive_during_a_call_go_together_in_the_next_each_code_once() {
        let gate = Arc::new(Semaphore::new(0));
        let backend = fake(Some(gate.clone()), None);
        let coalescer = coalescer(&backend, 1);
        let first = spawn_lookup(&coalescer, "a");
        until("the first call starts", || {
            backend.started.load(Ordering::SeqCst) == 1
        })
        .await;
        let behind: Vec<_> = ["b", "c", "b", "a"]
            .iter()
            .map(|text| spawn_lookup(&coalescer, text))
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
            .map(|i| spawn_lookup(&coalescer, &format!("c{i}")))
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

    #[tokio::test(start_paused = true)]
    async fn a_waiter_whose_deadline_passes_times_out_while_the_call_goes_on_for_the_others() {
        let gate = Arc::new(Semaphore::new(0));
        let backend = fake(Some(gate.clone()), None);
        let coalescer = coalescer_with_deadline(&backend, 1, Duration::from_secs(1));
        let first = spawn_lookup(&coalescer, "a");
        until("the first call starts", || {
            backend.started.load(Ordering::SeqCst) == 1
        })
        .await;
        let hasty_arrival = Instant::now();
        let hasty = spawn_lookup(&coalescer, "b");
        until("a lookup waits", || queued(&coalescer) == 1).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        let patient = spawn_lookup(&coalescer, "c");
        until("two lookups wait", || queued(&coalescer) == 2).await;
        gate.add_permits(1);
        first.await.unwrap().unwrap();
        until("the second call starts, for both", || {
            backend.started.load(Ordering::SeqCst) == 2
        })
        .await;

        let hasty = hasty.await.unwrap();
        let waited = hasty_arrival.elapsed();
        assert!(matches!(hasty, Err(BackendError::Timeout(_))), "{hasty:?}");
        // The timer's millisecond ticks, and nothing more.
        assert!(
            waited >= Duration::from_secs(1) && waited <= Duration::from_millis(1002),
            "the waiter waited {waited:?}"
        );
        assert!(
            !patient.is_finished(),
            "the call goes on for the other waiter"
        );
        gate.add_permits(1);
        assert_eq!(url(&patient.await.unwrap()), "https://example.com/c");
        assert_eq!(
            *backend.asked.lock().unwrap(),
            vec![vec!["a"], vec!["b", "c"]]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lookup_that_starts_a_call_gives_it_its_own_deadline_later_calls_have_their_own() {
        let gate = Arc::new(Semaphore::new(0));
        let backend = fake(Some(gate.clone()), None);
        let deadline = Duration::from_secs(1);
        let coalescer = coalescer_with_deadline(&backend, 1, deadline);
        let arrival = Instant::now();
        let first = spawn_lookup(&coalescer, "a");
        until("the first call starts", || {
            backend.started.load(Ordering::SeqCst) == 1
        })
        .await;
        let behind = spawn_lookup(&coalescer, "b");
        until("a lookup waits", || queued(&coalescer) == 1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let second_start = Instant::now();
        gate.add_permits(2);
        first.await.unwrap().unwrap();
        behind.await.unwrap().unwrap();
        assert_eq!(
            *backend.deadlines.lock().unwrap(),
            vec![arrival + deadline, second_start + deadline]
        );
    }

    #[tokio::test]
    async fn a_waiter_that_goes_away_is_left_out_of_the_call() {
        let gate = Arc::new(Semaphore::new(0));
        let backend = fake(Some(gate.clone()), None);
        let coalescer = coalescer(&backend, 1);
        let first = spawn_lookup(&coalescer, "a");
        until("the first call starts", || {
            backend.started.load(Ordering::SeqCst) == 1
        })
        .await;
        let gone = spawn_lookup(&coalescer, "gone");
        let kept = spawn_lookup(&coalescer, "kept");
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
        let first = spawn_lookup(&coalescer, "a");
        until("the first call starts", || {
            backend.started.load(Ordering::SeqCst) == 1
        })
        .await;
        let behind: Vec<_> = ["b", "c"]
            .iter()
            .map(|text| spawn_lookup(&coalescer, text))
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
        let seen = observed.clone();
        let coalescer = Arc::new(Coalescer::new(fetch(&backend), 1, LONG, move |codes| {
            seen.lock().unwrap().push(codes)
        }));
        let first = spawn_lookup(&coalescer, "a");
        until("the first call starts", || {
            backend.started.load(Ordering::SeqCst) == 1
        })
        .await;
        let behind: Vec<_> = ["b", "b", "c"]
            .iter()
            .map(|text| spawn_lookup(&coalescer, text))
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
        let fetch: Fetch = Arc::new(move |codes: Vec<Code>, _| {
            let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
            Box::pin(async move {
                assert!(!first, "the first call fails as a bug would");
                Ok(codes
                    .iter()
                    .map(|code| Ok(Some(document(code.as_str()))))
                    .collect())
            })
        });
        let coalescer = Arc::new(Coalescer::new(fetch, 1, LONG, |_| {}));
        let failed = coalescer.lookup(code("a")).await;
        assert!(matches!(failed, Err(BackendError::Failed(_))), "{failed:?}");
        let after = coalescer.lookup(code("b")).await;
        assert_eq!(url(&after), "https://example.com/b");
    }
}
