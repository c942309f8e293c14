//! Budgets by reserve-then-settle. Admission reserves a request's worst case (prompt estimate plus the most
//! completion tokens it may produce, priced) against what is left; when the request ends the reservation is
//! replaced by the real cost. Checking and reserving happen under one lock, so concurrent requests can never
//! together spend more than the budget — unlike "check before, record after", where all of them pass the check.
//!
//! Spend = what the control plane counted for the period (pushed with each snapshot) + what this node settled
//! that the control plane has not counted yet + what is reserved by requests in flight here. Settled entries
//! are dropped once a snapshot says the control plane holds this node's records up to their id.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use switchyard_shared::limits::{Caps, Spend};
use switchyard_shared::money::Micros;
use switchyard_shared::period::Period;
use uuid::Uuid;

/// Money and tokens together, the two things a budget caps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amount {
    pub micros: Micros,
    pub tokens: u64,
}

impl Amount {
    fn add(self, o: Amount) -> Amount {
        Amount { micros: self.micros.saturating_add(o.micros), tokens: self.tokens.saturating_add(o.tokens) }
    }

    fn sub(self, o: Amount) -> Amount {
        Amount { micros: self.micros.saturating_sub(o.micros), tokens: self.tokens.saturating_sub(o.tokens) }
    }
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted {
    /// When the period ends and the budget is available again.
    pub resets_at: DateTime<Utc>,
    /// Money left (not counting the refused request), when money is the cap that was hit.
    pub micros_left: Option<Micros>,
    pub tokens_left: Option<u64>,
}

/// A reservation held by a request in flight, for the period it started in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub amount: Amount,
    period_start: DateTime<Utc>,
}

#[derive(Debug)]
pub struct Ledger {
    period: Period,
    synced_version: u64,
    /// Counted by the control plane for `period`.
    base: Amount,
    /// Settled on this node, not yet in `base`, by usage record id (ids increase with time).
    unreported: VecDeque<(Uuid, Amount)>,
    unreported_sum: Amount,
    reserved: Amount,
}

impl Ledger {
    pub fn new(period: Period) -> Self {
        Self {
            period,
            synced_version: 0,
            base: Amount::default(),
            unreported: VecDeque::new(),
            unreported_sum: Amount::default(),
            reserved: Amount::default(),
        }
    }

    /// Moves to `period` if time has moved past the current one: spend starts from zero again. Requests still in
    /// flight keep their reservations until they end.
    pub fn roll(&mut self, period: Period) {
        if period.start > self.period.start {
            self.period = period;
            self.base = Amount::default();
            self.unreported.clear();
            self.unreported_sum = Amount::default();
        }
    }

    /// Takes in the control plane's count from snapshot `version`: its spend for the current period, and which
    /// of this node's records it includes.
    pub fn sync(&mut self, version: u64, spend: Option<Spend>, watermark: Option<Uuid>) {
        if version <= self.synced_version {
            return;
        }
        self.synced_version = version;
        self.base = match spend {
            Some(s) if s.period_start == self.period.start => Amount { micros: s.micros, tokens: s.tokens },
            // A count for an earlier period says nothing about this one; a later one means this node's clock is
            // behind: trust the control plane's period.
            Some(s) if s.period_start > self.period.start => {
                self.unreported.clear();
                self.unreported_sum = Amount::default();
                Amount { micros: s.micros, tokens: s.tokens }
            }
            _ => Amount::default(),
        };
        if let Some(w) = watermark {
            while let Some((id, a)) = self.unreported.front().copied() {
                if id > w {
                    break;
                }
                self.unreported.pop_front();
                self.unreported_sum = self.unreported_sum.sub(a);
            }
        }
    }

    /// Spend counted so far in the current period (reservations not included).
    pub fn spent(&self) -> Amount {
        self.base.add(self.unreported_sum)
    }

    pub fn reserved(&self) -> Amount {
        self.reserved
    }

    pub fn period(&self) -> Period {
        self.period
    }

    /// Reserves `want` if it fits under `caps` together with everything spent and reserved.
    pub fn reserve(&mut self, caps: Caps, want: Amount) -> Result<Reservation, Exhausted> {
        let committed = self.spent().add(self.reserved);
        let micros_left = caps.micros.map(|c| c.saturating_sub(committed.micros));
        let tokens_left = caps.tokens.map(|c| c.saturating_sub(committed.tokens));
        let money_short = micros_left.is_some_and(|left| want.micros > left || left <= 0);
        let tokens_short = tokens_left.is_some_and(|left| want.tokens > left || left == 0);
        if money_short || tokens_short {
            return Err(Exhausted {
                resets_at: self.period.end,
                micros_left: money_short.then(|| micros_left.unwrap_or_default().max(0)),
                tokens_left: tokens_short.then(|| tokens_left.unwrap_or_default()),
            });
        }
        self.reserved = self.reserved.add(want);
        Ok(Reservation { amount: want, period_start: self.period.start })
    }

    /// Replaces a reservation by what the request really cost (`id` is its usage record). A request that started
    /// in an earlier period counts there, not here.
    pub fn settle(&mut self, r: Reservation, actual: Amount, id: Uuid) {
        self.reserved = self.reserved.sub(r.amount);
        if r.period_start == self.period.start && actual != Amount::default() {
            self.unreported.push_back((id, actual));
            self.unreported_sum = self.unreported_sum.add(actual);
        }
    }

