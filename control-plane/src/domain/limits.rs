//! Limits of teams and keys (rates, concurrency, budgets), the spend counted against budgets, and budget alerts.
//!
//! Setting limits is a configuration change (audited, versioned, pushed in the next snapshot). Spend is not
//! configuration, but nodes need it to block an over-budget team: ingest adds newly stored usage to per-period
//! spend counters (`super::spend`) and bumps the snapshot version in its transaction, then rings the publisher's
//! spend doorbell, which rebuilds at most once per `spend_publish_floor` (250 ms by default), well within the 2 s
//! in which every node must block an over-budget team. Once a budget is past its soft threshold, its batches ring
//! the configuration doorbell instead and publish at once, so nodes near a cap never act on stale spend. Budget periods come from the one shared code path
//! (`switchyard_shared::period`), so both planes agree on when a period starts; nodes roll over on their own at
//! the boundary, without waiting for the control plane.

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait as _, Func};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, ConnectionTrait, EntityTrait as _, IntoActiveModel as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _, Set,
};
use serde::{Deserialize, Serialize};
use switchyard_shared::UsageRecord;
use switchyard_shared::limits::{Budget, Limits, Spend};
use switchyard_shared::period::Period;
use switchyard_shared::snapshot::{LimitEntry, LimitScope, UsageWatermark};
use uuid::Uuid;

use super::audit::{Actor, AuditEntry};
use super::change::Change;
use super::spend::{self, Increments, Spent};
use super::{DomainError, Store};
use crate::entities::{api_keys, budget_alerts, config_version, limits, teams, usage_records, usage_watermarks};

pub const ALERT_SOFT: &str = "soft_threshold";
pub const ALERT_EXHAUSTED: &str = "exhausted";

/// A team's or key's limits with where its budget stands now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsView {
    pub scope: LimitScope,
    pub id: i64,
    pub limits: Limits,
    /// Present when there is a budget.
    pub budget_status: Option<BudgetStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetStatus {
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub spent_micros: i64,
    pub spent_tokens: i64,
    /// The caps in force now (a temporary increase included while it lasts).
    pub cap_micros: Option<i64>,
    pub cap_tokens: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub id: i64,
    pub scope: LimitScope,
    pub scope_id: i64,
    pub team_id: i64,
    pub kind: String,
    pub period_start: DateTime<Utc>,
    pub threshold_pct: i32,
    pub spent_micros: i64,
    pub spent_tokens: i64,
    pub cap_micros: Option<i64>,
    pub cap_tokens: Option<i64>,
    pub created_at: DateTime<Utc>,
}

