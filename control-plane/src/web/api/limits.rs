//! `/api/v1/teams/{id}/limits` and `/api/v1/keys/{id}/limits`: view (anyone who sees the team), replace (`PUT`)
//! and clear (`DELETE`) — operators only: limits are what the operator grants.

use actix_web::{HttpResponse, web};
use switchyard_shared::limits::Limits;
use switchyard_shared::snapshot::LimitScope;

use crate::domain::{DomainError, keys, limits};
use crate::web::AppState;
use crate::web::auth::ApiCaller;
use crate::web::error::ApiError;

/// Refuses a key of a team the caller cannot see as "not found".
async fn visible_key(state: &AppState, caller: &ApiCaller, key_id: i64) -> Result<(), ApiError> {
    let key = keys::get(&state.store, key_id).await?;
    if caller.can_view_team(key.team_id) { Ok(()) } else { Err(DomainError::NotFound("key").into()) }
}

#[tracing::instrument(name = "limits.get_team", skip_all, fields(team_id = *id))]
pub async fn get_team(
    state: web::Data<AppState>,
    caller: ApiCaller,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.visible_team(*id)?;
    Ok(HttpResponse::Ok().json(limits::get(&state.store, LimitScope::Team, *id).await?))
}

#[tracing::instrument(name = "limits.set_team", skip_all, fields(team_id = *id, actor = %caller.token_prefix))]
pub async fn set_team(
    state: web::Data<AppState>,
    caller: ApiCaller,
    id: web::Path<i64>,
    body: web::Json<Limits>,
) -> Result<HttpResponse, ApiError> {
    caller.visible_team(*id)?;
    caller.require(caller.is_operator())?;
    let view = limits::set(&state.store, &caller.actor(), LimitScope::Team, *id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(view))
}

#[tracing::instrument(name = "limits.clear_team", skip_all, fields(team_id = *id, actor = %caller.token_prefix))]
pub async fn clear_team(
    state: web::Data<AppState>,
    caller: ApiCaller,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.visible_team(*id)?;
    caller.require(caller.is_operator())?;
    limits::set(&state.store, &caller.actor(), LimitScope::Team, *id, Limits::default()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[tracing::instrument(name = "limits.get_key", skip_all, fields(key_id = *id))]
pub async fn get_key(
    state: web::Data<AppState>,
    caller: ApiCaller,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    visible_key(&state, &caller, *id).await?;
    Ok(HttpResponse::Ok().json(limits::get(&state.store, LimitScope::Key, *id).await?))
}

#[tracing::instrument(name = "limits.set_key", skip_all, fields(key_id = *id, actor = %caller.token_prefix))]
pub async fn set_key(
    state: web::Data<AppState>,
    caller: ApiCaller,
    id: web::Path<i64>,
    body: web::Json<Limits>,
) -> Result<HttpResponse, ApiError> {
    visible_key(&state, &caller, *id).await?;
    caller.require(caller.is_operator())?;
    let view = limits::set(&state.store, &caller.actor(), LimitScope::Key, *id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(view))
}

#[tracing::instrument(name = "limits.clear_key", skip_all, fields(key_id = *id, actor = %caller.token_prefix))]
pub async fn clear_key(
    state: web::Data<AppState>,
    caller: ApiCaller,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    visible_key(&state, &caller, *id).await?;
    caller.require(caller.is_operator())?;
    limits::set(&state.store, &caller.actor(), LimitScope::Key, *id, Limits::default()).await?;
    Ok(HttpResponse::NoContent().finish())
}
