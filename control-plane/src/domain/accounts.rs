//! Console accounts: people who sign in with an email and a password (argon2id), their platform role, login
//! with throttling after repeated failures, password change, and disabling. Changing a password or disabling a
//! user bumps the user's session version, which ends every console session issued before.

use std::sync::OnceLock;

use argon2::{Argon2, PasswordHash, PasswordVerifier as _};
use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, EntityTrait as _, IntoActiveModel as _, QueryFilter as _, QueryOrder as _,
    Set,
};
use serde::Serialize;

use super::audit::{self, Actor, AuditEntry};
use super::bootstrap::hash_password;
use super::change::begin_write;
use super::{DomainError, Store};
use crate::entities::{login_throttle, users};

pub const MIN_PASSWORD_LEN: usize = 12;
const MAX_PASSWORD_LEN: usize = 1024;
const MAX_EMAIL_LEN: usize = 254;

/// What a user may do across the whole platform; team rights come from memberships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PlatformRole {
    /// Everything.
    Operator,
    /// Reads usage and spend of every team; changes nothing.
    Finance,
    /// Nothing beyond the teams the user belongs to.
    Member,
}

impl PlatformRole {
    pub const ALL: [Self; 3] = [Self::Operator, Self::Finance, Self::Member];

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s {
            "operator" => Ok(Self::Operator),
            "finance" => Ok(Self::Finance),
            "member" => Ok(Self::Member),
            _ => Err(DomainError::invalid("platform_role", "platform role must be operator, finance or member")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Finance => "finance",
            Self::Member => "member",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Operator => "Platform operator",
            Self::Finance => "Finance",
            Self::Member => "Team member",
        }
    }
}

/// An email address as accounts use it: trimmed, lowercased, `local@domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let s = s.trim().to_lowercase();
        let ok = s.len() <= MAX_EMAIL_LEN
            && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            && s.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && !domain.is_empty() && !domain.contains('@') && !domain.starts_with('.')
            });
        if ok {
            Ok(Self(s))
        } else {
            Err(DomainError::invalid("email", "enter an email address like name@example.com"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub role: PlatformRole,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub session_version: i64,
}

impl From<users::Model> for User {
    fn from(m: users::Model) -> Self {
        Self {
            // An unknown stored role grants nothing beyond memberships.
            role: PlatformRole::parse(&m.role).unwrap_or(PlatformRole::Member),
            id: m.id,
            email: m.email,
            created_at: m.created_at,
            disabled_at: m.disabled_at,
            session_version: m.session_version,
        }
    }
}

/// A new password must be long enough and typed twice the same.
pub fn check_new_password(password: &str, confirm: &str) -> Result<(), DomainError> {
    let len = password.chars().count();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&len) {
        return Err(DomainError::invalid(
            "new_password",
            format!("the password must be at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    if password != confirm {
        return Err(DomainError::invalid("confirm_password", "the two passwords differ"));
    }
    Ok(())
}

/// argon2id, off the async runtime.
pub async fn hash(password: &str) -> Result<String, DomainError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| DomainError::Internal(e.to_string()))?
}

/// Checks `password` against a PHC string, off the async runtime. A malformed hash never matches.
pub async fn verify(phc: &str, password: &str) -> Result<bool, DomainError> {
    let (phc, password) = (phc.to_owned(), password.to_owned());
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
    })
    .await
    .map_err(|e| DomainError::Internal(e.to_string()))
}

/// A hash of nothing anyone knows: verified against when the email has no account, so that the answer takes
/// as long as for a real account.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy password that matches nothing").unwrap_or_default())
}

/// When repeated failures lock an address out. Time is a parameter of [`login`], so tests need not wait.
#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    pub max_failures: i32,
    pub window: Duration,
    pub lockout: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self { max_failures: 5, window: Duration::minutes(15), lockout: Duration::minutes(15) }
    }
}

#[derive(Debug)]
pub enum LoginOutcome {
    Ok(User),
    /// Wrong email or password, or a disabled account: the caller cannot tell which.
    Invalid,
    /// Too many recent failures for this address.
    Throttled {
        retry_after: Duration,
    },
}

