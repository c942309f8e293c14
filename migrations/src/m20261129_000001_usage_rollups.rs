//! Usage rollups and budget spend counters, both maintained by ingest in the transaction that stores the records,
//! so reports and budgets never scan raw usage.
//!
//! `usage_rollups` has rows per (team, key, model, price version, day), the day being a calendar day in the
//! deployment's reporting time zone; `price_version_id` is 0 for records costed without a price version. `shard`
//! (derived from the reporting node) spreads concurrent batches over different rows so they do not queue on each
//! other's row locks; readers sum over shards.
//! `budget_spend` has one row per budgeted team or key and budget period. The token classes of issue 7 are added
//! to `usage_records` here too, since the rollups carry them.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite takes one column per ALTER TABLE.
        for col in [UsageRecords::CachedInputTokens, UsageRecords::CacheWriteTokens, UsageRecords::ReasoningTokens] {
            manager
                .alter_table(
                    Table::alter().table(UsageRecords::Table).add_column(big_integer(col).default(0)).to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(UsageRollups::Table)
                    .col(big_integer(UsageRollups::TeamId))
                    .col(big_integer(UsageRollups::KeyId))
                    .col(string(UsageRollups::Model))
                    .col(big_integer(UsageRollups::PriceVersionId).default(0))
                    .col(date(UsageRollups::Day))
                    .col(integer(UsageRollups::Shard).default(0))
                    .col(big_integer(UsageRollups::Requests))
                    .col(big_integer(UsageRollups::Errors))
                    .col(big_integer(UsageRollups::PromptTokens))
                    .col(big_integer(UsageRollups::CachedInputTokens))
                    .col(big_integer(UsageRollups::CacheWriteTokens))
                    .col(big_integer(UsageRollups::CompletionTokens))
                    .col(big_integer(UsageRollups::ReasoningTokens))
                    .col(big_integer(UsageRollups::CostMicros))
                    .primary_key(
                        Index::create()
                            .col(UsageRollups::TeamId)
                            .col(UsageRollups::KeyId)
                            .col(UsageRollups::Model)
                            .col(UsageRollups::PriceVersionId)
                            .col(UsageRollups::Day)
                            .col(UsageRollups::Shard),
                    )
                    .to_owned(),
            )
            .await?;
        // Reports ask for a team's month: day first after the team.
        manager
            .create_index(
                Index::create()
                    .name("idx_usage_rollups_team_day")
                    .table(UsageRollups::Table)
                    .col(UsageRollups::TeamId)
                    .col(UsageRollups::Day)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BudgetSpend::Table)
                    .col(string_len(BudgetSpend::Scope, 16))
                    .col(big_integer(BudgetSpend::ScopeId))
                    .col(timestamp_with_time_zone(BudgetSpend::PeriodStart))
                    .col(timestamp_with_time_zone(BudgetSpend::PeriodEnd))
                    .col(big_integer(BudgetSpend::Micros))
                    .col(big_integer(BudgetSpend::Tokens))
                    .primary_key(
                        Index::create()
                            .col(BudgetSpend::Scope)
                            .col(BudgetSpend::ScopeId)
                            .col(BudgetSpend::PeriodStart)
                            .col(BudgetSpend::PeriodEnd),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum UsageRecords {
    Table,
    CachedInputTokens,
    CacheWriteTokens,
    ReasoningTokens,
}

#[derive(DeriveIden)]
enum UsageRollups {
    Table,
    TeamId,
    KeyId,
    Model,
    PriceVersionId,
    Day,
    Shard,
    Requests,
    Errors,
    PromptTokens,
    CachedInputTokens,
    CacheWriteTokens,
    CompletionTokens,
    ReasoningTokens,
    CostMicros,
}

#[derive(DeriveIden)]
enum BudgetSpend {
    Table,
    Scope,
    ScopeId,
    PeriodStart,
    PeriodEnd,
    Micros,
    Tokens,
}
