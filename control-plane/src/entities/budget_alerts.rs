//! `budget_alerts`: one row per budget, period and kind (`soft_threshold`, `exhausted`) when spend crosses it.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "budget_alerts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub scope: String,
    pub scope_id: i64,
    /// The team the budget belongs to (the key's team for a key budget), for filtering.
    pub team_id: i64,
    pub kind: String,
    pub period_start: DateTimeUtc,
    pub threshold_pct: i32,
    pub spent_micros: i64,
    pub spent_tokens: i64,
    pub cap_micros: Option<i64>,
    pub cap_tokens: Option<i64>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