pub async fn login(
    store: &Store,
    email: &str,
    password: &str,
    now: DateTime<Utc>,
    policy: ThrottlePolicy,
) -> Result<LoginOutcome, DomainError> {
    let key: String = email.trim().to_lowercase().chars().take(MAX_EMAIL_LEN).collect();
    let throttle = login_throttle::Entity::find_by_id(key.clone()).one(&store.db).await?;
    if let Some(until) = throttle.as_ref().and_then(|t| t.locked_until).filter(|u| *u > now) {
        return Ok(LoginOutcome::Throttled { retry_after: until - now });
    }
    let user = users::Entity::find().filter(users::Column::Email.eq(key.clone())).one(&store.db).await?;
    let matches = match &user {
        Some(u) => verify(&u.password_hash, password).await?,
        None => {
            verify(decoy_hash(), password).await?;
            false
        }
    };
    match user {
        Some(u) if matches && u.disabled_at.is_none() => {
            if throttle.is_some() {
                login_throttle::Entity::delete_by_id(key).exec(&store.db).await?;
            }
            Ok(LoginOutcome::Ok(u.into()))
        }
        _ => {
            record_failure(store, key, throttle, now, policy).await?;
            Ok(LoginOutcome::Invalid)
        }
    }
}

async fn record_failure(
    store: &Store,
    key: String,
    previous: Option<login_throttle::Model>,
    now: DateTime<Utc>,
    policy: ThrottlePolicy,
) -> Result<(), DomainError> {
    let (failures, window_started_at) = match &previous {
        Some(t) if now - t.window_started_at < policy.window => (t.failures.saturating_add(1), t.window_started_at),
        _ => (1, now),
    };
    let locked_until = (failures >= policy.max_failures).then(|| now + policy.lockout);
    if failures >= policy.max_failures {
        tracing::warn!(email = %key, failures, "console login locked after repeated failures");
    }
    let row = login_throttle::ActiveModel {
        email: Set(key),
        failures: Set(if locked_until.is_some() { 0 } else { failures }),
        window_started_at: Set(window_started_at),
        locked_until: Set(locked_until),
    };
    if previous.is_some() {
        row.update(&store.db).await?;
    } else if let Err(e) = row.insert(&store.db).await {
        // Two failures at once for a new address: one insert wins, which is all the throttle needs.
        tracing::debug!(error = %e, "concurrent login failure");
    }
    Ok(())
}

pub async fn get(store: &Store, id: i64) -> Result<User, DomainError> {
    users::Entity::find_by_id(id).one(&store.db).await?.map(User::from).ok_or(DomainError::NotFound("user"))
}

pub async fn find_by_email(store: &Store, email: &Email) -> Result<Option<User>, DomainError> {
    Ok(users::Entity::find().filter(users::Column::Email.eq(email.as_str())).one(&store.db).await?.map(User::from))
}

pub async fn list(store: &Store) -> Result<Vec<User>, DomainError> {
    let rows = users::Entity::find().order_by_asc(users::Column::Id).all(&store.db).await?;
    Ok(rows.into_iter().map(User::from).collect())
}

/// Changes a user's own password after checking the current one; every other session of the user ends.
pub async fn change_password(
    store: &Store,
    actor: &Actor,
    user_id: i64,
    current: &str,
    new: &str,
    confirm: &str,
) -> Result<User, DomainError> {
    let row = users::Entity::find_by_id(user_id).one(&store.db).await?.ok_or(DomainError::NotFound("user"))?;
    if !verify(&row.password_hash, current).await? {
        return Err(DomainError::invalid("current_password", "the current password is not correct"));
    }
    check_new_password(new, confirm)?;
    let hashed = hash(new).await?;
    let txn = begin_write(&store.db).await?;
    let version = row.session_version.saturating_add(1);
    let mut active = row.into_active_model();
    active.password_hash = Set(hashed);
    active.session_version = Set(version);
    let row = active.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        AuditEntry::new("user.password_change", "user", row.id, serde_json::json!({})),
        Utc::now(),
    )
    .await?;
    txn.commit().await?;
    Ok(row.into())
}

/// Disables (ending every session and token of the user) or re-enables an account. Nobody disables themselves.
pub async fn set_disabled(
    store: &Store,
    actor: &Actor,
    by_user: i64,
    user_id: i64,
    disabled: bool,
) -> Result<User, DomainError> {
    if by_user == user_id && disabled {
        return Err(DomainError::invalid("user", "you cannot disable your own account"));
    }
    let txn = begin_write(&store.db).await?;
    let row = users::Entity::find_by_id(user_id).one(&txn).await?.ok_or(DomainError::NotFound("user"))?;
    let version = row.session_version.saturating_add(1);
    let mut active = row.into_active_model();
    active.disabled_at = Set(disabled.then(Utc::now));
    active.session_version = Set(version);
    let row = active.update(&txn).await?;
    let action = if disabled { "user.disable" } else { "user.enable" };
    audit::record(
        &txn,
        actor,
        AuditEntry::new(action, "user", row.id, serde_json::json!({ "email": row.email })),
        Utc::now(),
    )
    .await?;
    txn.commit().await?;
    Ok(row.into())
}
