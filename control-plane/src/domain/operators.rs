//! Callers of the admin API: people (`users`) and their bearer tokens (`admin_tokens`, stored as SHA-256) — the
//! bootstrap operator token and the personal access tokens users create in the console. [`authenticate_user`]
//! accepts any live token of an enabled user (the API then applies that user's role and team scope).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
use switchyard_shared::KeyHash;

use super::audit::Actor;
use super::{DomainError, Store};
use crate::entities::{admin_tokens, users};

pub const ROLE_OPERATOR: &str = "operator";
/// `last_used_at` is refreshed at most this often, so that reads do not turn into writes.
const LAST_USED_GRANULARITY_SECS: i64 = 60;

/// An authenticated operator token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub token_id: i64,
    pub user_id: i64,
    pub prefix: String,
}

impl Operator {
    pub fn actor(&self) -> Actor {
        Actor::token(&self.prefix)
    }
}

/// Finds the live token whose hash matches `presented`, of an enabled user of any role; answers the token and
/// its user (read once here, so the caller need not read it again).
pub async fn authenticate_user(
    store: &Store,
    presented: &str,
    now: DateTime<Utc>,
) -> Result<(Operator, super::accounts::User), DomainError> {
    let hash = KeyHash::of(presented).to_hex();
    let token = admin_tokens::Entity::find()
        .filter(admin_tokens::Column::Hash.eq(hash))
        .filter(admin_tokens::Column::RevokedAt.is_null())
        .one(&store.db)
        .await?
        .ok_or(DomainError::Unauthenticated)?;
    let user = users::Entity::find_by_id(token.user_id).one(&store.db).await?.ok_or(DomainError::Unauthenticated)?;
    if user.disabled_at.is_some() {
        return Err(DomainError::Unauthenticated);
    }
    let stale = token.last_used_at.is_none_or(|t| (now - t).num_seconds() >= LAST_USED_GRANULARITY_SECS);
    if stale {
        let touched = admin_tokens::Entity::update_many()
            .col_expr(admin_tokens::Column::LastUsedAt, Expr::val(now))
            .filter(admin_tokens::Column::Id.eq(token.id))
            .exec(&store.db)
            .await;
        if let Err(e) = touched {
            tracing::warn!(error = %e, token_id = token.id, "cannot record token use");
        }
    }
    Ok((Operator { token_id: token.id, user_id: user.id, prefix: token.prefix }, user.into()))
}
