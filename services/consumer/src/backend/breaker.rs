//! A circuit breaker: after repeated failures, fail fast instead of making every caller wait
//! for a dead backend, and probe now and then to find out when it is back.
//!
//! Closed: calls go through; `failures` consecutive failures open it. Open: calls fail at once
//! (with how long until the next probe, for `Retry-After`) until the cooldown has passed. Then
//! one call is let through as a probe (half-open): its success closes the circuit, its failure
//! opens it again. A probe abandoned without an outcome (its caller went away) lets the next
//! call probe instead, so the breaker can never stay stuck half-open.
//!
//! The first cooldown is short ([`FIRST_COOLDOWN`]) and each failed probe makes the next one
//! half as long again, up to the configured cooldown: a backend that was away for a moment
//! is used again within a moment of its return, one that stays away is probed less and less.
//! Its cooldowns add up to 2.08 s before one exceeds a second, so a backend gone for two
//! seconds is probed again within a second of coming back.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The cooldown after the circuit first opens (when the configured one is longer).
pub const FIRST_COOLDOWN: Duration = Duration::from_millis(100);

/// How much longer each cooldown is than the one before, after a failed probe.
const GROWTH: f64 = 1.5;

/// The breaker's state as reported by `/api/status` and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    Closed,
    HalfOpen,
    Open,
}

impl Circuit {
    pub fn as_str(self) -> &'static str {
        match self {
            Circuit::Closed => "closed",
            Circuit::HalfOpen => "half-open",
            Circuit::Open => "open",
        }
    }
}

/// `cooldown` is the length of the current (or last) open spell.
#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant, cooldown: Duration },
    HalfOpen { probing: bool, cooldown: Duration },
}

/// Where the breaker reads the time: the monotonic clock in service, a hand-moved one in tests.
pub type Clock = Box<dyn Fn() -> Instant + Send + Sync>;

pub struct Breaker {
    state: Mutex<State>,
    failures: u32,
    cooldown: Duration,
    on_change: Box<dyn Fn(Circuit) + Send + Sync>,
    clock: Clock,
}

/// Leave to make one call; say how it went with [`Permit::succeeded`] or [`Permit::failed`].
#[must_use]
pub struct Permit {
    breaker: Arc<Breaker>,
    probe: bool,
    settled: bool,
}

impl Breaker {
    /// A closed breaker that opens after `failures` consecutive failures, for cooldowns that
    /// grow from [`FIRST_COOLDOWN`] up to `cooldown`; `on_change` hears every change of
    /// [`Circuit`].
    pub fn new(
        failures: u32,
        cooldown: Duration,
        on_change: impl Fn(Circuit) + Send + Sync + 'static,
    ) -> Arc<Self> {
        Self::with_clock(failures, cooldown, on_change, Box::new(Instant::now))
    }

