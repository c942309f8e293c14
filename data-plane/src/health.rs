//! Passive health of upstream targets and per-model retry budgets. Nothing here sends a request of its own:
//! targets are judged by the live traffic they serve (no probes that burn tokens).
//!
//! A target (provider + upstream model) whose error rate over a sliding window crosses a threshold is ejected for
//! a cool-down that doubles with each consecutive ejection; after it, the target is half-open: one live request
//! at a time is let through as a probe, and its outcome closes the circuit or ejects the target again. When every
//! target of a model is ejected, routing uses them all rather than fail every request.
//!
//! State lives in a [`Registry`] that outlives snapshots, so a configuration change does not reset it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Tuning of the circuit breaker.
#[derive(Debug, Clone, Copy)]
pub struct BreakerPolicy {
    /// Length of the sliding window.
    pub window: Duration,
    /// Fewest requests in the window before the error rate is judged.
    pub min_requests: u32,
    /// Error rate (0–1) at or above which the target is ejected.
    pub error_rate: f64,
    /// First cool-down; doubled per consecutive ejection up to `max_cooldown`.
    pub base_cooldown: Duration,
    pub max_cooldown: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
            min_requests: 10,
            error_rate: 0.5,
            base_cooldown: Duration::from_secs(5),
            max_cooldown: Duration::from_secs(120),
        }
    }
}

const BUCKETS: usize = 10;
/// A probe that never reported back (its request vanished) stops blocking new probes after this long.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    Closed,
    Open { until: Instant },
    HalfOpen { probe_since: Option<Instant> },
}

/// Whether an attempt may go to a target, and if so whether it is the half-open probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allow,
    Probe,
    Skip,
}

#[derive(Debug)]
struct State {
    circuit: Circuit,
    /// Consecutive ejections, for the doubling cool-down.
    ejections: u32,
    /// (bucket start, successes, failures), a ring indexed by bucket number.
    buckets: [(u64, u32, u32); BUCKETS],
}

#[derive(Debug)]
pub struct TargetHealth {
    policy: BreakerPolicy,
    epoch: Instant,
    state: Mutex<State>,
    /// Cool-down after the provider answered 429 (see `limits::cooldown`).
    pub cool: crate::limits::cooldown::CoolState,
    /// What the node reports about the target's rate limits (see `upstream_status`).
    pub limits: crate::upstream_status::TargetStats,
}

impl TargetHealth {
    pub fn new(policy: BreakerPolicy, epoch: Instant) -> Self {
        Self {
            policy,
            epoch,
            state: Mutex::new(State { circuit: Circuit::Closed, ejections: 0, buckets: [(u64::MAX, 0, 0); BUCKETS] }),
            cool: Default::default(),
            limits: Default::default(),
        }
    }

    pub fn circuit(&self) -> Circuit {
        self.lock().circuit
    }

    pub fn admit(&self, now: Instant) -> Admission {
        let mut s = self.lock();
        match s.circuit {
            Circuit::Closed => Admission::Allow,
            Circuit::Open { until } if now < until => Admission::Skip,
            Circuit::Open { .. } | Circuit::HalfOpen { probe_since: None } => {
                s.circuit = Circuit::HalfOpen { probe_since: Some(now) };
                Admission::Probe
            }
            Circuit::HalfOpen { probe_since: Some(t) } if now.saturating_duration_since(t) >= PROBE_TIMEOUT => {
                s.circuit = Circuit::HalfOpen { probe_since: Some(now) };
                Admission::Probe
            }
            Circuit::HalfOpen { .. } => Admission::Skip,
        }
    }

    /// Gives back a probe slot that was claimed but not used (the attempt was skipped for capacity), so the next
    /// request may probe instead of waiting out the probe timeout.
    pub fn release_probe(&self) {
        let mut s = self.lock();
        if let Circuit::HalfOpen { probe_since: Some(_) } = s.circuit {
            s.circuit = Circuit::HalfOpen { probe_since: None };
        }
    }

