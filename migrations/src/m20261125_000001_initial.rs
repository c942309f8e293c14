//! The first schema: tenants (teams, keys), operators (users, admin tokens), routing (providers, models,
//! targets), metering (usage records), the audit log, node liveness, and the snapshot version counter.
//!
//! Money columns are `BIGINT` micro-units; timestamps are `TIMESTAMP WITH TIME ZONE` in UTC.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Teams::Table)
                    .col(big_pk_auto(Teams::Id))
                    .col(string(Teams::Name))
                    .col(string_uniq(Teams::Slug))
                    .col(timestamp_with_time_zone(Teams::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(big_pk_auto(Users::Id))
                    .col(string_uniq(Users::Email))
                    .col(string(Users::PasswordHash))
                    .col(string(Users::Role))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone_null(Users::DisabledAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AdminTokens::Table)
                    .col(big_pk_auto(AdminTokens::Id))
                    .col(big_integer(AdminTokens::UserId))
                    .col(string(AdminTokens::Name))
                    .col(string(AdminTokens::Prefix))
                    .col(string_len_uniq(AdminTokens::Hash, 64))
                    .col(timestamp_with_time_zone(AdminTokens::CreatedAt))
                    .col(timestamp_with_time_zone_null(AdminTokens::LastUsedAt))
                    .col(timestamp_with_time_zone_null(AdminTokens::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_admin_tokens_user")
                            .from(AdminTokens::Table, AdminTokens::UserId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(big_pk_auto(ApiKeys::Id))
                    .col(big_integer(ApiKeys::TeamId))
                    .col(string(ApiKeys::Name))
                    .col(string(ApiKeys::Prefix))
                    .col(string_len_uniq(ApiKeys::Hash, 64))
                    .col(text_null(ApiKeys::AllowedModels))
                    .col(timestamp_with_time_zone_null(ApiKeys::ExpiresAt))
                    .col(timestamp_with_time_zone(ApiKeys::CreatedAt))
                    .col(timestamp_with_time_zone_null(ApiKeys::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_api_keys_team")
                            .from(ApiKeys::Table, ApiKeys::TeamId)
                            .to(Teams::Table, Teams::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("idx_api_keys_team").table(ApiKeys::Table).col(ApiKeys::TeamId).to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Providers::Table)
                    .col(big_pk_auto(Providers::Id))
                    .col(string_uniq(Providers::Name))
                    .col(string(Providers::Kind))
                    .col(string(Providers::BaseUrl))
                    .col(text_null(Providers::CredentialCiphertext))
                    .col(timestamp_with_time_zone(Providers::CreatedAt))
                    .col(timestamp_with_time_zone(Providers::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Models::Table)
                    .col(big_pk_auto(Models::Id))
                    .col(string_uniq(Models::Name))
                    .col(big_integer(Models::InputPricePerMtok))
                    .col(big_integer(Models::OutputPricePerMtok))
                    .col(timestamp_with_time_zone(Models::CreatedAt))
                    .col(timestamp_with_time_zone(Models::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ModelTargets::Table)
                    .col(big_pk_auto(ModelTargets::Id))
                    .col(big_integer(ModelTargets::ModelId))
                    .col(big_integer(ModelTargets::ProviderId))
                    .col(string(ModelTargets::UpstreamModel))
                    .col(integer(ModelTargets::Weight))
                    .col(integer(ModelTargets::Priority))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_model_targets_model")
                            .from(ModelTargets::Table, ModelTargets::ModelId)
                            .to(Models::Table, Models::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_model_targets_provider")
                            .from(ModelTargets::Table, ModelTargets::ProviderId)
                            .to(Providers::Table, Providers::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_model_targets_model")
                    .table(ModelTargets::Table)
                    .col(ModelTargets::ModelId)
                    .to_owned(),
            )
            .await?;

        // No foreign keys on usage: a record describes what a node did with the snapshot it held, and must be
        // stored even if the team or key it names has changed since.
        manager
            .create_table(
                Table::create()
                    .table(UsageRecords::Table)
                    .col(pk_uuid(UsageRecords::Id))
                    .col(string(UsageRecords::RequestId))
                    .col(string(UsageRecords::NodeId))
                    .col(big_integer(UsageRecords::TeamId))
                    .col(big_integer(UsageRecords::KeyId))
                    .col(string(UsageRecords::Model))
                    .col(big_integer_null(UsageRecords::ProviderId))
                    .col(string_null(UsageRecords::UpstreamModel))
                    .col(timestamp_with_time_zone(UsageRecords::StartedAt))
                    .col(big_integer(UsageRecords::DurationUs))
                    .col(big_integer_null(UsageRecords::TtftUs))
                    .col(integer(UsageRecords::Status))
                    .col(string_null(UsageRecords::ErrorCode))
                    .col(boolean(UsageRecords::Stream))
                    .col(big_integer(UsageRecords::PromptTokens))
                    .col(big_integer(UsageRecords::CompletionTokens))
                    .col(string(UsageRecords::UsageSource))
                    .col(big_integer(UsageRecords::CostMicros))
                    .col(timestamp_with_time_zone(UsageRecords::ReceivedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_usage_records_team_started")
                    .table(UsageRecords::Table)
                    .col(UsageRecords::TeamId)
                    .col(UsageRecords::StartedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_usage_records_key_started")
                    .table(UsageRecords::Table)
                    .col(UsageRecords::KeyId)
                    .col(UsageRecords::StartedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_usage_records_started")
                    .table(UsageRecords::Table)
                    .col(UsageRecords::StartedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(big_pk_auto(AuditLog::Id))
                    .col(timestamp_with_time_zone(AuditLog::At))
                    .col(string(AuditLog::Actor))
                    .col(string(AuditLog::Action))
                    .col(string(AuditLog::TargetType))
                    .col(string(AuditLog::TargetId))
                    .col(text(AuditLog::Detail))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Nodes::Table)
                    .col(string(Nodes::Id).primary_key())
                    .col(big_integer(Nodes::AppliedVersion))
                    .col(timestamp_with_time_zone(Nodes::LastSeenAt))
                    .col(timestamp_with_time_zone(Nodes::FirstSeenAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ConfigVersion::Table)
                    .col(integer(ConfigVersion::Id).primary_key())
                    .col(big_integer(ConfigVersion::Version))
                    .to_owned(),
            )
            .await?;
        // Version 1 is the empty configuration, so a fresh node (which holds version 0) receives it at once.
        let seed = Query::insert()
            .into_table(ConfigVersion::Table)
            .columns([ConfigVersion::Id, ConfigVersion::Version])
            .values([1.into(), 1i64.into()])
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
    Name,
    Slug,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    PasswordHash,
    Role,
    CreatedAt,
    DisabledAt,
}

#[derive(DeriveIden)]
enum AdminTokens {
    Table,
    Id,
    UserId,
    Name,
    Prefix,
    Hash,
    CreatedAt,
    LastUsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    TeamId,
    Name,
    Prefix,
    Hash,
    AllowedModels,
    ExpiresAt,
    CreatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Providers {
    Table,
    Id,
    Name,
    Kind,
    BaseUrl,
    CredentialCiphertext,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Models {
    Table,
    Id,
    Name,
    InputPricePerMtok,
    OutputPricePerMtok,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ModelTargets {
    Table,
    Id,
    ModelId,
    ProviderId,
    UpstreamModel,
    Weight,
    Priority,
}

#[derive(DeriveIden)]
enum UsageRecords {
    Table,
    Id,
    RequestId,
    NodeId,
    TeamId,
    KeyId,
    Model,
    ProviderId,
    UpstreamModel,
    StartedAt,
    DurationUs,
    TtftUs,
    Status,
    ErrorCode,
    Stream,
    PromptTokens,
    CompletionTokens,
    UsageSource,
    CostMicros,
    ReceivedAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    At,
    Actor,
    Action,
    TargetType,
    TargetId,
    Detail,
}

#[derive(DeriveIden)]
enum Nodes {
    Table,
    Id,
    AppliedVersion,
    LastSeenAt,
    FirstSeenAt,
}

#[derive(DeriveIden)]
enum ConfigVersion {
    Table,
    Id,
    Version,
}
