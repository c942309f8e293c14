//! `invites`: one-time links that let a new user set a password and join (a team); stored as SHA-256.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invites")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Lowercase hex SHA-256 of the invite token.
    #[sea_orm(unique)]
    pub token_hash: String,
    pub email: String,
    pub platform_role: String,
    pub team_id: Option<i64>,
    pub team_role: Option<String>,
    pub created_by: i64,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub accepted_at: Option<DateTimeUtc>,
    pub accepted_by: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
