//! Per-provider overrides of the nodes' upstream time limits (first byte, idle between chunks, total), in
//! milliseconds; NULL means the node's default.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds a single column per ALTER TABLE.
        for column in [Providers::FirstByteTimeoutMs, Providers::IdleTimeoutMs, Providers::TotalTimeoutMs] {
            manager
                .alter_table(Table::alter().table(Providers::Table).add_column(big_integer_null(column)).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Providers {
    Table,
    FirstByteTimeoutMs,
    IdleTimeoutMs,
    TotalTimeoutMs,
}
