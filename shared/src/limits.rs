//! Limits as they travel in the snapshot: rates, concurrency and budgets of a team or a key (both apply to a
//! request), and the spend the control plane has counted in the current budget period.
//!
//! Every field is optional with `#[serde(default)]`: `None` means "no limit", and a node reading a payload
//! written before a field existed treats it as unlimited.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::money::Micros;
use crate::period::{Period, PeriodKind, Zone, ZoneError};

/// Default soft threshold of a budget, in percent, at which the control plane raises an alert.
pub const DEFAULT_SOFT_THRESHOLD_PCT: u8 = 80;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens (prompt + completion) per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none() && self.max_concurrent.is_none() && self.budget.is_none()
    }
}

/// A spending cap per calendar period, in money and/or tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    #[serde(default)]
    pub period: PeriodKind,
    /// `UTC` (default), `+HH:MM`, or an IANA zone name; periods start at local midnight there.
    #[serde(default = "utc", skip_serializing_if = "is_utc")]
    pub timezone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_micros: Option<Micros>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Percent of either cap at which an alert is raised (default 80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_threshold_pct: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporary_increase: Option<TemporaryIncrease>,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            period: PeriodKind::default(),
            timezone: utc(),
            max_micros: None,
            max_tokens: None,
            soft_threshold_pct: None,
            temporary_increase: None,
        }
    }
}

fn utc() -> String {
    "UTC".to_owned()
}

fn is_utc(s: &String) -> bool {
    s == "UTC"
}

/// Extra allowance on top of a budget until `until` (exclusive), e.g. for a launch week.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemporaryIncrease {
    #[serde(default)]
    pub micros: Micros,
    #[serde(default)]
    pub tokens: u64,
    pub until: DateTime<Utc>,
}

/// The caps of a budget in force at one instant (temporary increase included while it lasts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub micros: Option<Micros>,
    pub tokens: Option<u64>,
}

impl Budget {
    pub fn zone(&self) -> Result<Zone, ZoneError> {
        Zone::parse(&self.timezone)
    }

    /// The period containing `now`. An unparseable zone (which the control plane refuses to store) counts as UTC.
    pub fn period(&self, now: DateTime<Utc>) -> Period {
        Period::containing(self.period, self.zone().unwrap_or(Zone::UTC), now)
    }

    pub fn caps(&self, now: DateTime<Utc>) -> Caps {
        let extra = self.temporary_increase.as_ref().filter(|t| now < t.until);
        Caps {
            micros: self.max_micros.map(|m| m.saturating_add(extra.map_or(0, |e| e.micros))),
            tokens: self.max_tokens.map(|t| t.saturating_add(extra.map_or(0, |e| e.tokens))),
        }
    }

    pub fn soft_threshold_pct(&self) -> u8 {
        self.soft_threshold_pct.unwrap_or(DEFAULT_SOFT_THRESHOLD_PCT)
    }
}

/// What the control plane has counted against a budget in the period starting at `period_start`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spend {
    pub period_start: DateTime<Utc>,
    #[serde(default)]
    pub micros: Micros,
    #[serde(default)]
    pub tokens: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_defaults() {
        let l = Limits {
            rpm: Some(60),
            tpm: None,
            max_concurrent: Some(4),
            budget: Some(Budget {
                period: PeriodKind::Weekly,
                timezone: "Europe/Berlin".into(),
                max_micros: Some(5_000_000),
                max_tokens: None,
                soft_threshold_pct: Some(90),
                temporary_increase: Some(TemporaryIncrease {
                    micros: 1_000_000,
                    tokens: 0,
                    until: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
                }),
            }),
        };
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(serde_json::from_str::<Limits>(&json).unwrap(), l);
        let b: Budget = serde_json::from_str(r#"{"max_micros":1}"#).unwrap();
        assert_eq!((b.period, b.timezone.as_str(), b.soft_threshold_pct()), (PeriodKind::Monthly, "UTC", 80));
        assert!(serde_json::from_str::<Limits>("{}").unwrap().is_empty());
    }

    #[test]
    fn a_temporary_increase_ends_on_its_date() {
        let until = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let b = Budget {
            max_micros: Some(100),
            max_tokens: Some(10),
            temporary_increase: Some(TemporaryIncrease { micros: 50, tokens: 5, until }),
            ..Budget::default()
        };
        let before = until - chrono::Duration::seconds(1);
        assert_eq!(b.caps(before), Caps { micros: Some(150), tokens: Some(15) });
        assert_eq!(b.caps(until), Caps { micros: Some(100), tokens: Some(10) });
        // No base cap means no cap, whatever the increase.
        let b = Budget { max_tokens: None, max_micros: Some(1), ..b };
        assert_eq!(b.caps(before).tokens, None);
    }
}
