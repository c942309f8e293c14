//! Personal access tokens: admin-API bearer tokens any user creates for themselves in the console. They are rows
//! of `admin_tokens` like the bootstrap token, so [`super::operators::authenticate_user`] accepts them, and the
//! API applies exactly the creator's platform role and team scope; a disabled user's tokens stop working at once.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, EntityTrait as _, IntoActiveModel as _, QueryFilter as _, QueryOrder as _,
    Set,
};
use switchyard_shared::ApiKey;
use switchyard_shared::secret::OPERATOR_TOKEN_PREFIX;

use super::access::Principal;
use super::audit::{self, AuditEntry};
use super::change::begin_write;
use super::{DomainError, Store};
use crate::entities::admin_tokens;

const MAX_NAME_LEN: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalToken {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<admin_tokens::Model> for PersonalToken {
    fn from(m: admin_tokens::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            prefix: m.prefix,
            created_at: m.created_at,
            last_used_at: m.last_used_at,
            revoked_at: m.revoked_at,
        }
    }
}

pub async fn list(store: &Store, user_id: i64) -> Result<Vec<PersonalToken>, DomainError> {
    let rows = admin_tokens::Entity::find()
        .filter(admin_tokens::Column::UserId.eq(user_id))
        .order_by_desc(admin_tokens::Column::Id)
        .all(&store.db)
        .await?;
    Ok(rows.into_iter().map(PersonalToken::from).collect())
}

/// Creates a token for the principal; the plaintext is returned once.
pub async fn create(store: &Store, by: &Principal, name: &str) -> Result<(PersonalToken, String), DomainError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(DomainError::invalid("name", format!("name must be 1-{MAX_NAME_LEN} characters")));
    }
    let secret = ApiKey::generate(OPERATOR_TOKEN_PREFIX, &mut rand::rng());
    let now = Utc::now();
    let txn = begin_write(&store.db).await?;
    let row = admin_tokens::ActiveModel {
        user_id: Set(by.user.id),
        name: Set(name.to_owned()),
        prefix: Set(secret.visible_prefix().to_owned()),
        hash: Set(secret.hash().to_hex()),
        created_at: Set(now),
        last_used_at: Set(None),
        revoked_at: Set(None),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    let detail = serde_json::json!({ "name": row.name, "prefix": row.prefix });
    audit::record(&txn, &by.actor(), AuditEntry::new("token.create", "admin_token", row.id, detail), now).await?;
    txn.commit().await?;
    Ok((row.into(), secret.expose().to_owned()))
}

/// Revokes one of the principal's own tokens; someone else's is "not found".
pub async fn revoke(store: &Store, by: &Principal, token_id: i64) -> Result<PersonalToken, DomainError> {
    let txn = begin_write(&store.db).await?;
    let row = admin_tokens::Entity::find_by_id(token_id)
        .filter(admin_tokens::Column::UserId.eq(by.user.id))
        .one(&txn)
        .await?
        .ok_or(DomainError::NotFound("token"))?;
    if row.revoked_at.is_some() {
        return Ok(row.into());
    }
    let now = Utc::now();
    let mut active = row.into_active_model();
    active.revoked_at = Set(Some(now));
    let row = active.update(&txn).await?;
    let detail = serde_json::json!({ "prefix": row.prefix });
    audit::record(&txn, &by.actor(), AuditEntry::new("token.revoke", "admin_token", row.id, detail), now).await?;
    txn.commit().await?;
    Ok(row.into())
}
