//! Budget spend counters: per budgeted team or key and budget period, the money and tokens its usage cost.
//!
//! Ingest adds the records it newly stored to the counters of the budgets they fall under, in the same
//! transaction, so nothing on the ingest path sums raw records. A counter is keyed by the period's start and end,
//! so changing a budget's period kind or time zone starts other counters; setting a budget seeds the counter of
//! the current period once from the records (`seed`), the only place that still sums them.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait as _, OnConflict, Query};
use sea_orm::{ColumnTrait as _, ConnectionTrait, EntityTrait as _, QueryFilter as _};
use switchyard_shared::UsageRecord;
use switchyard_shared::limits::Budget;
use switchyard_shared::period::Period;
use switchyard_shared::snapshot::LimitScope;

use super::DomainError;
use crate::entities::budget_spend;

/// Money and tokens spent in one period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spent {
    pub micros: i64,
    pub tokens: i64,
}

/// (scope as stored, id, period start, period end)
type CounterKey = (&'static str, i64, DateTime<Utc>, DateTime<Utc>);

/// Spend per counter, summed in memory before it is written.
#[derive(Debug, Default)]
pub struct Increments(BTreeMap<CounterKey, Spent>);

fn tokens_of(r: &UsageRecord) -> i64 {
    i64::try_from(r.prompt_tokens.saturating_add(r.completion_tokens)).unwrap_or(i64::MAX)
}

impl Increments {
    /// Adds the records of one budgeted team or key, each to the period of the budget it started in.
    pub fn add<'a>(
        &mut self,
        scope: LimitScope,
        id: i64,
        budget: &Budget,
        records: impl Iterator<Item = &'a UsageRecord>,
    ) {
        for r in records {
            let p = budget.period(r.started_at);
            let e = self.0.entry((scope.as_str(), id, p.start, p.end)).or_default();
            e.micros = e.micros.saturating_add(r.cost_micros);
            e.tokens = e.tokens.saturating_add(tokens_of(r));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.values().all(|s| s.micros == 0 && s.tokens == 0)
    }
}

/// Adds the increments to the stored counters (creating missing ones), inside the caller's transaction.
pub async fn apply(conn: &impl ConnectionTrait, inc: &Increments) -> Result<(), DomainError> {
    set_or_add(conn, inc.0.iter().map(|(k, v)| (*k, *v)), true).await
}

async fn set_or_add(
    conn: &impl ConnectionTrait,
    rows: impl Iterator<Item = (CounterKey, Spent)>,
    add: bool,
) -> Result<(), DomainError> {
    use budget_spend::Column as C;
    let mut q = Query::insert();
    q.into_table(budget_spend::Entity).columns([
        C::Scope,
        C::ScopeId,
        C::PeriodStart,
        C::PeriodEnd,
        C::Micros,
        C::Tokens,
    ]);
    let mut any = false;
    for ((scope, id, start, end), s) in rows {
        any = true;
        q.values([scope.into(), id.into(), start.into(), end.into(), s.micros.into(), s.tokens.into()])
            .map_err(|e| DomainError::Internal(format!("spend upsert: {e}")))?;
    }
    if !any {
        return Ok(());
    }
    let update = |c: C| {
        let incoming = Expr::col((Alias::new("excluded"), c));
        let value = if add { Expr::col((budget_spend::Entity, c)).add(incoming) } else { incoming };
        (c, value)
    };
    q.on_conflict(
        OnConflict::columns([C::Scope, C::ScopeId, C::PeriodStart, C::PeriodEnd])
            .values([update(C::Micros), update(C::Tokens)])
            .to_owned(),
    );
    conn.execute(&q).await?;
    Ok(())
}

/// Replaces the counter of one period with `spent` (a budget was set: its counter starts from the records).
pub async fn seed(
    conn: &impl ConnectionTrait,
    scope: LimitScope,
    id: i64,
    period: Period,
    spent: Spent,
) -> Result<(), DomainError> {
    set_or_add(conn, std::iter::once(((scope.as_str(), id, period.start, period.end), spent)), false).await
}

/// The counter of one period (zero when nothing was spent in it).
pub async fn of(conn: &impl ConnectionTrait, scope: LimitScope, id: i64, period: Period) -> Result<Spent, DomainError> {
    use budget_spend::Column as C;
    let row = budget_spend::Entity::find()
        .filter(C::Scope.eq(scope.as_str()))
        .filter(C::ScopeId.eq(id))
        .filter(C::PeriodStart.eq(period.start))
        .filter(C::PeriodEnd.eq(period.end))
        .one(conn)
        .await?;
    Ok(row.map(|r| Spent { micros: r.micros, tokens: r.tokens }).unwrap_or_default())
}

/// Every counter of a period that has not ended by `now`, for building a snapshot in one query.
pub async fn current(conn: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<Counters, DomainError> {
    let rows = budget_spend::Entity::find().filter(budget_spend::Column::PeriodEnd.gt(now)).all(conn).await?;
    let mut map = HashMap::with_capacity(rows.len());
    for r in rows {
        let scope = match r.scope.as_str() {
            "team" => LimitScope::Team,
            "key" => LimitScope::Key,
            _ => continue,
        };
        map.insert(
            (scope.as_str(), r.scope_id, r.period_start, r.period_end),
            Spent { micros: r.micros, tokens: r.tokens },
        );
    }
    Ok(Counters(map))
}

/// Counters loaded by [`current`].
#[derive(Debug, Default)]
pub struct Counters(HashMap<CounterKey, Spent>);

impl Counters {
    pub fn has(&self, scope: LimitScope, id: i64, period: Period) -> bool {
        self.0.contains_key(&(scope.as_str(), id, period.start, period.end))
    }

    pub fn get(&self, scope: LimitScope, id: i64, period: Period) -> Spent {
        self.0.get(&(scope.as_str(), id, period.start, period.end)).copied().unwrap_or_default()
    }
}
