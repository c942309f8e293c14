//! Team API keys. The plaintext exists only in the value [`issue`] (or [`rotate`]) returns; the database and the
//! snapshot hold its SHA-256. Revoking a key removes it from the next snapshot; rotating one issues its successor
//! and lets the old secret work until a chosen time (its `expires_at`, which nodes enforce).

use chrono::{DateTime, SubsecRound as _, Utc};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, EntityTrait as _, IntoActiveModel as _, QueryFilter as _, QueryOrder as _,
    Set,
};
use serde::{Deserialize, Serialize};
use switchyard_shared::ApiKey;
use switchyard_shared::secret::API_KEY_PREFIX;
use switchyard_shared::snapshot::LimitScope;

use super::audit::{Actor, AuditEntry};
use super::change::Change;
use super::models::ModelName;
use super::{DomainError, Store};
use crate::entities::{api_key_owners, api_keys, limits, teams};

/// The longest a rotated key may keep working next to its successor.
pub const MAX_GRACE_DAYS: i64 = 90;

const MAX_NAME_LEN: usize = 200;

/// A key as lists show it: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub id: i64,
    pub team_id: i64,
    pub name: String,
    pub prefix: String,
    pub allowed_models: Option<Vec<String>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The answer to issuing a key: the only place its plaintext ever appears.
#[derive(Serialize)]
pub struct IssuedKey {
    #[serde(flatten)]
    pub key: Key,
    #[serde(rename = "key")]
    pub secret: String,
}

impl std::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKey").field("key", &self.key).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct NewKey {
    pub name: String,
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

impl TryFrom<api_keys::Model> for Key {
    type Error = DomainError;

    fn try_from(m: api_keys::Model) -> Result<Self, DomainError> {
        Ok(Self {
            allowed_models: decode_allowed_models(m.allowed_models.as_deref())?,
            id: m.id,
            team_id: m.team_id,
            name: m.name,
            prefix: m.prefix,
            expires_at: m.expires_at,
            created_at: m.created_at,
            revoked_at: m.revoked_at,
        })
    }
}

pub(crate) fn decode_allowed_models(raw: Option<&str>) -> Result<Option<Vec<String>>, DomainError> {
    raw.map(serde_json::from_str::<Vec<String>>)
        .transpose()
        .map_err(|e| DomainError::Internal(format!("api_keys.allowed_models is not a JSON array: {e}")))
}

pub async fn issue(store: &Store, actor: &Actor, team_id: i64, new: NewKey) -> Result<IssuedKey, DomainError> {
    let now = Utc::now();
    let name = new.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(DomainError::invalid("name", format!("name must be 1-{MAX_NAME_LEN} characters")));
    }
    let allowed_models = match new.allowed_models {
        None => None,
        Some(list) if list.is_empty() => {
            return Err(DomainError::invalid(
                "allowed_models",
                "allowed_models must name at least one model; omit it to allow every model",
            ));
        }
        Some(list) => {
            let mut names = Vec::with_capacity(list.len());
            for m in &list {
                let name = ModelName::parse(m)
                    .map_err(|_| DomainError::invalid("allowed_models", format!("`{m}` is not a valid model name")))?;
                if !names.contains(&name.as_str().to_owned()) {
                    names.push(name.as_str().to_owned());
                }
            }
            Some(names)
        }
    };
    if new.expires_at.is_some_and(|t| t <= now) {
        return Err(DomainError::invalid("expires_at", "expires_at must be in the future"));
    }
    let secret = ApiKey::generate(API_KEY_PREFIX, &mut rand::rng());

    let change = Change::begin(store).await?;
    if teams::Entity::find_by_id(team_id).one(&*change).await?.is_none() {
        return Err(DomainError::NotFound("team"));
    }
    let allowed_json = allowed_models
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| DomainError::Internal(e.to_string()))?;
    let row = api_keys::ActiveModel {
        team_id: Set(team_id),
        name: Set(name),
        prefix: Set(secret.visible_prefix().to_owned()),
        hash: Set(secret.hash().to_hex()),
        allowed_models: Set(allowed_json),
        expires_at: Set(new.expires_at),
        created_at: Set(now),
        revoked_at: Set(None),
        ..Default::default()
    }
    .insert(&*change)
    .await?;
    let entry = AuditEntry::new(
        "key.issue",
        "api_key",
        row.id,
        serde_json::json!({
            "team_id": team_id,
            "name": row.name,
            "prefix": row.prefix,
            "allowed_models": allowed_models,
            "expires_at": row.expires_at,
        }),
    );
    change.commit(store, actor, entry).await?;
    Ok(IssuedKey { key: Key::try_from(row)?, secret: secret.expose().to_owned() })
}

pub async fn list_for_team(store: &Store, team_id: i64) -> Result<Vec<Key>, DomainError> {
    if teams::Entity::find_by_id(team_id).one(&store.db).await?.is_none() {
        return Err(DomainError::NotFound("team"));
    }
    api_keys::Entity::find()
        .filter(api_keys::Column::TeamId.eq(team_id))
        .order_by_asc(api_keys::Column::Id)
        .all(&store.db)
        .await?
        .into_iter()
        .map(Key::try_from)
        .collect()
}

