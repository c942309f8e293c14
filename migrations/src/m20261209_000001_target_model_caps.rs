//! Caps of single upstream models on a provider credential (e.g. gpt-4o 500 RPM, gpt-4o-mini 5000 RPM on one
//! key): each set dimension replaces the credential-wide cap of that dimension for that upstream model; NULL
//! leaves the dimension under the credential-wide cap. One row per (provider, upstream model).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ProviderModelCaps::Table)
                    .col(big_pk_auto(ProviderModelCaps::Id))
                    .col(big_integer(ProviderModelCaps::ProviderId))
                    .col(string(ProviderModelCaps::UpstreamModel))
                    .col(big_integer_null(ProviderModelCaps::Rpm))
                    .col(big_integer_null(ProviderModelCaps::Tpm))
                    .col(big_integer_null(ProviderModelCaps::MaxConcurrency))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_provider_model_caps_provider")
                            .from(ProviderModelCaps::Table, ProviderModelCaps::ProviderId)
                            .to(Providers::Table, Providers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_provider_model_caps_target")
                    .table(ProviderModelCaps::Table)
                    .col(ProviderModelCaps::ProviderId)
                    .col(ProviderModelCaps::UpstreamModel)
                    .unique()
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum ProviderModelCaps {
    Table,
    Id,
    ProviderId,
    UpstreamModel,
    Rpm,
    Tpm,
    MaxConcurrency,
}

#[derive(DeriveIden)]
enum Providers {
    Table,
    Id,
}