impl From<budget_alerts::Model> for Alert {
    fn from(m: budget_alerts::Model) -> Self {
        Self {
            id: m.id,
            scope: parse_scope(&m.scope).unwrap_or(LimitScope::Team),
            scope_id: m.scope_id,
            team_id: m.team_id,
            kind: m.kind,
            period_start: m.period_start,
            threshold_pct: m.threshold_pct,
            spent_micros: m.spent_micros,
            spent_tokens: m.spent_tokens,
            cap_micros: m.cap_micros,
            cap_tokens: m.cap_tokens,
            created_at: m.created_at,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AlertFilter {
    pub team_id: Option<i64>,
    pub limit: Option<u64>,
}

fn parse_scope(s: &str) -> Option<LimitScope> {
    match s {
        "team" => Some(LimitScope::Team),
        "key" => Some(LimitScope::Key),
        _ => None,
    }
}

fn decode(row: &limits::Model) -> Result<Limits, DomainError> {
    serde_json::from_str(&row.settings)
        .map_err(|e| DomainError::Internal(format!("limits row {} does not parse: {e}", row.id)))
}

/// Refuses limits no node could enforce sensibly.
pub fn validate(l: &Limits) -> Result<(), DomainError> {
    for (name, v) in [("rpm", l.rpm), ("tpm", l.tpm)] {
        if v == Some(0) {
            return Err(DomainError::invalid(name, format!("{name} must be at least 1 (omit it for no limit)")));
        }
    }
    if l.max_concurrent == Some(0) {
        return Err(DomainError::invalid("max_concurrent", "max_concurrent must be at least 1 (omit it for no limit)"));
    }
    if let Some(b) = &l.budget {
        validate_budget(b)?;
    }
    Ok(())
}

fn validate_budget(b: &Budget) -> Result<(), DomainError> {
    if b.max_micros.is_none() && b.max_tokens.is_none() {
        return Err(DomainError::invalid("budget", "a budget needs max_micros, max_tokens, or both"));
    }
    if b.max_micros.is_some_and(|m| m < 0) {
        return Err(DomainError::invalid("budget.max_micros", "max_micros must not be negative"));
    }
    b.zone().map_err(|e| DomainError::invalid("budget.timezone", e.to_string()))?;
    if b.soft_threshold_pct.is_some_and(|p| p == 0 || p > 100) {
        return Err(DomainError::invalid("budget.soft_threshold_pct", "soft_threshold_pct must be 1-100"));
    }
    if b.temporary_increase.as_ref().is_some_and(|t| t.micros < 0) {
        return Err(DomainError::invalid("budget.temporary_increase.micros", "an increase must not be negative"));
    }
    Ok(())
}

async fn team_of(conn: &impl ConnectionTrait, scope: LimitScope, id: i64) -> Result<i64, DomainError> {
    match scope {
        LimitScope::Team => {
            teams::Entity::find_by_id(id).one(conn).await?.ok_or(DomainError::NotFound("team"))?;
            Ok(id)
        }
        LimitScope::Key => {
            let key = api_keys::Entity::find_by_id(id).one(conn).await?.ok_or(DomainError::NotFound("key"))?;
            Ok(key.team_id)
        }
    }
}

async fn row(conn: &impl ConnectionTrait, scope: LimitScope, id: i64) -> Result<Option<limits::Model>, DomainError> {
    Ok(limits::Entity::find()
        .filter(limits::Column::Scope.eq(scope.as_str()))
        .filter(limits::Column::ScopeId.eq(id))
        .one(conn)
        .await?)
}

/// Replaces the limits of a team or key; empty limits remove them.
pub async fn set(
    store: &Store,
    actor: &Actor,
    scope: LimitScope,
    id: i64,
    new: Limits,
) -> Result<LimitsView, DomainError> {
    validate(&new)?;
    let change = Change::begin(store).await?;
    team_of(&*change, scope, id).await?;
    let settings = serde_json::to_string(&new).map_err(|e| DomainError::Internal(e.to_string()))?;
    let now = Utc::now();
    match row(&*change, scope, id).await? {
        Some(_) if new.is_empty() => {
            limits::Entity::delete_many()
                .filter(limits::Column::Scope.eq(scope.as_str()))
                .filter(limits::Column::ScopeId.eq(id))
                .exec(&*change)
                .await?;
        }
        Some(existing) => {
            let mut m = existing.into_active_model();
            m.settings = Set(settings);
            m.updated_at = Set(now);
            m.update(&*change).await?;
        }
        None if new.is_empty() => {}
        None => {
            limits::ActiveModel {
                scope: Set(scope.as_str().to_owned()),
                scope_id: Set(id),
                settings: Set(settings),
                updated_at: Set(now),
                ..Default::default()
            }
            .insert(&*change)
            .await?;
        }
    }
    if let Some(b) = &new.budget {
        // The counter of the current period starts from the records already stored.
        let period = b.period(now);
        let (micros, tokens) = spend(&*change, scope, id, period).await?;
        spend::seed(&*change, scope, id, period, Spent { micros, tokens }).await?;
    }
    let detail = serde_json::to_value(&new).unwrap_or_default();
    change.commit(store, actor, AuditEntry::new("limits.set", scope.as_str(), id, detail)).await?;
    get(store, scope, id).await
}

/// The limits of a team or key (empty if none are set) and where its budget stands.
pub async fn get(store: &Store, scope: LimitScope, id: i64) -> Result<LimitsView, DomainError> {
    team_of(&store.db, scope, id).await?;
    let limits = match row(&store.db, scope, id).await? {
        Some(r) => decode(&r)?,
        None => Limits::default(),
    };
    let now = Utc::now();
    let budget_status = match &limits.budget {
        Some(b) => {
            let period = b.period(now);
            let Spent { micros, tokens } = spend::of(&store.db, scope, id, period).await?;
            let caps = b.caps(now);
            Some(BudgetStatus {
                period_start: period.start,
                period_end: period.end,
                spent_micros: micros,
                spent_tokens: tokens,
                cap_micros: caps.micros,
                cap_tokens: caps.tokens,
            })
        }
        None => None,
    };
    Ok(LimitsView { scope, id, limits, budget_status })
}

fn sum_i64(col: usage_records::Column) -> Expr {
    Func::cast_as(Func::coalesce([Expr::from(Func::sum(Expr::col(col))), Expr::val(0i64)]), Alias::new("BIGINT")).into()
}

/// Money and tokens of the usage of a team or key that started within `period`, summed over the records: only
/// to seed a counter when a budget is set, never on the ingest path.
pub async fn spend(
    conn: &impl ConnectionTrait,
    scope: LimitScope,
    id: i64,
    period: Period,
) -> Result<(i64, i64), DomainError> {
    use usage_records::Column as C;
    let col = match scope {
        LimitScope::Team => C::TeamId,
        LimitScope::Key => C::KeyId,
    };
    let row = usage_records::Entity::find()
        .filter(col.eq(id))
        .filter(C::StartedAt.gte(period.start))
        .filter(C::StartedAt.lt(period.end))
        .select_only()
        .column_as(sum_i64(C::CostMicros), "micros")
        .column_as(sum_i64(C::PromptTokens).add(sum_i64(C::CompletionTokens)), "tokens")
        .into_tuple::<(i64, i64)>()
        .one(conn)
        .await?
        .unwrap_or_default();
    Ok(row)
}

/// Seeds, from the records, the counter of the current period of every budget that has none yet: budgets set
/// before the counters existed. Run once at start; later periods start at zero and ingest keeps them.
pub async fn seed_missing_counters(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<(), DomainError> {
    let rows = limits::Entity::find().all(db).await?;
    let counters = spend::current(db, now).await?;
    for r in rows {
        let Some(scope) = parse_scope(&r.scope) else { continue };
        let Some(budget) = decode(&r)?.budget else { continue };
        let period = budget.period(now);
        if counters.has(scope, r.scope_id, period) {
            continue;
        }
        let (micros, tokens) = spend(db, scope, r.scope_id, period).await?;
        spend::seed(db, scope, r.scope_id, period, Spent { micros, tokens }).await?;
    }
    Ok(())
}

/// The limits section of a snapshot: every team and key among `teams`/`keys` with limits, budgets with their
/// spend in the period containing `now`.
pub async fn snapshot_entries(
    conn: &impl ConnectionTrait,
    teams: &HashSet<i64>,
    keys: &HashSet<i64>,
    now: DateTime<Utc>,
) -> Result<Vec<LimitEntry>, DomainError> {
    let rows = limits::Entity::find().order_by_asc(limits::Column::Id).all(conn).await?;
    let counters = spend::current(conn, now).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let Some(scope) = parse_scope(&r.scope) else { continue };
        let present = match scope {
            LimitScope::Team => teams.contains(&r.scope_id),
            LimitScope::Key => keys.contains(&r.scope_id),
        };
        if !present {
            // A revoked key's limits stay stored but are not shipped.
            continue;
        }
        let limits = decode(&r)?;
        let spend = match &limits.budget {
            Some(b) => {
                let period = b.period(now);
                let Spent { micros, tokens } = counters.get(scope, r.scope_id, period);
                Some(Spend { period_start: period.start, micros, tokens: u64::try_from(tokens).unwrap_or(0) })
            }
            None => None,
        };
        out.push(LimitEntry { scope, id: r.scope_id, limits, spend });
    }
    Ok(out)
}

pub async fn watermarks(conn: &impl ConnectionTrait) -> Result<Vec<UsageWatermark>, DomainError> {
    let rows = usage_watermarks::Entity::find().order_by_asc(usage_watermarks::Column::NodeId).all(conn).await?;
    Ok(rows.into_iter().map(|w| UsageWatermark { node_id: w.node_id, last_record_id: w.last_record_id }).collect())
}

/// Runs inside the ingest transaction after the batch is stored: moves the node's watermark to `newest` (the
/// batch's newest record id), adds the newly stored records to the spend counters of the budgets they fall under,
/// and raises budget alerts. Says whether any budgeted spend moved, and whether a budget is past its soft
/// threshold (the caller rings the publisher after the commit: at once near a cap, coalesced otherwise).
pub async fn after_ingest(
    conn: &impl ConnectionTrait,
    node_id: &str,
    newest: Option<Uuid>,
    new: &[&UsageRecord],
    now: DateTime<Utc>,
) -> Result<SpendMoved, DomainError> {
    if let Some(newest) = newest {
        move_watermark(conn, node_id, newest, now).await?;
    }
    let spending =
        || new.iter().copied().filter(|r| r.cost_micros != 0 || r.prompt_tokens != 0 || r.completion_tokens != 0);
    let teams: BTreeSet<i64> = spending().map(|r| r.team_id).collect();
    let keys: BTreeSet<i64> = spending().map(|r| r.key_id).collect();
    if teams.is_empty() {
        return Ok(SpendMoved::No);
    }
    let rows = limits::Entity::find()
        .filter(
            sea_orm::Condition::any()
                .add(
                    sea_orm::Condition::all()
                        .add(limits::Column::Scope.eq("team"))
                        .add(limits::Column::ScopeId.is_in(teams.iter().copied())),
                )
                .add(
                    sea_orm::Condition::all()
                        .add(limits::Column::Scope.eq("key"))
                        .add(limits::Column::ScopeId.is_in(keys.iter().copied())),
                ),
        )
        .all(conn)
        .await?;
    let mut budgeted = Vec::new();
    let mut increments = Increments::default();
    for r in rows {
        let Some(scope) = parse_scope(&r.scope) else { continue };
        let Some(budget) = decode(&r)?.budget else { continue };
        let id = r.scope_id;
        let mine = spending().filter(|u| match scope {
            LimitScope::Team => u.team_id == id,
            LimitScope::Key => u.key_id == id,
        });
        increments.add(scope, id, &budget, mine);
        let team_id = match scope {
            LimitScope::Team => Some(id),
            LimitScope::Key => spending().find(|u| u.key_id == id).map(|u| u.team_id),
        };
        budgeted.push((scope, id, team_id.unwrap_or_default(), budget));
    }
    if increments.is_empty() {
        return Ok(SpendMoved::No);
    }
    spend::apply(conn, &increments).await?;
    let mut near_cap = false;
    for (scope, id, team_id, budget) in &budgeted {
        near_cap |= raise_alerts(conn, *scope, *id, *team_id, budget, now).await?;
    }
    // In the batch's transaction, so the version a node is told about always carries this spend; the publisher
    // coalesces the rebuilds.
    config_version::Entity::update_many()
        .col_expr(config_version::Column::Version, Expr::col(config_version::Column::Version).add(1))
        .filter(config_version::Column::Id.eq(config_version::ROW_ID))
        .exec(conn)
        .await?;
    Ok(if near_cap { SpendMoved::NearCap } else { SpendMoved::Yes })
}

/// What a usage batch did to budget spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendMoved {
    No,
    Yes,
    /// A budget it moved is at or past its soft threshold: nodes should hear without delay.
    NearCap,
}

async fn move_watermark(
    conn: &impl ConnectionTrait,
    node_id: &str,
    newest: Uuid,
    now: DateTime<Utc>,
) -> Result<(), DomainError> {
    let current = usage_watermarks::Entity::find_by_id(node_id.to_owned()).one(conn).await?;
    match current {
        Some(w) if w.last_record_id >= newest => {}
        Some(w) => {
            let mut m = w.into_active_model();
            m.last_record_id = Set(newest);
            m.updated_at = Set(now);
            m.update(conn).await?;
        }
        None => {
            usage_watermarks::ActiveModel {
                node_id: Set(node_id.to_owned()),
                last_record_id: Set(newest),
                updated_at: Set(now),
            }
            .insert(conn)
            .await?;
        }
    }
    Ok(())
}

/// Percent of a cap that `spent` reaches (0 without a cap).
fn pct(spent: i64, cap: Option<i64>) -> i64 {
    match cap {
        Some(c) if c > 0 => spent.saturating_mul(100) / c,
        Some(_) => 100,
        None => 0,
    }
}

/// Raises the alerts the budget's current spend calls for; says whether it is past the soft threshold.
async fn raise_alerts(
    conn: &impl ConnectionTrait,
    scope: LimitScope,
    id: i64,
    team_id: i64,
    budget: &Budget,
    now: DateTime<Utc>,
) -> Result<bool, DomainError> {
    let period = budget.period(now);
    let Spent { micros, tokens } = spend::of(conn, scope, id, period).await?;
    let caps = budget.caps(now);
    let cap_tokens = caps.tokens.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
    let reached = Ord::max(pct(micros, caps.micros), pct(tokens, cap_tokens));
    let threshold = budget.soft_threshold_pct();
    for (kind, at) in [(ALERT_SOFT, i64::from(threshold)), (ALERT_EXHAUSTED, 100)] {
        if reached < at {
            continue;
        }
        let alert = budget_alerts::ActiveModel {
            scope: Set(scope.as_str().to_owned()),
            scope_id: Set(id),
            team_id: Set(team_id),
            kind: Set(kind.to_owned()),
            period_start: Set(period.start),
            threshold_pct: Set(i32::from(threshold)),
            spent_micros: Set(micros),
            spent_tokens: Set(tokens),
            cap_micros: Set(caps.micros),
            cap_tokens: Set(cap_tokens),
            created_at: Set(now),
            ..Default::default()
        };
        use budget_alerts::Column as A;
        let inserted = budget_alerts::Entity::insert(alert)
            .on_conflict_do_nothing_on([A::Scope, A::ScopeId, A::PeriodStart, A::Kind])
            .exec_without_returning(conn)
            .await?;
        if matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
            tracing::warn!(scope = scope.as_str(), id, team_id, kind, spent_micros = micros, "budget alert raised");
        }
    }
    Ok(reached >= i64::from(threshold))
}

pub const DEFAULT_ALERT_LIMIT: u64 = 100;

/// Budget alerts, newest first.
pub async fn alerts(store: &Store, filter: AlertFilter) -> Result<Vec<Alert>, DomainError> {
    let limit = filter.limit.unwrap_or(DEFAULT_ALERT_LIMIT);
    if !(1..=1000).contains(&limit) {
        return Err(DomainError::invalid("limit", "limit must be between 1 and 1000"));
    }
    let mut q = budget_alerts::Entity::find();
    if let Some(t) = filter.team_id {
        q = q.filter(budget_alerts::Column::TeamId.eq(t));
    }
    let rows = q.order_by_desc(budget_alerts::Column::Id).limit(limit).all(&store.db).await?;
    Ok(rows.into_iter().map(Alert::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_validated() {
        assert!(validate(&Limits { rpm: Some(0), ..Default::default() }).is_err());
        assert!(validate(&Limits { max_concurrent: Some(0), ..Default::default() }).is_err());
        let b = |f: fn(&mut Budget)| {
            let mut b = Budget { max_micros: Some(1), ..Default::default() };
            f(&mut b);
            Limits { budget: Some(b), ..Default::default() }
        };
        assert!(validate(&b(|_| {})).is_ok());
        assert!(validate(&b(|b| b.max_micros = None)).is_err());
        assert!(validate(&b(|b| b.timezone = "Nowhere/Else".into())).is_err());
        assert!(validate(&b(|b| b.soft_threshold_pct = Some(101))).is_err());
        assert!(validate(&b(|b| b.timezone = "Asia/Kolkata".into())).is_ok());
    }

    #[test]
    fn percentages_of_caps() {
        assert_eq!(pct(80, Some(100)), 80);
        assert_eq!(pct(5, None), 0);
        assert_eq!(pct(0, Some(0)), 100);
    }
}
