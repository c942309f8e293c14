//! The audit log: who changed what. Rows are written inside the transaction of the change they describe, so
//! a change without its audit row (or the reverse) cannot exist.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, ConnectionTrait, DbErr, EntityTrait as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _, Set,
};

use super::{DomainError, Store};

use crate::entities::audit_log;

/// Who acted: `token:<visible prefix>` for an admin token, `system` for the control plane itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(String);

impl Actor {
    pub fn token(prefix: &str) -> Self {
        Self(format!("token:{prefix}"))
    }

    pub fn system() -> Self {
        Self("system".to_owned())
    }

    /// A console user, with the address the request came from when known.
    pub fn user(email: &str, address: Option<&str>) -> Self {
        match address {
            Some(a) => Self(format!("user:{email} from {a}")),
            None => Self(format!("user:{email}")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One audited action. `detail` must never hold a secret.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub action: &'static str,
    pub target_type: &'static str,
    pub target_id: String,
    pub detail: serde_json::Value,
}

impl AuditEntry {
    pub fn new(
        action: &'static str,
        target_type: &'static str,
        target_id: impl ToString,
        detail: serde_json::Value,
    ) -> Self {
        Self { action, target_type, target_id: target_id.to_string(), detail }
    }
}

pub async fn record(
    conn: &impl ConnectionTrait,
    actor: &Actor,
    entry: AuditEntry,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    audit_log::ActiveModel {
        at: Set(at),
        actor: Set(actor.as_str().to_owned()),
        action: Set(entry.action.to_owned()),
        target_type: Set(entry.target_type.to_owned()),
        target_id: Set(entry.target_id),
        detail: Set(entry.detail.to_string()),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    Ok(())
}

/// Audit rows newest first, `limit` at a time, continuing below `before_id` when given.
pub async fn list(store: &Store, before_id: Option<i64>, limit: u64) -> Result<Vec<audit_log::Model>, DomainError> {
    let mut query = audit_log::Entity::find().order_by_desc(audit_log::Column::Id).limit(limit.clamp(1, 500));
    if let Some(before) = before_id {
        query = query.filter(audit_log::Column::Id.lt(before));
    }
    Ok(query.all(&store.db).await?)
}