/// Body of a rotation: until when the old secret keeps working (now = at once).
#[derive(Debug, Clone, Deserialize)]
pub struct Rotation {
    pub grace_until: DateTime<Utc>,
}

/// The answer to a rotation: the successor with its secret (shown once) and the old key with its new end.
#[derive(Debug, Serialize)]
pub struct RotatedKey {
    #[serde(flatten)]
    pub issued: IssuedKey,
    pub previous: Key,
}

/// Rotates a key: issues a successor with the same team, name, allowed models, expiry, owner and limits, and
/// makes the old key expire at `grace_until` (or at its own expiry, if sooner). The old key must still work.
pub async fn rotate(
    store: &Store,
    actor: &Actor,
    key_id: i64,
    rotation: Rotation,
    now: DateTime<Utc>,
) -> Result<RotatedKey, DomainError> {
    // Postgres keeps microseconds: store what both backends keep, so the answer equals the stored value.
    let grace_until = rotation.grace_until.trunc_subsecs(6);
    if grace_until < now - chrono::Duration::minutes(1) {
        return Err(DomainError::invalid("grace_until", "grace_until must not be in the past"));
    }
    if grace_until > now + chrono::Duration::days(MAX_GRACE_DAYS) {
        return Err(DomainError::invalid(
            "grace_until",
            format!("grace_until must be at most {MAX_GRACE_DAYS} days from now"),
        ));
    }
    let change = Change::begin(store).await?;
    let old = api_keys::Entity::find_by_id(key_id).one(&*change).await?.ok_or(DomainError::NotFound("key"))?;
    if old.revoked_at.is_some() || old.expires_at.is_some_and(|t| t <= now) {
        return Err(DomainError::Conflict("only a key that still works can be rotated".into()));
    }
    let secret = ApiKey::generate(API_KEY_PREFIX, &mut rand::rng());
    let successor = api_keys::ActiveModel {
        team_id: Set(old.team_id),
        name: Set(old.name.clone()),
        prefix: Set(secret.visible_prefix().to_owned()),
        hash: Set(secret.hash().to_hex()),
        allowed_models: Set(old.allowed_models.clone()),
        expires_at: Set(old.expires_at),
        created_at: Set(now),
        revoked_at: Set(None),
        ..Default::default()
    }
    .insert(&*change)
    .await?;
    if let Some(owner) = api_key_owners::Entity::find_by_id(old.id).one(&*change).await? {
        api_key_owners::ActiveModel { key_id: Set(successor.id), user_id: Set(owner.user_id), created_at: Set(now) }
            .insert(&*change)
            .await?;
    }
    let key_limits = limits::Entity::find()
        .filter(limits::Column::Scope.eq(LimitScope::Key.as_str()))
        .filter(limits::Column::ScopeId.eq(old.id))
        .one(&*change)
        .await?;
    if let Some(l) = key_limits {
        limits::ActiveModel {
            scope: Set(l.scope),
            scope_id: Set(successor.id),
            settings: Set(l.settings),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(&*change)
        .await?;
    }
    let old_end = old.expires_at.map_or(grace_until, |t| t.min(grace_until));
    let mut active = old.into_active_model();
    active.expires_at = Set(Some(old_end));
    let old = active.update(&*change).await?;
    let entry = AuditEntry::new(
        "key.rotate",
        "api_key",
        old.id,
        serde_json::json!({
            "team_id": old.team_id,
            "prefix": old.prefix,
            "old_expires_at": old_end,
            "successor_id": successor.id,
            "successor_prefix": successor.prefix,
        }),
    );
    change.commit(store, actor, entry).await?;
    Ok(RotatedKey {
        issued: IssuedKey { key: Key::try_from(successor)?, secret: secret.expose().to_owned() },
        previous: Key::try_from(old)?,
    })
}

/// One key, whatever its state.
pub async fn get(store: &Store, key_id: i64) -> Result<Key, DomainError> {
    Key::try_from(api_keys::Entity::find_by_id(key_id).one(&store.db).await?.ok_or(DomainError::NotFound("key"))?)
}

/// Revokes a key. Revoking an already revoked key changes nothing and answers the key as it is.
pub async fn revoke(store: &Store, actor: &Actor, key_id: i64) -> Result<Key, DomainError> {
    let change = Change::begin(store).await?;
    let row = api_keys::Entity::find_by_id(key_id).one(&*change).await?.ok_or(DomainError::NotFound("key"))?;
    if row.revoked_at.is_some() {
        return Key::try_from(row);
    }
    let mut active = row.into_active_model();
    active.revoked_at = Set(Some(Utc::now()));
    let row = active.update(&*change).await?;
    let entry = AuditEntry::new(
        "key.revoke",
        "api_key",
        row.id,
        serde_json::json!({ "team_id": row.team_id, "prefix": row.prefix }),
    );
    change.commit(store, actor, entry).await?;
    Key::try_from(row)
}
