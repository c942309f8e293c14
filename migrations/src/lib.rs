//! Forward-only schema migrations of the Switchyard control plane. Every migration is written with sea-query
//! schema builders so the same file runs on Postgres and SQLite; nothing is ever rolled back — a mistake is
//! corrected by the next migration.

use sea_orm_migration::prelude::*;

/// Re-exported so callers run `Migrator::up` without depending on sea-orm-migration themselves.
pub use sea_orm_migration::MigratorTrait;

mod m20261125_000001_initial;
mod m20261126_000001_limits;
mod m20261127_000001_console;
mod m20261128_000001_provider_timeouts;
mod m20261129_000001_usage_rollups;
mod m20261129_000002_price_versions;
mod m20261201_000001_console_more;
mod m20261203_000001_target_caps;
mod m20261205_000001_team_share;
mod m20261207_000001_invoice_issue;
mod m20261209_000001_target_model_caps;
mod m20261210_000001_usage_partitions;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_initial::Migration),
            Box::new(m20261126_000001_limits::Migration),
            Box::new(m20261127_000001_console::Migration),
            Box::new(m20261128_000001_provider_timeouts::Migration),
            Box::new(m20261129_000001_usage_rollups::Migration),
            Box::new(m20261129_000002_price_versions::Migration),
            Box::new(m20261201_000001_console_more::Migration),
            Box::new(m20261203_000001_target_caps::Migration),
            Box::new(m20261205_000001_team_share::Migration),
            Box::new(m20261207_000001_invoice_issue::Migration),
            Box::new(m20261209_000001_target_model_caps::Migration),
            Box::new(m20261210_000001_usage_partitions::Migration),
        ]
    }
}
