//! One configuration change = one transaction holding the change, its audit row and the snapshot version bump.
//! The snapshot publisher is rung only after the commit, so it never builds from uncommitted state.
//!
//! On SQLite the transaction starts `IMMEDIATE`, taking the write lock up front: a deferred transaction that
//! reads and then writes can fail with `SQLITE_BUSY` when another writer got there first.

use std::ops::Deref;

use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{
    ColumnTrait as _, DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait as _,
    QueryFilter as _, SqliteTransactionMode, TransactionOptions, TransactionTrait as _,
};

use super::audit::{self, Actor, AuditEntry};
use super::{DomainError, Store};
use crate::entities::config_version;

/// A transaction that will write: `IMMEDIATE` on SQLite, the default on Postgres.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let sqlite_mode =
        (db.get_database_backend() == DatabaseBackend::Sqlite).then_some(SqliteTransactionMode::Immediate);
    db.begin_with_options(TransactionOptions {
        isolation_level: None,
        access_mode: None,
        sqlite_transaction_mode: sqlite_mode,
    })
    .await
}

pub struct Change {
    txn: DatabaseTransaction,
}

impl Deref for Change {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

impl Change {
    pub async fn begin(store: &Store) -> Result<Self, DomainError> {
        Ok(Self { txn: begin_write(&store.db).await? })
    }

    /// Writes the audit row, bumps the version, commits, then asks the publisher to republish. Returns the new
    /// configuration version.
    pub async fn commit(self, store: &Store, actor: &Actor, entry: AuditEntry) -> Result<u64, DomainError> {
        let now = Utc::now();
        tracing::info!(
            actor = actor.as_str(),
            action = entry.action,
            target_type = entry.target_type,
            target_id = %entry.target_id,
            "configuration change"
        );
        audit::record(&self.txn, actor, entry, now).await?;
        config_version::Entity::update_many()
            .col_expr(config_version::Column::Version, Expr::col(config_version::Column::Version).add(1))
            .filter(config_version::Column::Id.eq(config_version::ROW_ID))
            .exec(&self.txn)
            .await?;
        let version = config_version::Entity::find_by_id(config_version::ROW_ID)
            .one(&self.txn)
            .await?
            .ok_or_else(|| DomainError::Internal("the config_version row is missing".into()))?
            .version;
        self.txn.commit().await?;
        store.republish.ring();
        Ok(u64::try_from(version).unwrap_or_default())
    }
}
