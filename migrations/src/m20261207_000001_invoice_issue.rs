//! Issued invoices: a team's discount or markup (basis points), the issued (frozen) invoice documents with their
//! gap-free sequential numbers, their lines by usage month (so late usage is the difference between the rollups
//! and what was already frozen), and the one counter row numbers are allocated from.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(Teams::Table).add_column(integer(Teams::MarkupBp).default(0)).to_owned())
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Invoices::Table)
                    .col(big_pk_auto(Invoices::Id))
                    .col(big_integer(Invoices::TeamId))
                    .col(string(Invoices::Month))
                    .col(big_integer(Invoices::Seq))
                    .col(string(Invoices::Number))
                    .col(string(Invoices::Currency))
                    .col(big_integer(Invoices::SubtotalMicros))
                    .col(integer(Invoices::MarkupBp))
                    .col(big_integer(Invoices::MarkupMicros))
                    .col(big_integer(Invoices::TotalMicros))
                    .col(timestamp_with_time_zone(Invoices::IssuedAt))
                    .col(string(Invoices::IssuedBy))
                    .col(text(Invoices::Document))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_invoices_team")
                            .from(Invoices::Table, Invoices::TeamId)
                            .to(Teams::Table, Teams::Id),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            ("idx_invoices_team_month", vec![Invoices::TeamId, Invoices::Month]),
            ("idx_invoices_seq", vec![Invoices::Seq]),
            ("idx_invoices_number", vec![Invoices::Number]),
        ] {
            let mut index = Index::create();
            index.name(name).table(Invoices::Table).unique();
            for c in cols {
                index.col(c);
            }
            manager.create_index(index.to_owned()).await?;
        }
        manager
            .create_index(
                Index::create().name("idx_invoices_month").table(Invoices::Table).col(Invoices::Month).to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(InvoiceLines::Table)
                    .col(big_pk_auto(InvoiceLines::Id))
                    .col(big_integer(InvoiceLines::InvoiceId))
                    .col(big_integer(InvoiceLines::TeamId))
                    .col(string(InvoiceLines::UsageMonth))
                    .col(string(InvoiceLines::Model))
                    .col(big_integer(InvoiceLines::PriceVersionId))
                    .col(big_integer(InvoiceLines::Requests))
                    .col(big_integer(InvoiceLines::PromptTokens))
                    .col(big_integer(InvoiceLines::CachedInputTokens))
                    .col(big_integer(InvoiceLines::CacheWriteTokens))
                    .col(big_integer(InvoiceLines::CompletionTokens))
                    .col(big_integer(InvoiceLines::AmountMicros))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_invoice_lines_invoice")
                            .from(InvoiceLines::Table, InvoiceLines::InvoiceId)
                            .to(Invoices::Table, Invoices::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_invoice_lines_team_usage_month")
                    .table(InvoiceLines::Table)
                    .col(InvoiceLines::TeamId)
                    .col(InvoiceLines::UsageMonth)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(InvoiceCounter::Table)
                    .col(integer(InvoiceCounter::Id).primary_key())
                    .col(big_integer(InvoiceCounter::LastSeq))
                    .to_owned(),
            )
            .await?;
        let seed = Query::insert()
            .into_table(InvoiceCounter::Table)
            .columns([InvoiceCounter::Id, InvoiceCounter::LastSeq])
            .values([1.into(), 0i64.into()])
            .map_err(|e| DbErr::Migration(e.to_string()))?
            .to_owned();
        manager.exec_stmt(seed).await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Teams {
    Table,
    Id,
    MarkupBp,
}

#[derive(DeriveIden)]
enum Invoices {
    Table,
    Id,
    TeamId,
    Month,
    Seq,
    Number,
    Currency,
    SubtotalMicros,
    MarkupBp,
    MarkupMicros,
    TotalMicros,
    IssuedAt,
    IssuedBy,
    Document,
}

#[derive(DeriveIden)]
enum InvoiceLines {
    Table,
    Id,
    InvoiceId,
    TeamId,
    UsageMonth,
    Model,
    PriceVersionId,
    Requests,
    PromptTokens,
    CachedInputTokens,
    CacheWriteTokens,
    CompletionTokens,
    AmountMicros,
}

#[derive(DeriveIden)]
enum InvoiceCounter {
    Table,
    Id,
    LastSeq,
}