    /// Records the outcome of an attempt admitted with `admission`. Returns true when this ejected the target.
    pub fn record(&self, now: Instant, admission: Admission, ok: bool) -> bool {
        let policy = self.policy;
        let bucket_len = (policy.window.as_millis() as u64 / BUCKETS as u64).max(1);
        let bucket = now.saturating_duration_since(self.epoch).as_millis() as u64 / bucket_len;
        let mut s = self.lock();
        let slot = &mut s.buckets[(bucket % BUCKETS as u64) as usize];
        if slot.0 != bucket {
            *slot = (bucket, 0, 0);
        }
        if ok {
            slot.1 += 1;
        } else {
            slot.2 += 1;
        }
        match (admission, ok) {
            (Admission::Probe, true) => {
                s.circuit = Circuit::Closed;
                s.ejections = 0;
                s.buckets = [(u64::MAX, 0, 0); BUCKETS];
                false
            }
            (Admission::Probe, false) => {
                eject(&mut s, now, &policy);
                true
            }
            _ if s.circuit != Circuit::Closed => false,
            _ => {
                let oldest = bucket.saturating_sub(BUCKETS as u64 - 1);
                let (ok_n, err_n) = s
                    .buckets
                    .iter()
                    .filter(|(b, _, _)| *b != u64::MAX && *b >= oldest && *b <= bucket)
                    .fold((0u32, 0u32), |(o, e), (_, so, se)| (o + so, e + se));
                let total = ok_n + err_n;
                if total >= policy.min_requests && f64::from(err_n) >= policy.error_rate * f64::from(total) {
                    eject(&mut s, now, &policy);
                    true
                } else {
                    false
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the counters inconsistent in a way that matters.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn eject(s: &mut State, now: Instant, policy: &BreakerPolicy) {
    let factor = 1u32.checked_shl(s.ejections.min(16)).unwrap_or(u32::MAX);
    let cooldown = policy.base_cooldown.saturating_mul(factor).min(policy.max_cooldown);
    s.circuit = Circuit::Open { until: now + cooldown };
    s.ejections = s.ejections.saturating_add(1);
    s.buckets = [(u64::MAX, 0, 0); BUCKETS];
}

/// Retries may add at most `ratio` of a model's request rate (plus a small reserve), so that retries cannot
/// multiply the load on providers that are already failing.
#[derive(Debug)]
pub struct RetryBudget {
    /// Thousandths of a retry.
    balance: AtomicI64,
}

const BUDGET_DEPOSIT: i64 = 200; // each request earns 0.2 retries
const BUDGET_COST: i64 = 1000;
const BUDGET_CAP: i64 = 20_000; // at most 20 retries banked

impl Default for RetryBudget {
    fn default() -> Self {
        Self { balance: AtomicI64::new(BUDGET_CAP) }
    }
}

impl RetryBudget {
    pub fn deposit(&self) {
        let _ = self
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some((b + BUDGET_DEPOSIT).min(BUDGET_CAP)));
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| (b >= BUDGET_COST).then_some(b - BUDGET_COST))
            .is_ok()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new(BreakerPolicy::default())
    }
}

/// A target is a provider and an upstream model on it.
type TargetKey = (i64, Box<str>);

/// Long-lived health state, handed to each new catalog so it survives snapshot swaps.
pub struct Registry {
    policy: BreakerPolicy,
    epoch: Instant,
    targets: Mutex<HashMap<TargetKey, Arc<TargetHealth>>>,
    budgets: Mutex<HashMap<Box<str>, Arc<RetryBudget>>>,
}

impl Registry {
    pub fn new(policy: BreakerPolicy) -> Self {
        Self { policy, epoch: Instant::now(), targets: Mutex::default(), budgets: Mutex::default() }
    }

    pub fn target(&self, provider_id: i64, upstream_model: &str) -> Arc<TargetHealth> {
        let mut map = self.targets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry((provider_id, upstream_model.into()))
            .or_insert_with(|| Arc::new(TargetHealth::new(self.policy, self.epoch)))
            .clone()
    }

    pub fn budget(&self, model: &str) -> Arc<RetryBudget> {
        let mut map = self.budgets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(model.into()).or_default().clone()
    }

    /// Forgets targets and models no catalog refers to any more.
    pub fn retain_used(&self) {
        self.targets.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|_, h| Arc::strong_count(h) > 1);
        self.budgets.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|_, b| Arc::strong_count(b) > 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            window: Duration::from_secs(10),
            min_requests: 4,
            error_rate: 0.5,
            base_cooldown: Duration::from_secs(5),
            max_cooldown: Duration::from_secs(60),
        }
    }

    #[test]
    fn one_error_does_not_eject() {
        let t0 = Instant::now();
        let h = TargetHealth::new(policy(), t0);
        assert!(!h.record(t0, Admission::Allow, false));
        assert_eq!(h.admit(t0), Admission::Allow);
    }

    #[test]
    fn a_failing_target_is_ejected_then_probed_with_live_traffic_and_readmitted() {
        let t0 = Instant::now();
        let h = TargetHealth::new(policy(), t0);
        h.record(t0, Admission::Allow, true);
        h.record(t0, Admission::Allow, false);
        h.record(t0, Admission::Allow, false);
        assert!(h.record(t0, Admission::Allow, false), "3 of 4 failed: ejected");
        assert_eq!(h.admit(t0 + Duration::from_secs(1)), Admission::Skip);
        // After the cool-down one request is let through as the probe; others still skip.
        let later = t0 + Duration::from_secs(6);
        assert_eq!(h.admit(later), Admission::Probe);
        assert_eq!(h.admit(later), Admission::Skip);
        // The probe fails: ejected again for twice as long.
        assert!(h.record(later, Admission::Probe, false));
        assert_eq!(h.admit(later + Duration::from_secs(9)), Admission::Skip);
        let probe_at = later + Duration::from_secs(11);
        assert_eq!(h.admit(probe_at), Admission::Probe);
        // The probe succeeds: closed.
        assert!(!h.record(probe_at, Admission::Probe, true));
        assert_eq!(h.circuit(), Circuit::Closed);
        assert_eq!(h.admit(probe_at), Admission::Allow);
    }

    #[test]
    fn an_unused_probe_slot_is_given_back() {
        let t0 = Instant::now();
        let h = TargetHealth::new(policy(), t0);
        for _ in 0..4 {
            h.record(t0, Admission::Allow, false);
        }
        let later = t0 + Duration::from_secs(6);
        assert_eq!(h.admit(later), Admission::Probe);
        h.release_probe();
        assert_eq!(h.admit(later), Admission::Probe);
    }

    #[test]
    fn old_errors_slide_out_of_the_window() {
        let t0 = Instant::now();
        let h = TargetHealth::new(policy(), t0);
        for _ in 0..3 {
            h.record(t0, Admission::Allow, false);
        }
        let later = t0 + Duration::from_secs(30);
        assert!(!h.record(later, Admission::Allow, false));
        assert_eq!(h.circuit(), Circuit::Closed);
    }

    #[test]
    fn retries_are_limited_by_the_budget() {
        let b = RetryBudget::default();
        let mut granted = 0;
        while b.withdraw() {
            granted += 1;
        }
        assert_eq!(granted, 20);
        for _ in 0..5 {
            b.deposit();
        }
        assert!(b.withdraw());
        assert!(!b.withdraw());
    }
}
