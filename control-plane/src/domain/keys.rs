//! Team API keys. The plaintext exists only in the value [`issue`] returns; the database and the snapshot hold
//! its SHA-256. Revoking a key removes it from the next snapshot.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, EntityTrait as _, IntoActiveModel as _, QueryFilter as _, QueryOrder as _,
    Set,
};
use serde::{Deserialize, Serialize};
use switchyard_shared::ApiKey;
use switchyard_shared::secret::API_KEY_PREFIX;

use super::audit::{Actor, AuditEntry};
use super::change::Change;
use super::models::ModelName;
use super::{DomainError, Store};
use crate::entities::{api_keys, teams};

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
