//! Aggregates the console charts and tables read: requests, tokens, spend and errors per reporting day, and usage
//! by model, over a set of teams. They read the usage rollups (one row per team, key, model, price version and
//! day in `SWITCHYARD_REPORTING_TIMEZONE`, maintained by ingest), never the raw records, so a page costs the same
//! at a million records as at ten: the work follows keys × models × days.

use chrono::{Duration, NaiveDate};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, Value};

use super::DomainError;

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
    /// Prompt plus completion tokens.
    pub tokens: i64,
    pub cost_micros: i64,
}

impl Totals {
    fn add(&mut self, o: Totals) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.tokens += o.tokens;
        self.cost_micros += o.cost_micros;
    }
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

    /// `WHERE` clause for the scope and the days `[first, end)`; `None` when the scope is an empty set of teams.
    fn filter(&mut self, scope: &Scope, first: NaiveDate, end: NaiveDate) -> Option<String> {
        let mut clause = format!("day >= {} AND day < {}", self.bind(first), self.bind(end));
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

const SUMS: &str = "CAST(COALESCE(SUM(requests), 0) AS BIGINT) AS requests, \
    CAST(COALESCE(SUM(errors), 0) AS BIGINT) AS errors, \
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

/// One entry per reporting day from `first` for `days` days, zeros included.
pub async fn daily(
    conn: &impl ConnectionTrait,
    scope: &Scope,
    first: NaiveDate,
    days: u32,
) -> Result<Vec<Day>, DomainError> {
    let backend = conn.get_database_backend();
    let mut sql = Sql { backend, values: Vec::new() };
    let mut out: Vec<Day> =
        (0..days).map(|i| Day { day: first + Duration::days(i64::from(i)), totals: Totals::default() }).collect();
    let Some(filter) = sql.filter(scope, first, first + Duration::days(i64::from(days))) else { return Ok(out) };
    let text = format!("SELECT day, {SUMS} FROM usage_rollups WHERE {filter} GROUP BY day");
    let rows = conn.query_all_raw(Statement::from_sql_and_values(backend, text, sql.values)).await?;
    for row in rows {
        let day: NaiveDate = row.try_get("", "day")?;
        let Ok(i) = usize::try_from((day - first).num_days()) else { continue };
        if let Some(slot) = out.get_mut(i) {
            slot.totals = totals(&row)?;
        }
    }
    Ok(out)
}

/// Usage by model over the reporting days `[first, first + days)`, biggest spend first (at most 50 models).
pub async fn by_model(
    conn: &impl ConnectionTrait,
    scope: &Scope,
    first: NaiveDate,
    days: u32,
) -> Result<Vec<ModelUsage>, DomainError> {
    let backend = conn.get_database_backend();
    let mut sql = Sql { backend, values: Vec::new() };
    let Some(filter) = sql.filter(scope, first, first + Duration::days(i64::from(days))) else {
        return Ok(Vec::new());
    };
    let text = format!(
        "SELECT model, {SUMS} FROM usage_rollups WHERE {filter} GROUP BY model ORDER BY cost_micros DESC, model LIMIT 50"
    );
    let rows = conn.query_all_raw(Statement::from_sql_and_values(backend, text, sql.values)).await?;
    rows.iter().map(|row| Ok(ModelUsage { model: row.try_get("", "model")?, totals: totals(row)? })).collect()
}

/// [`daily`] and [`by_model`] together from one pass over the rollups (grouped by day and model, folded here):
/// what the overview and team pages show.
pub async fn summary(
    conn: &impl ConnectionTrait,
    scope: &Scope,
    first: NaiveDate,
    days: u32,
) -> Result<(Vec<Day>, Vec<ModelUsage>), DomainError> {
    let backend = conn.get_database_backend();
    let mut sql = Sql { backend, values: Vec::new() };
    let mut out: Vec<Day> =
        (0..days).map(|i| Day { day: first + Duration::days(i64::from(i)), totals: Totals::default() }).collect();
    let Some(filter) = sql.filter(scope, first, first + Duration::days(i64::from(days))) else {
        return Ok((out, Vec::new()));
    };
    let text = format!("SELECT day, model, {SUMS} FROM usage_rollups WHERE {filter} GROUP BY day, model");
    let rows = conn.query_all_raw(Statement::from_sql_and_values(backend, text, sql.values)).await?;
    let mut models: std::collections::BTreeMap<String, Totals> = std::collections::BTreeMap::new();
    for row in rows {
        let day: NaiveDate = row.try_get("", "day")?;
        let model: String = row.try_get("", "model")?;
        let t = totals(&row)?;
        models.entry(model).or_default().add(t);
        let Ok(i) = usize::try_from((day - first).num_days()) else { continue };
        if let Some(slot) = out.get_mut(i) {
            slot.totals.add(t);
        }
    }
    let mut by_model: Vec<ModelUsage> =
        models.into_iter().map(|(model, totals)| ModelUsage { model, totals }).collect();
    // Stable: models with the same spend stay in name order.
    by_model.sort_by_key(|m| std::cmp::Reverse(m.totals.cost_micros));
    by_model.truncate(50);
    Ok((out, by_model))
}
