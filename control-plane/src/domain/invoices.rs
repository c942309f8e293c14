//! Draft invoices: a team's usage for a calendar month of the reporting time zone, computed from the usage
//! rollups only (never the raw records), with one line per (model, price version).
//!
//! Rounding happens once, per record, at ingest (the record's cost in integer micro-units); a line's amount is the
//! exact integer sum of its records' costs and the total the exact sum of the lines, so lines add up to the total
//! to the micro-unit by construction. [`reconcile`] checks this against the raw records.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};

use chrono::{DateTime, Datelike as _, NaiveDate, TimeZone as _, Utc};
use sea_orm::sea_query::{Alias, Expr, Func};
use sea_orm::{ColumnTrait as _, ConnectionTrait, EntityTrait as _, QueryFilter as _, QuerySelect as _};
use serde::{Deserialize, Serialize};
use switchyard_shared::money::PriceSheet;
use switchyard_shared::period::{Period, PeriodKind};

use super::{DomainError, Store, teams};
use crate::entities::{price_versions, usage_records, usage_rollups};

/// A calendar month, written `yyyy-mm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    first: NaiveDate,
}

impl Month {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let invalid = || DomainError::invalid("month", format!("`{s}` is not a month: use yyyy-mm"));
        let (y, m) = s.split_once('-').ok_or_else(invalid)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(invalid());
        }
        let (y, m) = (y.parse::<i32>().map_err(|_| invalid())?, m.parse::<u32>().map_err(|_| invalid())?);
        NaiveDate::from_ymd_opt(y, m, 1).map(|first| Self { first }).ok_or_else(invalid)
    }

    /// The first day of the next month.
    fn next_first(self) -> NaiveDate {
        let (y, m) = if self.first.month() == 12 {
            (self.first.year() + 1, 1)
        } else {
            (self.first.year(), self.first.month() + 1)
        };
        NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(self.first)
    }

    /// The month as UTC instants `[start, end)` in the reporting zone.
    fn period(self, store: &Store) -> Period {
        let mid = self.first.and_hms_opt(12, 0, 0).map(|t| Utc.from_utc_datetime(&(t + chrono::Duration::days(14))));
        Period::containing(PeriodKind::Monthly, store.reporting_zone, mid.unwrap_or_default())
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.first.year(), self.first.month())
    }
}

/// One invoice line: a model's usage at one price version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceLine {
    pub model: String,
    /// `None` for usage costed without a price version (the node's cost).
    pub price_version_id: Option<i64>,
    /// The version's unit prices, micro-units per million tokens.
    pub unit_prices: Option<PriceSheet>,
    pub requests: i64,
    /// All input tokens, cached and cache-write included.
    pub prompt_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_write_tokens: i64,
    pub completion_tokens: i64,
    pub amount_micros: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    pub team_id: i64,
    pub team_name: String,
    pub month: String,
    pub status: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub lines: Vec<InvoiceLine>,
    pub subtotal_micros: i64,
    pub total_micros: i64,
}

type LineKey = (String, i64);

/// Summed in the database (one row per team and line, whatever the number of keys, days and shards).
type LineRow = (i64, String, i64, i64, i64, i64, i64, i64, i64);

/// Rollup rows of the month, summed per team and line.
async fn month_lines(
    conn: &impl ConnectionTrait,
    month: Month,
    team_id: Option<i64>,
) -> Result<BTreeMap<i64, BTreeMap<LineKey, InvoiceLine>>, DomainError> {
    use usage_rollups::Column as C;
    let mut q = usage_rollups::Entity::find().filter(C::Day.gte(month.first)).filter(C::Day.lt(month.next_first()));
    if let Some(t) = team_id {
        q = q.filter(C::TeamId.eq(t));
    }
    let rows: Vec<LineRow> = q
        .select_only()
        .column(C::TeamId)
        .column(C::Model)
        .column(C::PriceVersionId)
        .column_as(rollup_sum(C::Requests), "requests")
        .column_as(rollup_sum(C::PromptTokens), "prompt_tokens")
        .column_as(rollup_sum(C::CachedInputTokens), "cached_input_tokens")
        .column_as(rollup_sum(C::CacheWriteTokens), "cache_write_tokens")
        .column_as(rollup_sum(C::CompletionTokens), "completion_tokens")
        .column_as(rollup_sum(C::CostMicros), "cost_micros")
        .group_by(C::TeamId)
        .group_by(C::Model)
        .group_by(C::PriceVersionId)
        .into_tuple()
        .all(conn)
        .await?;
    let mut out: BTreeMap<i64, BTreeMap<LineKey, InvoiceLine>> = BTreeMap::new();
    for (team, model, version, requests, prompt, cached, cache_write, completion, cost) in rows {
        let line = InvoiceLine {
            model: model.clone(),
            price_version_id: (version != 0).then_some(version),
            unit_prices: None,
            requests,
            prompt_tokens: prompt,
            cached_input_tokens: cached,
            cache_write_tokens: cache_write,
            completion_tokens: completion,
            amount_micros: cost,
        };
        out.entry(team).or_default().insert((model, version), line);
    }
    Ok(out)
}

fn rollup_sum(col: usage_rollups::Column) -> Expr {
    Func::cast_as(Func::coalesce([Expr::from(Func::sum(Expr::col(col))), Expr::val(0i64)]), Alias::new("BIGINT")).into()
}

