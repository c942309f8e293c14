//! The raw usage export: every usage record of a period (a calendar month of the reporting time zone, or any
//! `[from, to)`), one CSV row each, optionally for one team. Built for months of millions of records in constant
//! memory: [`Export`] reads the records in pages by keyset — `(started_at, id)` after the last row sent, over the
//! `started_at` index (or `(team_id, started_at)` for one team) — and hands out one page of CSV at a time, so the
//! web layer streams it and only one page is ever held.
//!
//! On Postgres all pages read one snapshot (a read-only REPEATABLE READ transaction), so a record ingested during
//! the export is either in the file or not, never half-way through a page; the file adds up to what the
//! reconciliation of the same instant says. On SQLite the pages share one read transaction too (WAL readers see the
//! database as of their first read).
//!
//! Never in the file: prompts or completions (the records do not hold them) and secrets (a key appears as its id and
//! its visible prefix only).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use sea_orm::{
    AccessMode, ColumnTrait as _, Condition, ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction,
    EntityTrait, IsolationLevel, QueryFilter as _, QueryOrder as _, QuerySelect as _, TransactionTrait as _,
};
use switchyard_shared::period::{Period, Zone};
use uuid::Uuid;

use super::csv::push_field;
use super::invoices::{Month, decimal};
use super::{DomainError, partitions};
use crate::entities::{api_keys, teams, usage_records};

/// Rows per page: a page of CSV is a few megabytes at most.
pub const PAGE_ROWS: u64 = 10_000;

pub const CSV_HEADER: &str = "id,request_id,started_at,received_at,team_id,team_name,key_id,key_prefix,model,\
provider_id,upstream_model,node_id,status,error_code,stream,duration_us,ttft_us,usage_source,prompt_tokens,\
cached_input_tokens,cache_write_tokens,completion_tokens,reasoning_tokens,price_version_id,cost_micros,cost";

/// What to export: records that started in `[start, end)`, of one team or all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportRange {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub team_id: Option<i64>,
}

impl ExportRange {
    /// A calendar month (`yyyy-mm`) of the reporting zone: exactly the period the month's invoices and
    /// reconciliation cover.
    pub fn month(zone: Zone, month: &str, team_id: Option<i64>) -> Result<Self, DomainError> {
        let Period { start, end } = Month::parse(month)?.period_in(zone);
        Ok(Self { start, end, team_id })
    }

