//! Aggregates the console charts and tables read: requests, tokens, spend and errors per UTC day, and usage by
//! model, over a set of teams. Grouping happens in the database (one query per chart, on the `started_at`
//! indexes); a rollup table can take over behind these same functions when the record count demands it.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use sea_orm::{ConnectionTrait as _, DatabaseBackend, Statement, Value};

use super::{DomainError, Store};

/// Which teams an aggregate covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Teams(Vec<i64>),
}

impl Scope {
    pub fn from_usage_scope(scope: Option<Vec<i64>>) -> Self {
        scope.map_or(Self::All, Self::Teams)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: i64,
    pub errors: i64,
    pub tokens: i64,
    pub cost_micros: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    pub day: NaiveDate,
    pub totals: Totals,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelUsage {
    pub model: String,
    pub totals: Totals,
}

/// `$1`-style placeholders on Postgres, `?` on SQLite.
struct Sql {
    backend: DatabaseBackend,
    values: Vec<Value>,
}

impl Sql {
    fn bind(&mut self, v: impl Into<Value>) -> String {
        self.values.push(v.into());
        match self.backend {
            DatabaseBackend::Postgres => format!("${}", self.values.len()),
            _ => "?".to_owned(),
        }
    }

    /// `WHERE` clause for the scope and period; `None` when the scope is an empty set of teams.
    fn filter(&mut self, scope: &Scope, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<String> {
        let mut clause = format!("started_at >= {} AND started_at < {}", self.bind(from), self.bind(to));
        if let Scope::Teams(ids) = scope {
            if ids.is_empty() {
                return None;
            }
            let list: Vec<String> = ids.iter().map(|id| self.bind(*id)).collect();
            clause.push_str(&format!(" AND team_id IN ({})", list.join(", ")));
        }
        Some(clause)
    }
}

const SUMS: &str = "COUNT(*) AS requests, \
    CAST(COALESCE(SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), 0) AS BIGINT) AS errors, \
    CAST(COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS BIGINT) AS tokens, \
    CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) AS cost_micros";

fn totals(row: &sea_orm::QueryResult) -> Result<Totals, DomainError> {
    Ok(Totals {
        requests: row.try_get("", "requests")?,
        errors: row.try_get("", "errors")?,
        tokens: row.try_get("", "tokens")?,
        cost_micros: row.try_get("", "cost_micros")?,
    })
}

/// One entry per UTC day from `first` for `days` days, zeros included.
pub async fn daily(store: &Store, scope: &Scope, first: NaiveDate, days: u32) -> Result<Vec<Day>, DomainError> {
    let backend = store.db.get_database_backend();
    let from = first.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let to = from + Duration::days(i64::from(days));
    let mut sql = Sql { backend, values: Vec::new() };
    let mut out: Vec<Day> =
        (0..days).map(|i| Day { day: first + Duration::days(i64::from(i)), totals: Totals::default() }).collect();
    let Some(filter) = sql.filter(scope, from, to) else { return Ok(out) };
    let bucket = match backend {
        DatabaseBackend::Postgres => "to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        // sqlx stores timestamps as RFC 3339 text in UTC.
        _ => "substr(started_at, 1, 10)",
    };
    let text =
        format!("SELECT {bucket} AS day, {SUMS} FROM usage_records WHERE {filter} GROUP BY {bucket} ORDER BY day");
    let rows = store.db.query_all_raw(Statement::from_sql_and_values(backend, text, sql.values)).await?;
    for row in rows {
        let day: String = row.try_get("", "day")?;
        let Ok(day) = NaiveDate::parse_from_str(&day, "%Y-%m-%d") else { continue };
        if let Some(slot) = out.iter_mut().find(|d| d.day == day) {
            slot.totals = totals(&row)?;
        }
    }
    Ok(out)
}

/// Usage by model over the period, biggest spend first.
pub async fn by_model(
    store: &Store,
    scope: &Scope,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<ModelUsage>, DomainError> {
    let backend = store.db.get_database_backend();
    let mut sql = Sql { backend, values: Vec::new() };
    let Some(filter) = sql.filter(scope, from, to) else { return Ok(Vec::new()) };
    let text = format!(
        "SELECT model, {SUMS} FROM usage_records WHERE {filter} GROUP BY model ORDER BY cost_micros DESC, model LIMIT 50"
    );
    let rows = store.db.query_all_raw(Statement::from_sql_and_values(backend, text, sql.values)).await?;
    rows.iter().map(|row| Ok(ModelUsage { model: row.try_get("", "model")?, totals: totals(row)? })).collect()
}
