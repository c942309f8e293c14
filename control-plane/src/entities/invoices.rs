//! `invoices`: issued (frozen) invoices. A row is written once, when the invoice is issued, and never updated;
//! `document` is the invoice exactly as it was issued (JSON), returned as stored forever.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invoices")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub team_id: i64,
    /// The billed month, `yyyy-mm` of the reporting zone.
    pub month: String,
    /// The deployment-wide sequence number (1, 2, …, gap-free).
    pub seq: i64,
    /// `INV-000001`.
    pub number: String,
    pub currency: String,
    pub subtotal_micros: i64,
    pub markup_bp: i32,
    pub markup_micros: i64,
    pub total_micros: i64,
    pub issued_at: DateTimeUtc,
    pub issued_by: String,
    pub document: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
