//! Calendar-aligned budget periods: a day, an ISO week (Monday first) or a calendar month, in a time zone given as
//! `UTC`, a fixed offset (`+05:30`, `-08:00`) or an IANA name (`Europe/Berlin`).
//!
//! This is the one code path that decides when a period starts and ends, for every level (team and key) and for
//! both planes: the control plane sums spend over it and the data plane rolls budgets over with it, so they can
//! never disagree about which period a request belongs to. Time is a parameter.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike as _, Duration, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// How long a budget lasts before it resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodKind {
    Daily,
    /// ISO weeks: Monday 00:00 to the next Monday 00:00.
    Weekly,
    /// The calendar month: the 1st 00:00 to the 1st of the next month 00:00.
    #[default]
    Monthly,
}

impl PeriodKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "daily" => Some(Self::Daily),
            "weekly" => Some(Self::Weekly),
            "monthly" => Some(Self::Monthly),
            _ => None,
        }
    }
}

/// A time zone budgets are aligned to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Fixed(FixedOffset),
    Iana(chrono_tz::Tz),
}

impl Zone {
    pub const UTC: Zone = Zone::Fixed(match FixedOffset::east_opt(0) {
        Some(z) => z,
        None => unreachable!(),
    });

    /// `UTC`/`Z`, `+HH:MM`/`-HH:MM`, or an IANA zone name.
    pub fn parse(s: &str) -> Result<Self, ZoneError> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("utc") || s == "Z" {
            return Ok(Self::UTC);
        }
        if s.starts_with('+') || s.starts_with('-') {
            return parse_offset(s).map(Self::Fixed).ok_or_else(|| ZoneError(s.to_owned()));
        }
        chrono_tz::Tz::from_str(s).map(Self::Iana).map_err(|_| ZoneError(s.to_owned()))
    }

    /// The calendar day in this zone that `t` falls on (reports and rollups are keyed by it).
    pub fn date_of(&self, t: DateTime<Utc>) -> NaiveDate {
        self.local(t).date()
    }

    fn local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        match self {
            Self::Fixed(z) => t.with_timezone(z).naive_local(),
            Self::Iana(z) => t.with_timezone(z).naive_local(),
        }
    }

    /// The instant of a local midnight. A midnight that a daylight-saving jump skips becomes the first local time
    /// that exists after it; a midnight that occurs twice is its first occurrence.
    pub fn midnight(&self, day: NaiveDate) -> DateTime<Utc> {
        let mut local = day.and_hms_opt(0, 0, 0).unwrap_or_default();
        // DST gaps are at most a few hours; step in 15 minutes until the local time exists.
        for _ in 0..(4 * 24) {
            let found = match self {
                Self::Fixed(z) => resolve(z.from_local_datetime(&local)),
                Self::Iana(z) => resolve(z.from_local_datetime(&local)),
            };
            if let Some(t) = found {
                return t;
            }
            local += Duration::minutes(15);
        }
        local.and_utc()
    }
}

fn resolve<Tz: TimeZone>(r: LocalResult<DateTime<Tz>>) -> Option<DateTime<Utc>> {
    match r {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Some(a.min(b).with_timezone(&Utc)),
        LocalResult::None => None,
    }
}

fn parse_offset(s: &str) -> Option<FixedOffset> {
    let sign = if s.starts_with('-') { -1 } else { 1 };
    let rest = &s[1..];
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => rest.split_at(2),
        None => (rest, "0"),
    };
    let h: i32 = h.parse().ok()?;
    let m: i32 = m.parse().ok()?;
    if !(0..=18).contains(&h) || !(0..60).contains(&m) {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(z) if z.local_minus_utc() == 0 => f.write_str("UTC"),
            Self::Fixed(z) => write!(f, "{z}"),
            Self::Iana(z) => f.write_str(z.name()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a time zone: use `UTC`, an offset like `+02:00`, or an IANA name like `Europe/Berlin`")]
pub struct ZoneError(pub String);

/// One budget period, `[start, end)`, as UTC instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Period {
    /// The period of `kind` in `zone` that contains `now`.
    pub fn containing(kind: PeriodKind, zone: Zone, now: DateTime<Utc>) -> Self {
        let today = zone.local(now).date();
        let first = match kind {
            PeriodKind::Daily => today,
            PeriodKind::Weekly => today - Duration::days(i64::from(today.weekday().num_days_from_monday())),
            PeriodKind::Monthly => today.with_day(1).unwrap_or(today),
        };
        let next = match kind {
            PeriodKind::Daily => first + Duration::days(1),
            PeriodKind::Weekly => first + Duration::days(7),
            PeriodKind::Monthly => first_of_next_month(first),
        };
        Self { start: zone.midnight(first), end: zone.midnight(next) }
    }

    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }
}

