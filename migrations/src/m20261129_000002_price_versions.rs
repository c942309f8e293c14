//! Price versions: the prices of a model from an effective-from instant on, so a usage record is costed with the
//! price in force when its request started; every usage record keeps the version it was costed with.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PriceVersions::Table)
                    .col(big_pk_auto(PriceVersions::Id))
                    .col(string(PriceVersions::Model))
                    .col(timestamp_with_time_zone(PriceVersions::EffectiveFrom))
                    .col(big_integer(PriceVersions::InputPerMtok))
                    .col(big_integer(PriceVersions::OutputPerMtok))
                    .col(big_integer_null(PriceVersions::CachedInputPerMtok))
                    .col(big_integer_null(PriceVersions::CacheWritePerMtok))
                    .col(timestamp_with_time_zone(PriceVersions::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_price_versions_model_from")
                    .table(PriceVersions::Table)
                    .col(PriceVersions::Model)
                    .col(PriceVersions::EffectiveFrom)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(UsageRecords::Table)
                    .add_column(big_integer_null(UsageRecords::PriceVersionId))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum PriceVersions {
    Table,
    Id,
    Model,
    EffectiveFrom,
    InputPerMtok,
    OutputPerMtok,
    CachedInputPerMtok,
    CacheWritePerMtok,
    CreatedAt,
}

#[derive(DeriveIden)]
enum UsageRecords {
    Table,
    PriceVersionId,
}
