//! Who may see and do what in the console: a [`Principal`] is a signed-in user with their platform role and
//! team roles, and every page and action asks it before calling the domain. Tenant isolation lives here: a
//! team is visible only to operators, finance (read-only) and its own members.

use std::collections::BTreeMap;

use super::accounts::{self, PlatformRole, User};
use super::audit::Actor;
use super::memberships::{self, TeamRole};
use super::{DomainError, Store};

#[derive(Debug, Clone)]
pub struct Principal {
    pub user: User,
    pub teams: BTreeMap<i64, TeamRole>,
    /// Where the request came from, for the audit log.
    pub address: Option<String>,
}

/// Refused: the caller is signed in but may not do this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied;

impl Principal {
    pub async fn load(store: &Store, user: User, address: Option<String>) -> Result<Self, DomainError> {
        let teams = memberships::of_user(&store.db, user.id).await?.into_iter().collect();
        Ok(Self { user, teams, address })
    }

    /// Reloads a principal by id (after an invite added memberships, for instance).
    pub async fn by_id(store: &Store, user_id: i64, address: Option<String>) -> Result<Self, DomainError> {
        Self::load(store, accounts::get(store, user_id).await?, address).await
    }

    pub fn actor(&self) -> Actor {
        Actor::user(&self.user.email, self.address.as_deref())
    }

    pub fn is_operator(&self) -> bool {
        self.user.role == PlatformRole::Operator
    }

    pub fn is_finance(&self) -> bool {
        self.user.role == PlatformRole::Finance
    }

    /// Operators and finance read every team.
    pub fn sees_all_teams(&self) -> bool {
        matches!(self.user.role, PlatformRole::Operator | PlatformRole::Finance)
    }

    pub fn team_role(&self, team_id: i64) -> Option<TeamRole> {
        self.teams.get(&team_id).copied()
    }

    pub fn can_view_team(&self, team_id: i64) -> bool {
        self.sees_all_teams() || self.teams.contains_key(&team_id)
    }

    pub fn can_manage_members(&self, team_id: i64) -> bool {
        self.is_operator() || self.team_role(team_id) == Some(TeamRole::Admin)
    }

    /// Who sees the key list of a team (members see their own keys only, see [`Principal::sees_every_key`]).
    pub fn can_use_keys(&self, team_id: i64) -> bool {
        self.is_operator() || matches!(self.team_role(team_id), Some(TeamRole::Admin | TeamRole::Member))
    }

    pub fn sees_every_key(&self, team_id: i64) -> bool {
        self.is_operator() || self.team_role(team_id) == Some(TeamRole::Admin)
    }

    /// Whether this user may revoke a key of `team_id` that `owner` issued.
    pub fn can_revoke_key(&self, team_id: i64, owner: Option<i64>) -> bool {
        self.sees_every_key(team_id)
            || (self.team_role(team_id) == Some(TeamRole::Member) && owner == Some(self.user.id))
    }

    pub fn require(&self, allowed: bool) -> Result<(), Denied> {
        if allowed { Ok(()) } else { Err(Denied) }
    }

    /// The team ids this user reads usage of: `None` means every team.
    pub fn usage_scope(&self) -> Option<Vec<i64>> {
        (!self.sees_all_teams()).then(|| self.teams.keys().copied().collect())
    }
}
