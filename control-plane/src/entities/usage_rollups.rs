//! `usage_rollups`: usage summed per (team, key, model, price version, reporting day), maintained by ingest.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_rollups")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub team_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub key_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub model: String,
    /// 0 for records costed without a price version.
    #[sea_orm(primary_key, auto_increment = false)]
    pub price_version_id: i64,
    /// A calendar day in the deployment's reporting time zone.
    #[sea_orm(primary_key, auto_increment = false)]
    pub day: Date,
    /// Spreads concurrent batches over rows (from the reporting node); readers sum over shards.
    #[sea_orm(primary_key, auto_increment = false)]
    pub shard: i32,
    pub requests: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_write_tokens: i64,
    pub completion_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_micros: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
