//! `invoice_lines`: the frozen lines of issued invoices by usage month: the month's own usage lines, and the
//! adjustment lines that carried late usage of an earlier issued month (`usage_month` is that earlier month).
//! What was billed for a team's month M is the sum of its rows with `usage_month = M`, whichever invoice holds them.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invoice_lines")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub invoice_id: i64,
    pub team_id: i64,
    pub usage_month: String,
    pub model: String,
    /// 0 for usage costed without a price version, as in the rollups.
    pub price_version_id: i64,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_write_tokens: i64,
    pub completion_tokens: i64,
    pub amount_micros: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