/// The draft invoice of a team for a month.
pub async fn draft(store: &Store, team_id: i64, month: Month) -> Result<Invoice, DomainError> {
    let team = teams::get(store, team_id).await?;
    let mut lines: Vec<InvoiceLine> = month_lines(&store.db, month, Some(team_id))
        .await?
        .remove(&team_id)
        .unwrap_or_default()
        .into_values()
        .collect();
    let ids: Vec<i64> = lines.iter().filter_map(|l| l.price_version_id).collect();
    let versions: HashMap<i64, PriceSheet> = price_versions::Entity::find()
        .filter(price_versions::Column::Id.is_in(ids))
        .all(&store.db)
        .await?
        .into_iter()
        .map(|v| {
            let sheet = PriceSheet {
                input_per_mtok: v.input_per_mtok,
                output_per_mtok: v.output_per_mtok,
                cached_input_per_mtok: v.cached_input_per_mtok,
                cache_write_per_mtok: v.cache_write_per_mtok,
            };
            (v.id, sheet)
        })
        .collect();
    for line in &mut lines {
        line.unit_prices = line.price_version_id.and_then(|id| versions.get(&id).copied());
    }
    let subtotal_micros = lines.iter().map(|l| l.amount_micros).sum();
    let period = month.period(store);
    Ok(Invoice {
        team_id,
        team_name: team.name,
        month: month.to_string(),
        status: "draft".to_owned(),
        period_start: period.start,
        period_end: period.end,
        lines,
        subtotal_micros,
        total_micros: subtotal_micros,
    })
}

/// Micro-units as a decimal amount with six places (`1.234500`).
pub fn decimal(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    format!("{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
}

/// A CSV field, quoted when it needs to be; text that a spreadsheet would run as a formula is prefixed with `'`.
fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

pub const CSV_HEADER: &str = "team_id,month,model,price_version_id,requests,prompt_tokens,cached_input_tokens,\
cache_write_tokens,completion_tokens,input_per_mtok,cached_input_per_mtok,cache_write_per_mtok,output_per_mtok,\
amount_micros,amount";

/// The invoice as CSV: a header, one row per line item, and a `total` row.
pub fn to_csv(inv: &Invoice) -> String {
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    let mut out = format!("{CSV_HEADER}\n");
    for l in &inv.lines {
        let p = l.unit_prices;
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            inv.team_id,
            inv.month,
            field(&l.model),
            opt(l.price_version_id),
            l.requests,
            l.prompt_tokens,
            l.cached_input_tokens,
            l.cache_write_tokens,
            l.completion_tokens,
            opt(p.map(|p| p.input_per_mtok)),
            opt(p.and_then(|p| p.cached_input_per_mtok)),
            opt(p.and_then(|p| p.cache_write_per_mtok)),
            opt(p.map(|p| p.output_per_mtok)),
            l.amount_micros,
            decimal(l.amount_micros),
        );
    }
    let _ = writeln!(
        out,
        "{},{},total,,,,,,,,,,,{},{}",
        inv.team_id,
        inv.month,
        inv.total_micros,
        decimal(inv.total_micros)
    );
    out
}

/// Invoice totals of every team against the raw costed records of the month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciliation {
    pub month: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub teams: u64,
    pub invoice_total_micros: i64,
    pub usage_records: i64,
    pub records_cost_micros: i64,
    /// Invoice totals minus the records' costs: 0 when they reconcile.
    pub difference_micros: i64,
}

fn sum_i64(col: usage_records::Column) -> Expr {
    Func::cast_as(Func::coalesce([Expr::from(Func::sum(Expr::col(col))), Expr::val(0i64)]), Alias::new("BIGINT")).into()
}

/// Sums every team's draft invoice for the month and the raw records that started in it (a direct scan: this is
/// the check on the rollups, not a report).
pub async fn reconcile(store: &Store, month: Month) -> Result<Reconciliation, DomainError> {
    use usage_records::Column as C;
    let per_team = month_lines(&store.db, month, None).await?;
    let invoice_total_micros = per_team.values().flat_map(|lines| lines.values()).map(|l| l.amount_micros).sum();
    let period = month.period(store);
    let (usage_records, records_cost_micros) = usage_records::Entity::find()
        .filter(C::StartedAt.gte(period.start))
        .filter(C::StartedAt.lt(period.end))
        .select_only()
        .column_as(Expr::from(Func::count(Expr::col(C::Id))), "records")
        .column_as(sum_i64(C::CostMicros), "cost_micros")
        .into_tuple::<(i64, i64)>()
        .one(&store.db)
        .await?
        .unwrap_or_default();
    Ok(Reconciliation {
        month: month.to_string(),
        period_start: period.start,
        period_end: period.end,
        teams: per_team.len() as u64,
        invoice_total_micros,
        usage_records,
        records_cost_micros,
        difference_micros: invoice_total_micros - records_cost_micros,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_strictly_and_roll_over_the_year() {
        let dec = Month::parse("2026-12").unwrap();
        assert_eq!((dec.to_string(), dec.next_first().to_string()), ("2026-12".into(), "2027-01-01".into()));
        for bad in ["2026-13", "2026-1", "26-01", "2026/01", "x"] {
            assert!(Month::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(field("gpt-4o"), "gpt-4o");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("=cmd()"), "'=cmd()");
        assert_eq!(decimal(1_234_500), "1.234500");
        assert_eq!(decimal(-5), "-0.000005");
    }
}
