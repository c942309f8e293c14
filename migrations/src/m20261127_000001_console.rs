//! The admin console: session revocation (a version per user, and single revoked sessions), team memberships
//! with their roles, invite links, login throttling, who issued which key, and the console's own secrets
//! (stored encrypted with the credential key).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Bumped on password change and when a user is disabled: every session issued before is refused.
        manager
            .alter_table(
                Table::alter().table(Users::Table).add_column(big_integer(Users::SessionVersion).default(0)).to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(TeamMembers::Table)
                    .col(big_pk_auto(TeamMembers::Id))
                    .col(big_integer(TeamMembers::TeamId))
                    .col(big_integer(TeamMembers::UserId))
                    .col(string_len(TeamMembers::Role, 16))
                    .col(timestamp_with_time_zone(TeamMembers::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_team_members_team")
                            .from(TeamMembers::Table, TeamMembers::TeamId)
                            .to(Teams::Table, Teams::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_team_members_user")
                            .from(TeamMembers::Table, TeamMembers::UserId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_team_members_team_user")
                    .table(TeamMembers::Table)
                    .col(TeamMembers::TeamId)
                    .col(TeamMembers::UserId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_team_members_user")
                    .table(TeamMembers::Table)
                    .col(TeamMembers::UserId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Invites::Table)
                    .col(big_pk_auto(Invites::Id))
                    .col(string_len_uniq(Invites::TokenHash, 64))
                    .col(string(Invites::Email))
                    .col(string_len(Invites::PlatformRole, 16))
                    .col(big_integer_null(Invites::TeamId))
                    .col(string_len_null(Invites::TeamRole, 16))
                    .col(big_integer(Invites::CreatedBy))
                    .col(timestamp_with_time_zone(Invites::CreatedAt))
                    .col(timestamp_with_time_zone(Invites::ExpiresAt))
                    .col(timestamp_with_time_zone_null(Invites::AcceptedAt))
                    .col(big_integer_null(Invites::AcceptedBy))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(LoginThrottle::Table)
                    .col(string(LoginThrottle::Email).primary_key())
                    .col(integer(LoginThrottle::Failures))
                    .col(timestamp_with_time_zone(LoginThrottle::WindowStartedAt))
                    .col(timestamp_with_time_zone_null(LoginThrottle::LockedUntil))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RevokedSessions::Table)
                    .col(string_len(RevokedSessions::Jti, 64).primary_key())
                    .col(big_integer(RevokedSessions::UserId))
                    .col(timestamp_with_time_zone(RevokedSessions::ExpiresAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApiKeyOwners::Table)
                    .col(big_integer(ApiKeyOwners::KeyId).primary_key())
                    .col(big_integer(ApiKeyOwners::UserId))
                    .col(timestamp_with_time_zone(ApiKeyOwners::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ConsoleSecrets::Table)
                    .col(string_len(ConsoleSecrets::Name, 64).primary_key())
                    .col(text(ConsoleSecrets::Ciphertext))
                    .col(timestamp_with_time_zone(ConsoleSecrets::CreatedAt))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    SessionVersion,
}

#[derive(DeriveIden)]
enum Teams {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum TeamMembers {
    Table,
    Id,
    TeamId,
    UserId,
    Role,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Invites {
    Table,
    Id,
    TokenHash,
    Email,
    PlatformRole,
    TeamId,
    TeamRole,
    CreatedBy,
    CreatedAt,
    ExpiresAt,
    AcceptedAt,
    AcceptedBy,
}

#[derive(DeriveIden)]
enum LoginThrottle {
    Table,
    Email,
    Failures,
    WindowStartedAt,
    LockedUntil,
}

#[derive(DeriveIden)]
enum RevokedSessions {
    Table,
    Jti,
    UserId,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum ApiKeyOwners {
    Table,
    KeyId,
    UserId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ConsoleSecrets {
    Table,
    Name,
    Ciphertext,
    CreatedAt,
}
