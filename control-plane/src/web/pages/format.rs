//! How numbers, money and times read on the pages. Money is integer micro-units; it is printed exactly.

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::DomainError;

/// `1234567` → `1,234,567`.
pub fn int(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Micro-units as dollars, at least two decimals, more only when they are not zero: `$12.50`, `$0.000125`.
pub fn money(micros: i64) -> String {
    money_in(micros, "USD")
}

/// Micro-units of an ISO 4217 currency: `$12.50` (USD), `€12.50` (EUR), `£12.50` (GBP), else `12.50 CHF`.
pub fn money_in(micros: i64, currency: &str) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    let frac = format!("{:06}", m % 1_000_000);
    let frac = frac.trim_end_matches('0');
    let frac = if frac.len() < 2 { format!("{frac:0<2}") } else { frac.to_owned() };
    let amount = format!("{}.{frac}", int(i64::try_from(m / 1_000_000).unwrap_or(i64::MAX)));
    match currency {
        "USD" => format!("{sign}${amount}"),
        "EUR" => format!("{sign}€{amount}"),
        "GBP" => format!("{sign}£{amount}"),
        code => format!("{sign}{amount} {code}"),
    }
}

/// Micro-units as a plain decimal for a form field: `2500000` → `2.5`.
pub fn decimal(micros: i64) -> String {
    let m = micros.unsigned_abs();
    let frac = format!("{:06}", m % 1_000_000);
    let frac = frac.trim_end_matches('0');
    let sign = if micros < 0 { "-" } else { "" };
    if frac.is_empty() { format!("{sign}{}", m / 1_000_000) } else { format!("{sign}{}.{frac}", m / 1_000_000) }
}

/// A dollar amount typed in a form (`2.5`, `0.15`, `$3`) as micro-units, exactly; at most six decimals.
pub fn parse_money(field: &str, s: &str) -> Result<i64, DomainError> {
    let bad = || DomainError::invalid(field, "enter an amount in dollars, e.g. 2.50 (at most 6 decimals)");
    let s = s.trim().trim_start_matches('$').replace(',', "");
    if s.is_empty() {
        return Err(DomainError::invalid(field, "this price is required"));
    }
    let (whole, frac) = s.split_once('.').unwrap_or((&s, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 6
    {
        return Err(bad());
    }
    let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad())? };
    let frac: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<6}").parse().map_err(|_| bad())? };
    whole.checked_mul(1_000_000).and_then(|w| w.checked_add(frac)).ok_or_else(bad)
}

pub fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub fn date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// `42 s ago`, `3 min ago`, `5 h ago`, `2 d ago`.
pub fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let s = (now - t).num_seconds().max(0);
    match s {
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..86_400 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_exact_both_ways() {
        assert_eq!(money(12_500_000), "$12.50");
        assert_eq!(money(125), "$0.000125");
        assert_eq!(money(1_234_567_890_000), "$1,234,567.89");
        assert_eq!(money_in(-12_500_000, "EUR"), "-€12.50");
        assert_eq!(money_in(1_000_000, "CHF"), "1.00 CHF");
        assert_eq!(decimal(2_500_000), "2.5");
        assert_eq!(decimal(3_000_000), "3");
        assert_eq!(parse_money("p", "2.5").unwrap(), 2_500_000);
        assert_eq!(parse_money("p", "$0.000001").unwrap(), 1);
        assert_eq!(parse_money("p", ".15").unwrap(), 150_000);
        assert!(parse_money("p", "1.0000001").is_err());
        assert!(parse_money("p", "-1").is_err());
        assert!(parse_money("p", "abc").is_err());
        assert!(parse_money("p", "").is_err());
        assert_eq!(int(-1234), "-1,234");
    }
}
