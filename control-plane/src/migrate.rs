//! Schema migrations, safe when several replicas start at once. On Postgres the runner first takes a session
//! advisory lock on a connection of its own, so one replica migrates while the others wait and then find nothing
//! left to do; the lock goes with that connection, so a replica that dies mid-migration never leaves it held.
//! Migrations are forward-only (`migrations/`); `switchyard-control-plane migrate` runs them without serving.

use sea_orm::sqlx::{self, Connection as _};
use sea_orm::{DatabaseBackend, DatabaseConnection, DbErr};
use switchyard_migrations::{Migrator, MigratorTrait as _};

/// Key of the advisory lock that serialises migrations across replicas ("SWYDMIGR").
pub const MIGRATION_LOCK_KEY: i64 = 0x5357_5944_4d49_4752;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot take the migration lock")]
    Lock(#[source] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[source] DbErr),
    #[error("cannot list applied migrations")]
    Status(#[source] DbErr),
}

/// Applies every pending migration; returns how many were pending.
pub async fn run(db: &DatabaseConnection) -> Result<usize, MigrateError> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return up(db).await;
    }
    let options = db.get_postgres_connection_pool().connect_options();
    let mut lock = sqlx::PgConnection::connect_with(&options).await.map_err(MigrateError::Lock)?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut lock)
        .await
        .map_err(MigrateError::Lock)?;
    let result = up(db).await;
    // Closing the session releases the lock, whatever happened above.
    if let Err(e) = lock.close().await {
        tracing::warn!(error = %e, "closing the migration lock connection failed; the server drops it");
    }
    result
}

async fn up(db: &DatabaseConnection) -> Result<usize, MigrateError> {
    let pending = Migrator::get_pending_migrations(db).await.map_err(MigrateError::Status)?.len();
    Migrator::up(db, None).await.map_err(MigrateError::Migrate)?;
    if pending > 0 {
        tracing::info!(applied = pending, "database migrated");
    }
    Ok(pending)
}