    /// Gives a reservation back unused (the request ended without a usage record, e.g. refused by another limit).
    pub fn release(&mut self, r: Reservation) {
        self.reserved = self.reserved.sub(r.amount);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use chrono::Duration;
    use switchyard_shared::limits::{Budget, TemporaryIncrease};
    use switchyard_shared::period::{PeriodKind, Zone};

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn month(s: &str) -> Period {
        Period::containing(PeriodKind::Monthly, Zone::UTC, at(s))
    }

    fn money(m: Micros) -> Amount {
        Amount { micros: m, tokens: 0 }
    }

    const CAP: Caps = Caps { micros: Some(1000), tokens: None };

    #[test]
    fn reservations_hold_back_budget_until_settled() {
        let mut l = Ledger::new(month("2026-03-10T00:00:00Z"));
        let a = l.reserve(CAP, money(600)).unwrap();
        // 400 left: a second worst case of 600 does not fit although nothing is spent yet.
        let refused = l.reserve(CAP, money(600)).unwrap_err();
        assert_eq!(refused.micros_left, Some(400));
        assert_eq!(refused.resets_at, at("2026-04-01T00:00:00Z"));
        // The first request really cost 100: the rest of its reservation comes back.
        l.settle(a, money(100), Uuid::now_v7());
        assert_eq!((l.spent(), l.reserved()), (money(100), Amount::default()));
        assert!(l.reserve(CAP, money(600)).is_ok());
    }

    #[test]
    fn concurrent_reservations_cannot_overspend() {
        let ledger = Arc::new(Mutex::new(Ledger::new(month("2026-03-10T00:00:00Z"))));
        let caps = Caps { micros: Some(100_000), tokens: Some(5_000) };
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let ledger = ledger.clone();
                std::thread::spawn(move || {
                    let mut admitted = 0;
                    for _ in 0..500 {
                        let want = Amount { micros: 70, tokens: 30 };
                        let r = ledger.lock().unwrap().reserve(caps, want);
                        if let Ok(r) = r {
                            admitted += 1;
                            std::thread::yield_now();
                            // The real cost is at most the worst case.
                            ledger.lock().unwrap().settle(r, Amount { micros: 69, tokens: 30 }, Uuid::now_v7());
                        }
                    }
                    admitted
                })
            })
            .collect();
        let admitted: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        let l = ledger.lock().unwrap();
        assert!(l.spent().micros <= 100_000 && l.spent().tokens <= 5_000, "overspent: {:?}", l.spent());
        assert_eq!(l.spent().tokens, admitted * 30);
        // The token cap (5000 / 30 = 166) is the one that binds.
        assert_eq!(admitted, 166);
        assert_eq!(l.reserved(), Amount::default());
    }

    #[test]
    fn snapshot_spend_replaces_what_it_includes_and_keeps_the_rest() {
        let mut l = Ledger::new(month("2026-03-10T00:00:00Z"));
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        for id in &ids {
            let r = l.reserve(CAP, money(100)).unwrap();
            l.settle(r, money(100), *id);
        }
        assert_eq!(l.spent(), money(300));
        // The control plane counted the first two records (200) plus 500 from other nodes.
        let spend = Spend { period_start: at("2026-03-01T00:00:00Z"), micros: 700, tokens: 0 };
        l.sync(5, Some(spend), Some(ids[1]));
        assert_eq!(l.spent(), money(800));
        // An older snapshot changes nothing.
        l.sync(4, None, None);
        assert_eq!(l.spent(), money(800));
        assert!(l.reserve(CAP, money(201)).is_err());
        assert!(l.reserve(CAP, money(200)).is_ok());
    }

    #[test]
    fn a_new_period_starts_from_zero_and_late_settlements_stay_in_their_period() {
        let mut l = Ledger::new(month("2026-01-31T23:00:00Z"));
        let r = l.reserve(CAP, money(900)).unwrap();
        l.roll(month("2026-02-01T00:00:00Z"));
        assert_eq!(l.period().start, at("2026-02-01T00:00:00Z"));
        l.settle(r, money(900), Uuid::now_v7());
        assert_eq!(l.spent(), Amount::default());
        // A snapshot still carrying January's spend does not count against February.
        l.sync(9, Some(Spend { period_start: at("2026-01-01T00:00:00Z"), micros: 999, tokens: 0 }), None);
        assert_eq!(l.spent(), Amount::default());
        assert!(l.reserve(CAP, money(1000)).is_ok());
    }

    #[test]
    fn a_temporary_increase_raises_the_cap_until_its_end_date() {
        let until = at("2026-03-20T00:00:00Z");
        let budget = Budget {
            max_micros: Some(1000),
            temporary_increase: Some(TemporaryIncrease { micros: 500, tokens: 0, until }),
            ..Budget::default()
        };
        let mut l = Ledger::new(budget.period(until));
        let r = l.reserve(budget.caps(until - Duration::seconds(1)), money(1400)).unwrap();
        l.settle(r, money(1400), Uuid::now_v7());
        // After the end date the base cap applies again: already over it, so nothing more is admitted.
        let e = l.reserve(budget.caps(until), money(1)).unwrap_err();
        assert_eq!(e.micros_left, Some(0));
    }

    #[test]
    fn token_caps_apply_alone() {
        let mut l = Ledger::new(month("2026-03-10T00:00:00Z"));
        let caps = Caps { micros: None, tokens: Some(100) };
        let r = l.reserve(caps, Amount { micros: 1_000_000, tokens: 60 }).unwrap();
        let e = l.reserve(caps, Amount { micros: 0, tokens: 41 }).unwrap_err();
        assert_eq!((e.tokens_left, e.micros_left), (Some(40), None));
        l.release(r);
        assert!(l.reserve(caps, Amount { micros: 0, tokens: 100 }).is_ok());
    }
}
