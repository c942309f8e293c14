//! Invite links: an operator (any platform role) or a team admin (their own team) invites an email address;
//! the link, shown once, lets the invitee set a password — or, when the address already has an account, prove
//! it with the current password — and join. Tokens are stored as SHA-256 and work once, for seven days.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ActiveModelTrait as _, ColumnTrait as _, EntityTrait as _, IntoActiveModel as _, QueryFilter as _, Set};
use switchyard_shared::KeyHash;

use super::access::{Denied, Principal};
use super::accounts::{self, Email, PlatformRole, User};
use super::audit::{self, AuditEntry};
use super::change::begin_write;
use super::memberships::{self, TeamRole};
use super::{DomainError, Store, csrf};
use crate::entities::{invites, teams, users};

pub const INVITE_TTL: Duration = Duration::days(7);

#[derive(Debug, Clone)]
pub struct NewInvite {
    pub email: String,
    pub platform_role: PlatformRole,
    pub team: Option<(i64, TeamRole)>,
}

/// A created invite: the only place its token appears.
#[derive(Clone)]
pub struct IssuedInvite {
    pub id: i64,
    pub email: String,
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for IssuedInvite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedInvite").field("id", &self.id).field("email", &self.email).finish_non_exhaustive()
    }
}

/// An invite that can still be accepted.
#[derive(Debug, Clone)]
pub struct PendingInvite {
    pub email: String,
    pub platform_role: PlatformRole,
    pub team_name: Option<String>,
    pub team_role: Option<TeamRole>,
    pub expires_at: DateTime<Utc>,
    pub account_exists: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum InviteError {
    #[error("not allowed")]
    Denied,
    #[error(transparent)]
    Domain(#[from] DomainError),
}

impl From<Denied> for InviteError {
    fn from(_: Denied) -> Self {
        Self::Denied
    }
}

pub async fn create(
    store: &Store,
    by: &Principal,
    new: NewInvite,
    now: DateTime<Utc>,
) -> Result<IssuedInvite, InviteError> {
    // Only operators grant platform roles or invite without a team; team admins invite into their own team.
    match new.team {
        Some((team_id, _)) => by.require(by.can_manage_members(team_id))?,
        None => by.require(by.is_operator())?,
    }
    by.require(new.platform_role == PlatformRole::Member || by.is_operator())?;
    let email = Email::parse(&new.email)?;
    if let Some((team_id, _)) = new.team
        && teams::Entity::find_by_id(team_id).one(&store.db).await.map_err(DomainError::from)?.is_none()
    {
        return Err(DomainError::NotFound("team").into());
    }
    let token = format!("syinv-{}", csrf::new_token());
    let expires_at = now + INVITE_TTL;
    let txn = begin_write(&store.db).await.map_err(DomainError::from)?;
    let row = invites::ActiveModel {
        token_hash: Set(KeyHash::of(&token).to_hex()),
        email: Set(email.as_str().to_owned()),
        platform_role: Set(new.platform_role.as_str().to_owned()),
        team_id: Set(new.team.map(|t| t.0)),
        team_role: Set(new.team.map(|t| t.1.as_str().to_owned())),
        created_by: Set(by.user.id),
        created_at: Set(now),
        expires_at: Set(expires_at),
        accepted_at: Set(None),
        accepted_by: Set(None),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .map_err(DomainError::from)?;
    let detail = serde_json::json!({
        "email": row.email,
        "platform_role": row.platform_role,
        "team_id": row.team_id,
        "team_role": row.team_role,
    });
    audit::record(&txn, &by.actor(), AuditEntry::new("invite.create", "invite", row.id, detail), now)
        .await
        .map_err(DomainError::from)?;
    txn.commit().await.map_err(DomainError::from)?;
    Ok(IssuedInvite { id: row.id, email: row.email, token, expires_at })
}

async fn live_row(
    conn: &impl sea_orm::ConnectionTrait,
    token: &str,
    now: DateTime<Utc>,
) -> Result<invites::Model, DomainError> {
    invites::Entity::find()
        .filter(invites::Column::TokenHash.eq(KeyHash::of(token).to_hex()))
        .filter(invites::Column::AcceptedAt.is_null())
        .filter(invites::Column::ExpiresAt.gt(now))
        .one(conn)
        .await?
        .ok_or(DomainError::NotFound("invite"))
}

pub async fn find(store: &Store, token: &str, now: DateTime<Utc>) -> Result<PendingInvite, DomainError> {
    let row = live_row(&store.db, token, now).await?;
    let team_name = match row.team_id {
        Some(id) => teams::Entity::find_by_id(id).one(&store.db).await?.map(|t| t.name),
        None => None,
    };
    let account_exists =
        users::Entity::find().filter(users::Column::Email.eq(row.email.clone())).one(&store.db).await?.is_some();
    Ok(PendingInvite {
        platform_role: PlatformRole::parse(&row.platform_role).unwrap_or(PlatformRole::Member),
        team_role: row.team_role.as_deref().and_then(|r| TeamRole::parse(r).ok()),
        email: row.email,
        team_name,
        expires_at: row.expires_at,
        account_exists,
    })
}

/// Accepts an invite: creates the account (or checks the existing one's password), adds the membership, and
/// marks the invite used — all in one transaction.
pub async fn accept(
    store: &Store,
    token: &str,
    password: &str,
    confirm: &str,
    address: Option<&str>,
    now: DateTime<Utc>,
) -> Result<User, DomainError> {
    let pending = live_row(&store.db, token, now).await?;
    let existing = users::Entity::find().filter(users::Column::Email.eq(pending.email.clone())).one(&store.db).await?;
    let new_hash = match &existing {
        Some(u) => {
            if !accounts::verify(&u.password_hash, password).await? {
                return Err(DomainError::invalid("password", "this is not the password of the existing account"));
            }
            None
        }
        None => {
            accounts::check_new_password(password, confirm)?;
            Some(accounts::hash(password).await?)
        }
    };
    let txn = begin_write(&store.db).await?;
    // Checked again under the write lock: an invite works once.
    let row = live_row(&txn, token, now).await?;
    let user = match (existing, new_hash) {
        (Some(u), _) => u,
        (None, Some(hash)) => users::ActiveModel {
            email: Set(row.email.clone()),
            password_hash: Set(hash),
            role: Set(row.platform_role.clone()),
            created_at: Set(now),
            disabled_at: Set(None),
            session_version: Set(0),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(|e| DomainError::on_unique(e, || "an account with this email already exists".to_owned()))?,
        (None, None) => return Err(DomainError::Internal("no password hash for a new account".into())),
    };
    if let (Some(team_id), Some(role)) = (row.team_id, row.team_role.as_deref()) {
        memberships::add(&txn, team_id, user.id, TeamRole::parse(role)?).await?;
    }
    let detail = serde_json::json!({ "invite_id": row.id, "team_id": row.team_id, "team_role": row.team_role });
    let invite_id = row.id;
    let mut active = row.into_active_model();
    active.accepted_at = Set(Some(now));
    active.accepted_by = Set(Some(user.id));
    active.update(&txn).await?;
    let actor = super::audit::Actor::user(&user.email, address);
    audit::record(&txn, &actor, AuditEntry::new("invite.accept", "invite", invite_id, detail), now).await?;
    txn.commit().await?;
    Ok(user.into())
}
