//! Limits and budgets: the limits of teams and keys, the budget alerts raised when spend crosses a threshold,
//! and per node the newest usage record counted (so nodes know which of their own spend the pushed totals hold).
//!
//! A limit's settings are one JSON document (`switchyard_shared::limits::Limits`): new optional settings need no
//! migration, and rows written before them still parse.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Limits::Table)
                    .col(big_pk_auto(Limits::Id))
                    .col(string_len(Limits::Scope, 16))
                    .col(big_integer(Limits::ScopeId))
                    .col(text(Limits::Settings))
                    .col(timestamp_with_time_zone(Limits::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_limits_scope")
                    .table(Limits::Table)
                    .col(Limits::Scope)
                    .col(Limits::ScopeId)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(BudgetAlerts::Table)
                    .col(big_pk_auto(BudgetAlerts::Id))
                    .col(string_len(BudgetAlerts::Scope, 16))
                    .col(big_integer(BudgetAlerts::ScopeId))
                    .col(big_integer(BudgetAlerts::TeamId))
                    .col(string_len(BudgetAlerts::Kind, 32))
                    .col(timestamp_with_time_zone(BudgetAlerts::PeriodStart))
                    .col(integer(BudgetAlerts::ThresholdPct))
                    .col(big_integer(BudgetAlerts::SpentMicros))
                    .col(big_integer(BudgetAlerts::SpentTokens))
                    .col(big_integer_null(BudgetAlerts::CapMicros))
                    .col(big_integer_null(BudgetAlerts::CapTokens))
                    .col(timestamp_with_time_zone(BudgetAlerts::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // One alert of each kind per budget and period, however many batches cross the threshold at once.
        manager
            .create_index(
                Index::create()
                    .name("idx_budget_alerts_once")
                    .table(BudgetAlerts::Table)
                    .col(BudgetAlerts::Scope)
                    .col(BudgetAlerts::ScopeId)
                    .col(BudgetAlerts::PeriodStart)
                    .col(BudgetAlerts::Kind)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(UsageWatermarks::Table)
                    .col(string(UsageWatermarks::NodeId).primary_key())
                    .col(uuid(UsageWatermarks::LastRecordId))
                    .col(timestamp_with_time_zone(UsageWatermarks::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Limits {
    Table,
    Id,
    Scope,
    ScopeId,
    Settings,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum BudgetAlerts {
    Table,
    Id,
    Scope,
    ScopeId,
    TeamId,
    Kind,
    PeriodStart,
    ThresholdPct,
    SpentMicros,
    SpentTokens,
    CapMicros,
    CapTokens,
    CreatedAt,
}

#[derive(DeriveIden)]
enum UsageWatermarks {
    Table,
    NodeId,
    LastRecordId,
    UpdatedAt,
}
