//! `/api/v1/teams/{id}/keys`, `/api/v1/keys/{id}/revoke` and `/api/v1/keys/{id}/rotate`. The plaintext key
//! appears only in the answer to issuing or rotating it. Members of a team issue keys and manage their own;
//! team admins and operators manage every key of the team.

use actix_web::{HttpResponse, web};
use chrono::Utc;

use crate::domain::key_owners;
use crate::domain::keys::{self, Key, NewKey, Rotation};
use crate::web::AppState;
use crate::web::auth::ApiCaller;
use crate::web::error::ApiError;

#[tracing::instrument(name = "keys.issue", skip_all, fields(team_id = *team_id, actor = %caller.token_prefix))]
pub async fn issue(
    state: web::Data<AppState>,
    caller: ApiCaller,
    team_id: web::Path<i64>,
    body: web::Json<NewKey>,
) -> Result<HttpResponse, ApiError> {
    caller.visible_team(*team_id)?;
    caller.require(caller.can_use_keys(*team_id))?;
    let issued = keys::issue(&state.store, &caller.actor(), *team_id, body.into_inner()).await?;
    key_owners::record(&state.store, issued.key.id, caller.user.id).await?;
    Ok(HttpResponse::Created().json(issued))
}

#[tracing::instrument(name = "keys.list", skip_all, fields(team_id = *team_id))]
pub async fn list(
    state: web::Data<AppState>,
    caller: ApiCaller,
    team_id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.visible_team(*team_id)?;
    caller.require(caller.can_use_keys(*team_id) || caller.sees_all_teams())?;
    let mut all = keys::list_for_team(&state.store, *team_id).await?;
    if !caller.sees_every_key(*team_id) && !caller.sees_all_teams() {
        let ids: Vec<i64> = all.iter().map(|k| k.id).collect();
        let owners = key_owners::owners(&state.store, &ids).await?;
        all.retain(|k| owners.get(&k.id) == Some(&caller.user.id));
    }
    Ok(HttpResponse::Ok().json(all))
}

/// The key, if the caller may manage it: a key of a team the caller cannot see is "not found".
async fn manageable(state: &AppState, caller: &ApiCaller, key_id: i64) -> Result<Key, ApiError> {
    let key = keys::get(&state.store, key_id).await?;
    if !caller.can_view_team(key.team_id) {
        return Err(crate::domain::DomainError::NotFound("key").into());
    }
    let owner = key_owners::owners(&state.store, &[key_id]).await?.get(&key_id).copied();
    caller.require(caller.can_revoke_key(key.team_id, owner))?;
    Ok(key)
}

#[tracing::instrument(name = "keys.revoke", skip_all, fields(key_id = *key_id, actor = %caller.token_prefix))]
pub async fn revoke(
    state: web::Data<AppState>,
    caller: ApiCaller,
    key_id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    manageable(&state, &caller, *key_id).await?;
    Ok(HttpResponse::Ok().json(keys::revoke(&state.store, &caller.actor(), *key_id).await?))
}

#[tracing::instrument(name = "keys.rotate", skip_all, fields(key_id = *key_id, actor = %caller.token_prefix))]
pub async fn rotate(
    state: web::Data<AppState>,
    caller: ApiCaller,
    key_id: web::Path<i64>,
    body: web::Json<Rotation>,
) -> Result<HttpResponse, ApiError> {
    manageable(&state, &caller, *key_id).await?;
    let rotated = keys::rotate(&state.store, &caller.actor(), *key_id, body.into_inner(), Utc::now()).await?;
    Ok(HttpResponse::Created().json(rotated))
}
