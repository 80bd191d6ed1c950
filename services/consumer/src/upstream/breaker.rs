//! A circuit breaker: after repeated failures, fail fast instead of making every caller wait
//! for a dead upstream, and probe now and then to find out when it is back.
//!
//! Closed: calls go through; `failures` consecutive failures open it. Open: calls fail at once
//! (with how long until the next probe, for `Retry-After`) until `cooldown` has passed. Then one
//! call is let through as a probe (half-open): its success closes the circuit, its failure opens
//! it again. A probe abandoned without an outcome (its caller went away) lets the next call
//! probe instead, so the breaker can never stay stuck half-open.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

pub struct Breaker {
    state: Mutex<State>,
    failures: u32,
    cooldown: Duration,
    on_change: Box<dyn Fn(Circuit) + Send + Sync>,
}

/// Leave to make one call; say how it went with [`Permit::succeeded`] or [`Permit::failed`].
#[must_use]
pub struct Permit {
    breaker: Arc<Breaker>,
    probe: bool,
    settled: bool,
}

impl Breaker {
    /// A closed breaker that opens after `failures` consecutive failures for `cooldown`;
    /// `on_change` hears every change of [`Circuit`].
    pub fn new(
        failures: u32,
        cooldown: Duration,
        on_change: impl Fn(Circuit) + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Breaker {
            state: Mutex::new(State::Closed { failures: 0 }),
            failures,
            cooldown,
            on_change: Box::new(on_change),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A permit for one call, or how long to wait before asking again.
    pub fn admit(self: &Arc<Self>, now: Instant) -> Result<Permit, Duration> {
        let mut state = self.lock();
        let probe = match *state {
            State::Closed { .. } => false,
            State::Open { until } if now < until => return Err(until - now),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
                drop(state);
                (self.on_change)(Circuit::HalfOpen);
                true
            }
            State::HalfOpen { probing: true } => return Err(Duration::from_secs(1)),
        };
        Ok(Permit {
            breaker: self.clone(),
            probe,
            settled: false,
        })
    }

    pub fn circuit(&self, now: Instant) -> Circuit {
        match *self.lock() {
            State::Closed { .. } => Circuit::Closed,
            State::Open { until } if now < until => Circuit::Open,
            State::Open { .. } | State::HalfOpen { .. } => Circuit::HalfOpen,
        }
    }

    fn settle(&self, success: bool, now: Instant) {
        let mut state = self.lock();
        let before = circuit_of(&state);
        *state = match (&*state, success) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.failures => State::Closed {
                failures: failures + 1,
            },
            (_, false) => State::Open {
                until: now + self.cooldown,
            },
        };
        let after = circuit_of(&state);
        drop(state);
        if before != after {
            (self.on_change)(after);
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
        self.breaker.settle(true, Instant::now());
    }

    pub fn failed(mut self) {
        self.settled = true;
        self.breaker.settle(false, Instant::now());
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.settled && self.probe {
            *self.breaker.lock() = State::HalfOpen { probing: false };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Arc<Breaker> {
        Breaker::new(3, Duration::from_secs(5), |_| {})
    }

    #[test]
    fn it_opens_after_consecutive_failures_only() {
        let breaker = breaker();
        let now = Instant::now();
        breaker.admit(now).unwrap().failed();
        breaker.admit(now).unwrap().failed();
        breaker.admit(now).unwrap().succeeded();
        breaker.admit(now).unwrap().failed();
        breaker.admit(now).unwrap().failed();
        assert_eq!(breaker.circuit(now), Circuit::Closed);
        breaker.admit(now).unwrap().failed();
        assert_eq!(breaker.circuit(Instant::now()), Circuit::Open);
        let wait = breaker.admit(Instant::now()).err().unwrap();
        assert!(wait > Duration::from_secs(4) && wait <= Duration::from_secs(5));
    }

    #[test]
    fn after_the_cooldown_one_probe_decides() {
        let breaker = breaker();
        for _ in 0..3 {
            breaker.admit(Instant::now()).unwrap().failed();
        }
        let later = Instant::now() + Duration::from_secs(6);
        assert_eq!(breaker.circuit(later), Circuit::HalfOpen);
        let probe = breaker.admit(later).unwrap();
        assert!(breaker.admit(later).is_err(), "a second call while probing");
        probe.succeeded();
        assert_eq!(breaker.circuit(later), Circuit::Closed);
        assert!(breaker.admit(later).is_ok());
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let breaker = breaker();
        for _ in 0..3 {
            breaker.admit(Instant::now()).unwrap().failed();
        }
        let later = Instant::now() + Duration::from_secs(6);
        breaker.admit(later).unwrap().failed();
        assert_eq!(breaker.circuit(Instant::now()), Circuit::Open);
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_call_probe() {
        let breaker = breaker();
        for _ in 0..3 {
            breaker.admit(Instant::now()).unwrap().failed();
        }
        let later = Instant::now() + Duration::from_secs(6);
        drop(breaker.admit(later).unwrap());
        assert!(breaker.admit(later).is_ok());
    }

    #[test]
    fn changes_are_reported() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let breaker = Breaker::new(1, Duration::ZERO, move |c| log.lock().unwrap().push(c));
        breaker.admit(Instant::now()).unwrap().failed();
        breaker.admit(Instant::now()).unwrap().succeeded();
        assert_eq!(
            *seen.lock().unwrap(),
            [Circuit::Open, Circuit::HalfOpen, Circuit::Closed]
        );
    }
}
