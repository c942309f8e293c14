//! `limits`: the limits of one team or key; `settings` is the JSON of `switchyard_shared::limits::Limits`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "limits")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// `team` or `key` (`switchyard_shared::snapshot::LimitScope`).
    pub scope: String,
    pub scope_id: i64,
    pub settings: String,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
