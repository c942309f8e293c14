//! `nodes`: data-plane nodes as seen through their snapshot polls.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nodes")]
pub struct Model {
    /// The node id the node reports.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub applied_version: i64,
    pub last_seen_at: DateTimeUtc,
    pub first_seen_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
