//! `usage_records`: one row per request a node answered; the id is minted by the node, which makes ingest
//! idempotent.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_records")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub request_id: String,
    pub node_id: String,
    pub team_id: i64,
    pub key_id: i64,
    pub model: String,
    pub provider_id: Option<i64>,
    pub upstream_model: Option<String>,
    pub started_at: DateTimeUtc,
    pub duration_us: i64,
    pub ttft_us: Option<i64>,
    pub status: i32,
    pub error_code: Option<String>,
    pub stream: bool,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    /// `upstream`, `estimated` or `none` (`switchyard_shared::usage::UsageSource`).
    pub usage_source: String,
    pub cost_micros: i64,
    /// The price version the control plane costed the record with; `None` when the model had none in force.
    pub price_version_id: Option<i64>,
    pub received_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