    /// Like [`Breaker::new`], reading the time from `clock`.
    pub fn with_clock(
        failures: u32,
        cooldown: Duration,
        on_change: impl Fn(Circuit) + Send + Sync + 'static,
        clock: Clock,
    ) -> Arc<Self> {
        Arc::new(Breaker {
            state: Mutex::new(State::Closed { failures: 0 }),
            failures,
            cooldown,
            on_change: Box::new(on_change),
            clock,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A permit for one call, or how long to wait before asking again.
    pub fn admit(self: &Arc<Self>) -> Result<Permit, Duration> {
        let now = (self.clock)();
        let mut state = self.lock();
        let probe = match *state {
            State::Closed { .. } => false,
            State::Open { until, .. } if now < until => return Err(until - now),
            State::Open { cooldown, .. }
            | State::HalfOpen {
                probing: false,
                cooldown,
            } => {
                *state = State::HalfOpen {
                    probing: true,
                    cooldown,
                };
                drop(state);
                (self.on_change)(Circuit::HalfOpen);
                true
            }
            State::HalfOpen { probing: true, .. } => return Err(Duration::from_secs(1)),
        };
        Ok(Permit {
            breaker: self.clone(),
            probe,
            settled: false,
        })
    }

    pub fn circuit(&self) -> Circuit {
        let now = (self.clock)();
        match *self.lock() {
            State::Closed { .. } => Circuit::Closed,
            State::Open { until, .. } if now < until => Circuit::Open,
            State::Open { .. } | State::HalfOpen { .. } => Circuit::HalfOpen,
        }
    }

    fn settle(&self, success: bool) {
        let now = (self.clock)();
        let mut state = self.lock();
        let before = circuit_of(&state);
        *state = match (&*state, success) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.failures => State::Closed {
                failures: failures + 1,
            },
            (State::Closed { .. }, false) => self.open(now, FIRST_COOLDOWN.min(self.cooldown)),
            (State::HalfOpen { cooldown, .. }, false) => {
                self.open(now, cooldown.mul_f64(GROWTH).min(self.cooldown))
            }
            // A call let through before the circuit opened, failing late.
            (State::Open { cooldown, .. }, false) => self.open(now, *cooldown),
        };
        let after = circuit_of(&state);
        drop(state);
        if before != after {
            (self.on_change)(after);
        }
    }
}

impl Breaker {
    fn open(&self, now: Instant, cooldown: Duration) -> State {
        State::Open {
            until: now + cooldown,
            cooldown,
        }
    }
}

fn circuit_of(state: &State) -> Circuit {
    match state {
        State::Closed { .. } => Circuit::Closed,
        State::Open { .. } => Circuit::Open,
        State::HalfOpen { .. } => Circuit::HalfOpen,
    }
}

impl Permit {
    pub fn succeeded(mut self) {
        self.settled = true;
        self.breaker.settle(true);
    }

    pub fn failed(mut self) {
        self.settled = true;
        self.breaker.settle(false);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.settled && self.probe {
            let mut state = self.breaker.lock();
            if let State::HalfOpen { cooldown, .. } = *state {
                *state = State::HalfOpen {
                    probing: false,
                    cooldown,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock that moves only when the test moves it.
    #[derive(Clone)]
    struct Hands(Arc<Mutex<Instant>>);

    impl Hands {
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    /// A breaker that opens after 3 failures, with cooldowns up to 5 s, on a stopped clock.
    fn breaker() -> (Arc<Breaker>, Hands) {
        let hands = Hands(Arc::new(Mutex::new(Instant::now())));
        let read = hands.clone();
        let clock = Box::new(move || *read.0.lock().unwrap());
        let breaker = Breaker::with_clock(3, Duration::from_secs(5), |_| {}, clock);
        (breaker, hands)
    }

    fn open(breaker: &Arc<Breaker>) {
        for _ in 0..3 {
            breaker.admit().unwrap().failed();
        }
    }

    #[test]
    fn it_opens_after_consecutive_failures_only() {
        let (breaker, _) = breaker();
        breaker.admit().unwrap().failed();
        breaker.admit().unwrap().failed();
        breaker.admit().unwrap().succeeded();
        breaker.admit().unwrap().failed();
        breaker.admit().unwrap().failed();
        assert_eq!(breaker.circuit(), Circuit::Closed);
        breaker.admit().unwrap().failed();
        assert_eq!(breaker.circuit(), Circuit::Open);
        assert_eq!(breaker.admit().err(), Some(FIRST_COOLDOWN));
    }

    /// Fails the probe at each cooldown's end and returns how long each cooldown was.
    fn cooldowns(breaker: &Arc<Breaker>, hands: &Hands, count: usize) -> Vec<Duration> {
        (0..count)
            .map(|_| {
                let wait = breaker.admit().err().expect("open");
                hands.advance(wait);
                breaker
                    .admit()
                    .expect("a probe at the cooldown's end")
                    .failed();
                wait
            })
            .collect()
    }

    #[test]
    fn cooldowns_grow_while_the_backend_stays_away_up_to_the_configured_one() {
        let (breaker, hands) = breaker();
        open(&breaker);
        let seen = cooldowns(&breaker, &hands, 12);
        let mut expected = vec![FIRST_COOLDOWN];
        while expected.len() < 12 {
            let next = expected.last().unwrap().mul_f64(GROWTH);
            expected.push(next.min(Duration::from_secs(5)));
        }
        assert_eq!(seen, expected);
        assert_eq!(seen.last(), Some(&Duration::from_secs(5)));
        // Before a cooldown passes one second, two seconds have gone by (the module's promise).
        let elapsed: Duration = seen
            .iter()
            .take_while(|cooldown| **cooldown <= Duration::from_secs(1))
            .sum();
        assert!(elapsed >= Duration::from_secs(2), "{seen:?}");
    }

    #[test]
    fn a_success_starts_the_next_outage_from_the_first_cooldown() {
        let (breaker, hands) = breaker();
        open(&breaker);
        let seen = cooldowns(&breaker, &hands, 6);
        assert!(seen[5] > FIRST_COOLDOWN * 5, "{seen:?}");
        hands.advance(Duration::from_secs(10));
        breaker.admit().unwrap().succeeded();
        open(&breaker);
        assert_eq!(breaker.admit().err(), Some(FIRST_COOLDOWN));
    }

    #[test]
    fn after_the_cooldown_one_probe_decides() {
        let (breaker, hands) = breaker();
        open(&breaker);
        hands.advance(FIRST_COOLDOWN - Duration::from_millis(1));
        assert_eq!(breaker.circuit(), Circuit::Open);
        hands.advance(Duration::from_millis(1));
        assert_eq!(breaker.circuit(), Circuit::HalfOpen);
        let probe = breaker.admit().unwrap();
        assert!(breaker.admit().is_err(), "a second call while probing");
        probe.succeeded();
        assert_eq!(breaker.circuit(), Circuit::Closed);
        assert!(breaker.admit().is_ok());
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let (breaker, hands) = breaker();
        open(&breaker);
        hands.advance(FIRST_COOLDOWN);
        breaker.admit().unwrap().failed();
        assert_eq!(breaker.circuit(), Circuit::Open);
        assert_eq!(breaker.admit().err(), Some(FIRST_COOLDOWN.mul_f64(GROWTH)));
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_call_probe() {
        let (breaker, hands) = breaker();
        open(&breaker);
        hands.advance(FIRST_COOLDOWN);
        drop(breaker.admit().unwrap());
        assert!(breaker.admit().is_ok());
    }

    #[test]
    fn changes_are_reported() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let breaker = Breaker::new(1, Duration::ZERO, move |c| log.lock().unwrap().push(c));
        breaker.admit().unwrap().failed();
        breaker.admit().unwrap().succeeded();
        assert_eq!(
            *seen.lock().unwrap(),
            [Circuit::Open, Circuit::HalfOpen, Circuit::Closed]
        );
    }
}
