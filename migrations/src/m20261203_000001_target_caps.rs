//! Per-provider (credential) capacity caps: requests and tokens per minute and requests in flight, which the nodes
//! keep traffic under; NULL means uncapped.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds a single column per ALTER TABLE.
        for column in [Providers::CapRpm, Providers::CapTpm, Providers::CapMaxConcurrency] {
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
    CapRpm,
    CapTpm,
    CapMaxConcurrency,
}
