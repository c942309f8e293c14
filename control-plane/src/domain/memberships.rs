//! Team memberships: a user belongs to any number of teams, each with a team role. Team admins manage their
//! team's members and keys; members manage their own keys; viewers read.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, ConnectionTrait, EntityTrait as _, IntoActiveModel as _, QueryFilter as _,
    QueryOrder as _, Set,
};
use serde::Serialize;

use super::audit::{self, Actor, AuditEntry};
use super::change::begin_write;
use super::{DomainError, Store};
use crate::entities::{team_members, teams, users};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum TeamRole {
    Admin,
    Member,
    Viewer,
}

impl TeamRole {
    pub const ALL: [Self; 3] = [Self::Admin, Self::Member, Self::Viewer];

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s {
            "admin" => Ok(Self::Admin),
            "member" => Ok(Self::Member),
            "viewer" => Ok(Self::Viewer),
            _ => Err(DomainError::invalid("team_role", "team role must be admin, member or viewer")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
            Self::Viewer => "viewer",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Admin => "Team admin",
            Self::Member => "Member",
            Self::Viewer => "Viewer",
        }
    }
}

/// A team a user belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub team_id: i64,
    pub team_name: String,
    pub role: TeamRole,
}

/// A member of a team as the team page lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: i64,
    pub email: String,
    pub role: TeamRole,
    pub disabled: bool,
}

/// The teams of a user with the role in each, by team id.
pub async fn of_user(conn: &impl ConnectionTrait, user_id: i64) -> Result<Vec<(i64, TeamRole)>, DomainError> {
    let rows = team_members::Entity::find()
        .filter(team_members::Column::UserId.eq(user_id))
        .order_by_asc(team_members::Column::TeamId)
        .all(conn)
        .await?;
    // A row with an unknown role grants nothing.
    Ok(rows.into_iter().filter_map(|m| TeamRole::parse(&m.role).ok().map(|r| (m.team_id, r))).collect())
}

pub async fn teams_of_user(store: &Store, user_id: i64) -> Result<Vec<Membership>, DomainError> {
    let mut out = Vec::new();
    for (team_id, role) in of_user(&store.db, user_id).await? {
        if let Some(team) = teams::Entity::find_by_id(team_id).one(&store.db).await? {
            out.push(Membership { team_id, team_name: team.name, role });
        }
    }
    Ok(out)
}

pub async fn members(store: &Store, team_id: i64) -> Result<Vec<Member>, DomainError> {
    let rows = team_members::Entity::find()
        .filter(team_members::Column::TeamId.eq(team_id))
        .order_by_asc(team_members::Column::Id)
        .all(&store.db)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for m in rows {
        let Ok(role) = TeamRole::parse(&m.role) else { continue };
        if let Some(u) = users::Entity::find_by_id(m.user_id).one(&store.db).await? {
            out.push(Member { user_id: u.id, email: u.email, role, disabled: u.disabled_at.is_some() });
        }
    }
    Ok(out)
}

/// Adds a membership inside the caller's transaction; an existing membership keeps the higher of both roles.
pub async fn add(conn: &impl ConnectionTrait, team_id: i64, user_id: i64, role: TeamRole) -> Result<(), DomainError> {
    let existing = team_members::Entity::find()
        .filter(team_members::Column::TeamId.eq(team_id))
        .filter(team_members::Column::UserId.eq(user_id))
        .one(conn)
        .await?;
    match existing {
        Some(m) => {
            let current = TeamRole::parse(&m.role).unwrap_or(TeamRole::Viewer);
            if role < current {
                let mut active = m.into_active_model();
                active.role = Set(role.as_str().to_owned());
                active.update(conn).await?;
            }
        }
        None => {
            team_members::ActiveModel {
                team_id: Set(team_id),
                user_id: Set(user_id),
                role: Set(role.as_str().to_owned()),
                created_at: Set(Utc::now()),
                ..Default::default()
            }
            .insert(conn)
            .await?;
        }
    }
    Ok(())
}

pub async fn set_role(
    store: &Store,
    actor: &Actor,
    team_id: i64,
    user_id: i64,
    role: TeamRole,
) -> Result<(), DomainError> {
    let txn = begin_write(&store.db).await?;
    let row = team_members::Entity::find()
        .filter(team_members::Column::TeamId.eq(team_id))
        .filter(team_members::Column::UserId.eq(user_id))
        .one(&txn)
        .await?
        .ok_or(DomainError::NotFound("member"))?;
    let mut active = row.into_active_model();
    active.role = Set(role.as_str().to_owned());
    active.update(&txn).await?;
    let detail = serde_json::json!({ "team_id": team_id, "user_id": user_id, "role": role.as_str() });
    audit::record(&txn, actor, AuditEntry::new("member.role", "team", team_id, detail), Utc::now()).await?;
    txn.commit().await?;
    Ok(())
}

pub async fn remove(store: &Store, actor: &Actor, team_id: i64, user_id: i64) -> Result<(), DomainError> {
    let txn = begin_write(&store.db).await?;
    let deleted = team_members::Entity::delete_many()
        .filter(team_members::Column::TeamId.eq(team_id))
        .filter(team_members::Column::UserId.eq(user_id))
        .exec(&txn)
        .await?;
    if deleted.rows_affected == 0 {
        return Err(DomainError::NotFound("member"));
    }
    let detail = serde_json::json!({ "team_id": team_id, "user_id": user_id });
    audit::record(&txn, actor, AuditEntry::new("member.remove", "team", team_id, detail), Utc::now()).await?;
    txn.commit().await?;
    Ok(())
}
