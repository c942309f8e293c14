//! `budget_spend`: the money and tokens a budgeted team or key spent in one budget period, maintained by ingest.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "budget_spend")]
pub struct Model {
    /// `team` or `key`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub scope: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub scope_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub period_start: DateTimeUtc,
    #[sea_orm(primary_key, auto_increment = false)]
    pub period_end: DateTimeUtc,
    pub micros: i64,
    pub tokens: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
