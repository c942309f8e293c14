//! First start: when no user exists, create the operator `admin@localhost` with a random password and an
//! operator token, and hand both back exactly once so `main` can print them. Later starts create nothing.

use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHasher as _};
use chrono::Utc;
use rand::Rng as _;
use rand::distr::{Alphanumeric, SampleString as _};
use sea_orm::{ActiveModelTrait as _, EntityTrait as _, PaginatorTrait as _, Set};
use switchyard_shared::ApiKey;
use switchyard_shared::secret::{OPERATOR_TOKEN_PREFIX, VISIBLE_PREFIX_LEN};

use super::audit::{self, Actor, AuditEntry};
use super::change::begin_write;
use super::operators::ROLE_OPERATOR;
use super::{DomainError, Store};
use crate::config::Secret;
use crate::entities::{admin_tokens, users};

pub const BOOTSTRAP_EMAIL: &str = "admin@localhost";
const PASSWORD_LEN: usize = 20;
const MIN_PRESET_TOKEN_LEN: usize = 20;

/// What a first start created. Shown once; the database keeps only hashes.
#[derive(Debug, Clone)]
pub struct BootstrapCredentials {
    pub email: String,
    pub password: Secret,
    pub operator_token: Secret,
}

/// argon2id with the crate's default (OWASP-recommended) parameters.
pub fn hash_password(password: &str) -> Result<String, DomainError> {
    let mut salt = [0u8; 16];
    rand::rng().fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| DomainError::Internal(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| DomainError::Internal(e.to_string()))
}

/// Creates the first operator if there is no user yet. `preset_token`, when given, becomes the operator token
/// instead of a random one; it must be high-entropy, as only its SHA-256 protects it.
pub async fn ensure_operator(
    store: &Store,
    preset_token: Option<&Secret>,
) -> Result<Option<BootstrapCredentials>, DomainError> {
    if users::Entity::find().count(&store.db).await? > 0 {
        return Ok(None);
    }
    let token = match preset_token {
        Some(t) => {
            let t = t.expose();
            if t.len() < MIN_PRESET_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(DomainError::invalid(
                    "SWITCHYARD_BOOTSTRAP_OPERATOR_TOKEN",
                    format!(
                        "the preset operator token must be at least {MIN_PRESET_TOKEN_LEN} visible ASCII characters"
                    ),
                ));
            }
            t.to_owned()
        }
        None => ApiKey::generate(OPERATOR_TOKEN_PREFIX, &mut rand::rng()).expose().to_owned(),
    };
    let password = Alphanumeric.sample_string(&mut rand::rng(), PASSWORD_LEN);
    let to_hash = password.clone();
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&to_hash))
        .await
        .map_err(|e| DomainError::Internal(e.to_string()))??;
    let prefix: String = token.chars().take(VISIBLE_PREFIX_LEN).collect();
    let now = Utc::now();

    let txn = begin_write(&store.db).await?;
    // Checked again under the write lock: two replicas starting together must not both bootstrap.
    if users::Entity::find().count(&txn).await? > 0 {
        return Ok(None);
    }
    let user = users::ActiveModel {
        email: Set(BOOTSTRAP_EMAIL.to_owned()),
        password_hash: Set(password_hash),
        role: Set(ROLE_OPERATOR.to_owned()),
        created_at: Set(now),
        disabled_at: Set(None),
        ..Default::default()
    }
    .insert(&txn)
    .await;
    let user = match user {
        Ok(u) => u,
        Err(e) => {
            return match DomainError::on_unique(e, String::new) {
                // Another replica won the race (Postgres lets both pass the count check).
                DomainError::Conflict(_) => Ok(None),
                other => Err(other),
            };
        }
    };
    let row = admin_tokens::ActiveModel {
        user_id: Set(user.id),
        name: Set("bootstrap".to_owned()),
        prefix: Set(prefix.clone()),
        hash: Set(switchyard_shared::KeyHash::of(&token).to_hex()),
        created_at: Set(now),
        last_used_at: Set(None),
        revoked_at: Set(None),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    audit::record(
        &txn,
        &Actor::system(),
        AuditEntry::new(
            "operator.bootstrap",
            "user",
            user.id,
            serde_json::json!({ "email": user.email, "token_id": row.id, "token_prefix": prefix }),
        ),
        now,
    )
    .await?;
    txn.commit().await?;
    tracing::info!(email = BOOTSTRAP_EMAIL, "created the first operator");
    Ok(Some(BootstrapCredentials {
        email: BOOTSTRAP_EMAIL.to_owned(),
        password: Secret::new(password),
        operator_token: Secret::new(token),
    }))
}
