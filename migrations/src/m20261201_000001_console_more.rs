//! Which teams may use each model: `models.allowed_teams`, a JSON array of team ids; NULL means every team.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(Models::Table).add_column(text_null(Models::AllowedTeams)).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Models {
    Table,
    AllowedTeams,
}
