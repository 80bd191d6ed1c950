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
    /// A closed breaker that opens after `failures` consecutive failures, for cooldowns that
    /// grow from [`FIRST_COOLDOWN`] up to `cooldown`; `on_change` hears every change of
    /// [`Circuit`].
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

    pub fn circuit(&self, now: Instant) -> Circuit {
        match *self.lock() {
            State::Closed { .. } => Circuit::Closed,
            State::Open { until, .. } if now < until => Circuit::Open,
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
        assert!(wait > Duration::ZERO && wait <= FIRST_COOLDOWN, "{wait:?}");
    }

    /// Fails the probe at each cooldown's end and returns how long each cooldown was. (A permit
    /// settles at the real time, so the cooldowns are read from it.)
    fn cooldowns(breaker: &Arc<Breaker>, count: usize) -> Vec<Duration> {
        (0..count)
            .map(|_| {
                let now = Instant::now();
                let wait = breaker.admit(now).err().expect("open");
                let probe = breaker
                    .admit(now + wait)
                    .expect("a probe at the cooldown's end");
                probe.failed();
                // Read a moment after it was set: to the millisecond, it is the cooldown.
                Duration::from_millis((wait.as_secs_f64() * 1e3).round() as u64)
            })
            .collect()
    }

    #[test]
    fn cooldowns_grow_while_the_upstream_stays_away_up_to_the_configured_one() {
        let breaker = breaker();
        for _ in 0..3 {
            breaker.admit(Instant::now()).unwrap().failed();
        }
        let seen = cooldowns(&breaker, 12);
        assert!(seen[0] <= FIRST_COOLDOWN, "{seen:?}");
        assert!(
            seen.windows(2)
                .all(|pair| pair[0] < pair[1] || pair[1] == Duration::from_secs(5))
        );
        assert_eq!(seen.last(), Some(&Duration::from_secs(5)), "{seen:?}");
        // Before a cooldown passes one second, two seconds have gone by.
        let mut elapsed = Duration::ZERO;
        for cooldown in &seen {
            if *cooldown > Duration::from_secs(1) {
                break;
            }
            elapsed += *cooldown;
        }
        assert!(elapsed >= Duration::from_secs(2), "{seen:?}");
    }

    #[test]
    fn a_success_starts_the_next_outage_from_the_first_cooldown() {
        let breaker = breaker();
        for _ in 0..3 {
            breaker.admit(Instant::now()).unwrap().failed();
        }
        let seen = cooldowns(&breaker, 6);
        assert!(seen[5] > FIRST_COOLDOWN * 5, "{seen:?}");
        let later = Instant::now() + Duration::from_secs(10);
        breaker.admit(later).unwrap().succeeded();
        for _ in 0..3 {
            breaker.admit(Instant::now()).unwrap().failed();
        }
        let wait = breaker.admit(Instant::now()).err().unwrap();
        assert!(wait <= FIRST_COOLDOWN, "{wait:?}");
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
