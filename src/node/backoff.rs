//! Per-neighbour exponential backoff with jitter, so one failing neighbour is retried ever more patiently while
//! the others keep their schedule.

use std::time::{Duration, Instant};

use rand::Rng;

/// First wait after a failure expected to clear by itself within moments ([`Backoff::failed_soon`]).
pub const SOON: Duration = Duration::from_millis(150);

/// Backoff state of one neighbour.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// First wait after a failure (the poll interval: a single failure just skips one beat).
    base: Duration,
    /// Upper bound of the wait.
    max: Duration,
    /// Consecutive failures so far.
    failures: u32,
    /// Not before this instant; `None` when healthy.
    next_attempt: Option<Instant>,
}

impl Backoff {
    /// Healthy state for a neighbour polled every `base`, waiting at most `max` between retries.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max: max.max(base),
            failures: 0,
            next_attempt: None,
        }
    }

    /// Whether the neighbour may be tried at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        self.next_attempt.is_none_or(|t| now >= t)
    }

    /// Records a failure; returns the wait chosen: `base * 2^(failures-1)`, capped at `max`, with ±20% jitter so
    /// many nodes failing together do not retry in lock-step.
    pub fn failed(&mut self, now: Instant) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exp = self.failures.saturating_sub(1).min(20);
        let raw = self.base.saturating_mul(1u32 << exp).min(self.max);
        let jitter = rand::thread_rng().gen_range(0.8..=1.2);
        let wait = raw.mul_f64(jitter).min(self.max);
        self.next_attempt = Some(now + wait);
        wait
    }

    /// Records a failure that is expected to clear within moments (a neighbour that has not yet processed our
    /// handshake or profile): waits [`SOON`] doubling per failure, never more than the normal first wait.
    pub fn failed_soon(&mut self, now: Instant) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exp = self.failures.saturating_sub(1).min(20);
        let wait = SOON.saturating_mul(1u32 << exp).min(self.base);
        self.next_attempt = Some(now + wait);
        wait
    }

    /// Records a success: back to the normal schedule.
    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.next_attempt = None;
    }

    /// Consecutive failures.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_exponentially_within_jitter_and_cap() {
        let mut b = Backoff::new(Duration::from_secs(5), Duration::from_secs(60));
        let now = Instant::now();
        assert!(b.ready(now));
        let expected = [5.0, 10.0, 20.0, 40.0, 60.0, 60.0];
        for exp in expected {
            let wait = b.failed(now).as_secs_f64();
            assert!(
                wait >= exp * 0.8 - 1e-9 && wait <= (exp * 1.2).min(60.0) + 1e-9,
                "{wait} vs {exp}"
            );
        }
        assert!(!b.ready(now));
        assert!(b.ready(now + Duration::from_secs(61)));
        assert_eq!(b.failures(), 6);
        b.succeeded();
        assert!(b.ready(now));
        assert_eq!(b.failures(), 0);
    }

    #[test]
    fn jitter_spreads_retries() {
        let now = Instant::now();
        let waits: std::collections::HashSet<_> = (0..20)
            .map(|_| {
                Backoff::new(Duration::from_secs(10), Duration::from_secs(600))
                    .failed(now)
                    .as_millis()
            })
            .collect();
        assert!(waits.len() > 1);
    }
}
