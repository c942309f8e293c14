//! The generic cell rate algorithm (GCRA): a token bucket kept as one number, the theoretical arrival time (TAT).
//! A rate of `limit` units per `period` spaces units `period / limit` apart and allows a burst of the whole
//! `limit`. Time is a parameter (nanoseconds on any monotonic scale), so the math is tested without waiting.

use std::time::Duration;

/// `limit` units per `period`, with a burst of `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub limit: u64,
    pub period: Duration,
}

impl Rate {
    pub fn per_minute(limit: u64) -> Self {
        Self { limit, period: Duration::from_secs(60) }
    }

    fn period_ns(&self) -> u64 {
        u64::try_from(self.period.as_nanos()).unwrap_or(u64::MAX).max(1)
    }

    /// Nanoseconds between two units.
    pub fn emission_ns(&self) -> u64 {
        (self.period_ns() / self.limit.max(1)).max(1)
    }

    /// Burst tolerance: how far ahead of now the TAT may run.
    pub fn tolerance_ns(&self) -> u64 {
        self.emission_ns().saturating_mul(self.limit.max(1))
    }
}

/// What a check answered; `reset` is the time until the bucket is full again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed { remaining: u64, reset: Duration },
    Denied { retry_after: Duration, reset: Duration },
}

/// One bucket. Starts full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gcra {
    tat: u64,
}

impl Gcra {
    /// Takes `cost` units if they fit. A cost above the limit is clamped to it, so a request larger than the
    /// whole allowance still passes once the bucket is full instead of never.
    pub fn check(&mut self, rate: Rate, cost: u64, now: u64) -> Decision {
        let t = rate.emission_ns();
        let tau = rate.tolerance_ns();
        let cost = cost.min(rate.limit.max(1));
        let tat = self.tat.max(now);
        let new_tat = tat.saturating_add(cost.saturating_mul(t));
        let ahead = new_tat - now;
        if ahead > tau {
            return Decision::Denied {
                retry_after: Duration::from_nanos(ahead - tau),
                reset: Duration::from_nanos(tat - now),
            };
        }
        self.tat = new_tat;
        Decision::Allowed { remaining: (tau - ahead) / t, reset: Duration::from_nanos(ahead) }
    }

    /// Units available now and the time until the bucket is full, without taking anything.
    pub fn peek(&self, rate: Rate, now: u64) -> (u64, Duration) {
        let ahead = self.tat.max(now) - now;
        (rate.tolerance_ns().saturating_sub(ahead) / rate.emission_ns(), Duration::from_nanos(ahead))
    }

    /// Corrects an earlier charge once the real cost is known: `delta > 0` charges more (the bucket may go into
    /// debt, delaying later requests), `delta < 0` gives units back (never beyond a full bucket).
    pub fn adjust(&mut self, rate: Rate, delta: i64, now: u64) {
        let t = rate.emission_ns();
        let tat = self.tat.max(now);
        self.tat = if delta >= 0 {
            tat.saturating_add(delta.unsigned_abs().saturating_mul(t))
        } else {
            tat.saturating_sub(delta.unsigned_abs().saturating_mul(t)).max(now)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn allowed(d: Decision) -> bool {
        matches!(d, Decision::Allowed { .. })
    }

    #[test]
    fn a_full_bucket_allows_exactly_the_limit_then_refills_steadily() {
        let rate = Rate::per_minute(60);
        let mut g = Gcra::default();
        let now = 1000 * SEC;
        for i in 0..60 {
            match g.check(rate, 1, now) {
                Decision::Allowed { remaining, .. } => assert_eq!(remaining, 59 - i),
                d => panic!("request {i} denied: {d:?}"),
            }
        }
        match g.check(rate, 1, now) {
            Decision::Denied { retry_after, reset } => {
                assert_eq!(retry_after, Duration::from_secs(1));
                assert_eq!(reset, Duration::from_secs(60));
            }
            d => panic!("61st allowed: {d:?}"),
        }
        // One unit comes back per second.
        assert!(!allowed(g.check(rate, 1, now + SEC - 1)));
        assert!(allowed(g.check(rate, 1, now + SEC)));
        assert!(!allowed(g.check(rate, 1, now + SEC)));
        // After a full period of silence the whole burst is back.
        let later = now + 200 * SEC;
        assert_eq!(g.peek(rate, later), (60, Duration::ZERO));
    }

    #[test]
    fn costs_above_one_and_above_the_limit() {
        let rate = Rate::per_minute(1000);
        let mut g = Gcra::default();
        assert!(allowed(g.check(rate, 600, 0)));
        assert!(!allowed(g.check(rate, 600, 0)));
        assert!(allowed(g.check(rate, 400, 0)));
        // Larger than the limit: clamped, so it passes on a full bucket.
        let mut g = Gcra::default();
        assert!(allowed(g.check(rate, 5000, 0)));
        assert!(!allowed(g.check(rate, 1, 0)));
    }

    #[test]
    fn adjustments_charge_debt_and_refund_up_to_full() {
        let rate = Rate::per_minute(600); // one unit per 100 ms
        let mut g = Gcra::default();
        assert!(allowed(g.check(rate, 100, 0)));
        assert_eq!(g.peek(rate, 0).0, 500);
        g.adjust(rate, 150, 0);
        assert_eq!(g.peek(rate, 0).0, 350);
        g.adjust(rate, -1000, 0);
        assert_eq!(g.peek(rate, 0), (600, Duration::ZERO));
        // Debt beyond the tolerance blocks until it is paid off.
        g.adjust(rate, 700, 0);
        assert_eq!(g.peek(rate, 0).0, 0);
        assert!(!allowed(g.check(rate, 1, 0)));
        assert!(allowed(g.check(rate, 1, 10 * SEC + 100_000_000)));
    }
}
