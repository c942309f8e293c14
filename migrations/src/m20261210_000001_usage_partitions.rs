//! Postgres only: `usage_records` becomes a table partitioned by `RANGE (started_at)`. The primary key becomes
//! `(id, started_at)` because a partitioned table's unique keys must include the partition key; ingest stays
//! idempotent because a record's id and `started_at` are minted together by the node and never change (a re-sent
//! record carries both unchanged), so `(id, started_at)` is as unique as `id`.
//!
//! The existing table is converted with its rows: renamed aside, the partitioned table created with the same
//! columns and indexes plus a DEFAULT partition, every row copied into it, the old table dropped. The monthly
//! partitions themselves are created by the control plane (`domain::partitions`): their bounds follow the reporting
//! time zone, which only the running control plane knows; it moves rows out of the DEFAULT partition into them.
//!
//! Also, on both backends: `usage_retention`, one row saying from which reporting day on raw records are kept (the
//! retention job moves it when it drops a month; SQLite never writes it).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

const CONVERT: &[&str] = &[
    "ALTER TABLE usage_records RENAME TO usage_records_unpartitioned",
    "ALTER TABLE usage_records_unpartitioned RENAME CONSTRAINT usage_records_pkey TO usage_records_unpartitioned_pkey",
    "DROP INDEX idx_usage_records_team_started",
    "DROP INDEX idx_usage_records_key_started",
    "DROP INDEX idx_usage_records_started",
    "CREATE TABLE usage_records (LIKE usage_records_unpartitioned INCLUDING DEFAULTS, PRIMARY KEY (id, started_at)) \
     PARTITION BY RANGE (started_at)",
    "CREATE INDEX idx_usage_records_team_started ON usage_records (team_id, started_at)",
    "CREATE INDEX idx_usage_records_key_started ON usage_records (key_id, started_at)",
    "CREATE INDEX idx_usage_records_started ON usage_records (started_at)",
    "CREATE TABLE usage_records_default PARTITION OF usage_records DEFAULT",
    "INSERT INTO usage_records SELECT * FROM usage_records_unpartitioned",
    "DROP TABLE usage_records_unpartitioned",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            let db = manager.get_connection();
            for sql in CONVERT {
                db.execute_unprepared(sql).await?;
            }
        }
        manager
            .create_table(
                Table::create()
                    .table(UsageRetention::Table)
                    .col(integer(UsageRetention::Id).primary_key())
                    .col(date_null(UsageRetention::RecordsFrom))
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum UsageRetention {
    Table,
    Id,
    /// Raw usage records exist for reporting days from this one on; NULL: nothing was ever dropped.
    RecordsFrom,
}