fn first_of_next_month(first: NaiveDate) -> NaiveDate {
    let (y, m) = if first.month() == 12 { (first.year() + 1, 1) } else { (first.year(), first.month() + 1) };
    NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn zones_parse() {
        assert_eq!(Zone::parse("UTC").unwrap(), Zone::UTC);
        assert_eq!(Zone::parse("+05:30").unwrap().to_string(), "+05:30");
        assert_eq!(Zone::parse("-0800").unwrap().to_string(), "-08:00");
        assert_eq!(Zone::parse("Europe/Berlin").unwrap().to_string(), "Europe/Berlin");
        assert!(Zone::parse("Mars/Olympus").is_err());
        assert!(Zone::parse("+25:00").is_err());
    }

    #[test]
    fn months_are_calendar_months_including_their_ends() {
        let p = Period::containing(PeriodKind::Monthly, Zone::UTC, at("2026-02-28T23:59:59Z"));
        assert_eq!((p.start, p.end), (at("2026-02-01T00:00:00Z"), at("2026-03-01T00:00:00Z")));
        // Leap year February.
        let p = Period::containing(PeriodKind::Monthly, Zone::UTC, at("2028-02-29T12:00:00Z"));
        assert_eq!(p.end, at("2028-03-01T00:00:00Z"));
        // December rolls into the next year; the end instant belongs to the next period.
        let p = Period::containing(PeriodKind::Monthly, Zone::UTC, at("2026-12-31T23:59:59.999Z"));
        assert_eq!((p.start, p.end), (at("2026-12-01T00:00:00Z"), at("2027-01-01T00:00:00Z")));
        let next = Period::containing(PeriodKind::Monthly, Zone::UTC, p.end);
        assert_eq!(next.start, p.end);
        assert!(!p.contains(p.end) && next.contains(p.end));
    }

    #[test]
    fn days_and_iso_weeks() {
        let p = Period::containing(PeriodKind::Daily, Zone::UTC, at("2026-03-15T10:00:00Z"));
        assert_eq!((p.start, p.end), (at("2026-03-15T00:00:00Z"), at("2026-03-16T00:00:00Z")));
        // 2026-03-15 is a Sunday: its week started on Monday the 9th.
        let p = Period::containing(PeriodKind::Weekly, Zone::UTC, at("2026-03-15T10:00:00Z"));
        assert_eq!((p.start, p.end), (at("2026-03-09T00:00:00Z"), at("2026-03-16T00:00:00Z")));
    }

    #[test]
    fn a_fixed_offset_moves_the_boundary() {
        // 23:30 UTC on Jan 31 is already Feb 1 in +05:30.
        let z = Zone::parse("+05:30").unwrap();
        let p = Period::containing(PeriodKind::Monthly, z, at("2026-01-31T23:30:00Z"));
        assert_eq!((p.start, p.end), (at("2026-01-31T18:30:00Z"), at("2026-02-28T18:30:00Z")));
    }

    #[test]
    fn an_iana_zone_follows_daylight_saving() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        // March 2026: starts in CET (+01:00), ends in CEST (+02:00) after the switch on the 29th.
        let p = Period::containing(PeriodKind::Monthly, berlin, at("2026-03-10T00:00:00Z"));
        assert_eq!((p.start, p.end), (at("2026-02-28T23:00:00Z"), at("2026-03-31T22:00:00Z")));
        // The day of the switch is 23 hours long.
        let d = Period::containing(PeriodKind::Daily, berlin, at("2026-03-29T12:00:00Z"));
        assert_eq!(d.end - d.start, Duration::hours(23));
        // An instant just before local midnight at a month end still belongs to the old month.
        let p = Period::containing(PeriodKind::Monthly, berlin, at("2026-04-30T21:59:59Z"));
        assert_eq!(p.start, at("2026-03-31T22:00:00Z"));
        let p = Period::containing(PeriodKind::Monthly, berlin, at("2026-04-30T22:00:00Z"));
        assert_eq!(p.start, at("2026-04-30T22:00:00Z"));
    }

    #[test]
    fn a_skipped_midnight_starts_at_the_first_existing_local_time() {
        // America/Santiago skips 00:00-01:00 at its September DST switch (2026-09-06).
        let z = Zone::parse("America/Santiago").unwrap();
        let d = Period::containing(PeriodKind::Daily, z, at("2026-09-06T12:00:00Z"));
        assert_eq!(d.start, at("2026-09-06T04:00:00Z"));
        assert_eq!(d.end - d.start, Duration::hours(23));
    }
}
