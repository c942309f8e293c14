//! `invoice_counter`: one row holding the last invoice sequence number allocated. Issuing increments it inside
//! its own transaction (the row lock serialises concurrent issuers, a rollback gives the number back), so numbers
//! are gap-free across control-plane replicas.

use sea_orm::entity::prelude::*;

/// The id of the only row.
pub const ROW_ID: i32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invoice_counter")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    pub last_seq: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
