//! `price_versions`: a model's prices from `effective_from` on (micro-units per million tokens).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "price_versions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The public model name, as usage records carry it.
    pub model: String,
    pub effective_from: DateTimeUtc,
    pub input_per_mtok: i64,
    pub output_per_mtok: i64,
    pub cached_input_per_mtok: Option<i64>,
    pub cache_write_per_mtok: Option<i64>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