    /// Refuses a range that reaches before `usage_retention.records_from`: those raw records were dropped by the
    /// retention setting, and an empty or partial file would look like no usage.
    /// `param` names the query parameter the error blames (`month`, `from`).
    pub async fn ensure_retained(
        &self,
        conn: &impl ConnectionTrait,
        zone: Zone,
        param: &str,
    ) -> Result<(), DomainError> {
        match partitions::records_from(conn).await? {
            Some(from) if self.start < zone.midnight(from) => {
                let kept = from.format("%Y-%m");
                Err(DomainError::invalid(
                    param,
                    format!(
                        "raw usage before {kept} was removed by the retention setting \
                         (SWITCHYARD_USAGE_RETENTION_MONTHS); export {kept} or later, or use the invoices and usage \
                         reports, which keep the aggregates"
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Any `[from, to)`.
    pub fn between(from: DateTime<Utc>, to: DateTime<Utc>, team_id: Option<i64>) -> Result<Self, DomainError> {
        if from >= to {
            return Err(DomainError::invalid("to", "`to` must be after `from`"));
        }
        Ok(Self { start: from, end: to, team_id })
    }
}

/// An export in progress: call [`Export::next_chunk`] until it answers `None`.
pub struct Export {
    txn: DatabaseTransaction,
    range: ExportRange,
    page_rows: u64,
    /// The last row sent: the next page starts after it.
    after: Option<(DateTime<Utc>, Uuid)>,
    header_sent: bool,
    done: bool,
    rows: u64,
    /// Key prefixes and team names seen so far (bounded by the number of keys and teams, not of records).
    key_prefixes: HashMap<i64, String>,
    team_names: HashMap<i64, String>,
}

impl Export {
    /// Opens the read transaction. `page_rows` is [`PAGE_ROWS`] but for tests.
    pub async fn begin(db: &DatabaseConnection, range: ExportRange, page_rows: u64) -> Result<Self, DomainError> {
        let txn = match db.get_database_backend() {
            DatabaseBackend::Postgres => {
                db.begin_with_config(Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly)).await?
            }
            _ => db.begin().await?,
        };
        Ok(Self {
            txn,
            range,
            page_rows: page_rows.max(1),
            after: None,
            header_sent: false,
            done: false,
            rows: 0,
            key_prefixes: HashMap::new(),
            team_names: HashMap::new(),
        })
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The next piece of the file: the header with the first page, then a page at a time; `None` at the end. After
    /// an error the export is over.
    pub async fn next_chunk(&mut self) -> Result<Option<String>, DomainError> {
        if self.done {
            return Ok(None);
        }
        let result = self.page().await;
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result
    }

    async fn page(&mut self) -> Result<Option<String>, DomainError> {
        use usage_records::Column as C;
        let mut cond = Condition::all()
            .add(C::StartedAt.gte(self.range.start))
            .add(C::StartedAt.lt(self.range.end))
            .add_option(self.range.team_id.map(|t| C::TeamId.eq(t)));
        if let Some((t, id)) = self.after {
            // `started_at >= t` on its own too, so the index range starts at the cursor.
            cond = cond.add(C::StartedAt.gte(t)).add(Condition::any().add(C::StartedAt.gt(t)).add(C::Id.gt(id)));
        }
        let records = usage_records::Entity::find()
            .filter(cond)
            .order_by_asc(C::StartedAt)
            .order_by_asc(C::Id)
            .limit(self.page_rows)
            .all(&self.txn)
            .await?;
        let first = !self.header_sent;
        self.header_sent = true;
        if records.is_empty() && !first {
            return Ok(None);
        }
        self.fill_names(&records).await?;
        let mut out = String::with_capacity(records.len() * 320 + if first { CSV_HEADER.len() + 1 } else { 0 });
        if first {
            out.push_str(CSV_HEADER);
            out.push('\n');
        }
        for r in &records {
            self.write_row(&mut out, r);
        }
        self.rows += records.len() as u64;
        match records.last() {
            Some(last) if records.len() as u64 == self.page_rows => self.after = Some((last.started_at, last.id)),
            // A short page is the last one: no need to ask again.
            _ => self.done = true,
        }
        Ok(Some(out))
    }

    /// Looks up the key prefixes and team names of this page that earlier pages did not.
    async fn fill_names(&mut self, records: &[usage_records::Model]) -> Result<(), DomainError> {
        let (id, prefix) = (api_keys::Column::Id, api_keys::Column::Prefix);
        fill::<api_keys::Entity>(&self.txn, records.iter().map(|r| r.key_id), &mut self.key_prefixes, id, prefix)
            .await?;
        let (id, name) = (teams::Column::Id, teams::Column::Name);
        fill::<teams::Entity>(&self.txn, records.iter().map(|r| r.team_id), &mut self.team_names, id, name).await
    }

    fn write_row(&self, out: &mut String, r: &usage_records::Model) {
        let text = |out: &mut String, s: &str| {
            push_field(out, s);
            out.push(',');
        };
        let num = |out: &mut String, v: Option<i64>| {
            if let Some(v) = v {
                let _ = write!(out, "{v}");
            }
            out.push(',');
        };
        let _ = write!(out, "{},", r.id);
        text(out, &r.request_id);
        timestamp(out, r.started_at);
        timestamp(out, r.received_at);
        num(out, Some(r.team_id));
        text(out, self.team_names.get(&r.team_id).map_or("", String::as_str));
        num(out, Some(r.key_id));
        text(out, self.key_prefixes.get(&r.key_id).map_or("", String::as_str));
        text(out, &r.model);
        num(out, r.provider_id);
        text(out, r.upstream_model.as_deref().unwrap_or(""));
        text(out, &r.node_id);
        num(out, Some(i64::from(r.status)));
        text(out, r.error_code.as_deref().unwrap_or(""));
        text(out, if r.stream { "true" } else { "false" });
        num(out, Some(r.duration_us));
        num(out, r.ttft_us);
        text(out, &r.usage_source);
        for v in [r.prompt_tokens, r.cached_input_tokens, r.cache_write_tokens, r.completion_tokens] {
            num(out, Some(v));
        }
        num(out, Some(r.reasoning_tokens));
        num(out, r.price_version_id);
        num(out, Some(r.cost_micros));
        out.push_str(&decimal(r.cost_micros));
        out.push('\n');
    }
}

/// Adds to `names` the `name` column of the rows whose `id` is one of `ids` not in it yet. An id with no row (a
/// deleted key) gets an empty name rather than being asked for on every page.
async fn fill<E: EntityTrait>(
    txn: &DatabaseTransaction,
    ids: impl Iterator<Item = i64>,
    names: &mut HashMap<i64, String>,
    id: E::Column,
    name: E::Column,
) -> Result<(), DomainError> {
    let missing: HashSet<i64> = ids.filter(|i| !names.contains_key(i)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let found: Vec<(i64, String)> = E::find()
        .filter(id.is_in(missing.iter().copied()))
        .select_only()
        .column(id)
        .column(name)
        .into_tuple()
        .all(txn)
        .await?;
    names.extend(found);
    for i in missing {
        names.entry(i).or_default();
    }
    Ok(())
}

/// RFC 3339 in UTC with microseconds (`2026-10-01T00:00:00.000000Z`), written in place: two per row.
fn timestamp(out: &mut String, t: DateTime<Utc>) {
    let micros = (t.nanosecond() / 1_000).min(999_999);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{micros:06}Z,",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_is_the_invoices_period_of_the_zone() {
        let utc = ExportRange::month(Zone::parse("UTC").unwrap(), "2026-12", Some(3)).unwrap();
        assert_eq!(utc.start.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(utc.end.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert_eq!(utc.team_id, Some(3));
        let berlin = ExportRange::month(Zone::parse("Europe/Berlin").unwrap(), "2026-07", None).unwrap();
        assert_eq!(berlin.start.to_rfc3339(), "2026-06-30T22:00:00+00:00");
        assert_eq!(berlin.end.to_rfc3339(), "2026-07-31T22:00:00+00:00");
        assert!(ExportRange::month(Zone::parse("UTC").unwrap(), "2026-13", None).is_err());
        assert!(ExportRange::between(utc.end, utc.start, None).is_err());
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        use chrono::TimeZone as _;
        let mut out = String::new();
        let t = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap() + chrono::Duration::microseconds(6);
        timestamp(&mut out, t);
        assert_eq!(out, "2026-01-02T03:04:05.000006Z,");
        assert_eq!(&out[..out.len() - 1], t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    }
}
