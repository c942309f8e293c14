//! `/api/v1/teams/{id}/limits` and `/api/v1/keys/{id}/limits`: view, replace (`PUT`), clear (`DELETE`).

use actix_web::{HttpResponse, web};
use switchyard_shared::limits::Limits;
use switchyard_shared::snapshot::LimitScope;

use crate::domain::limits;
use crate::web::AppState;
use crate::web::auth::OperatorAuth;
use crate::web::error::ApiError;

#[tracing::instrument(name = "limits.get_team", skip_all, fields(team_id = *id))]
pub async fn get_team(
    state: web::Data<AppState>,
    _op: OperatorAuth,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(limits::get(&state.store, LimitScope::Team, *id).await?))
}

#[tracing::instrument(name = "limits.set_team", skip_all, fields(team_id = *id, actor = %op.prefix))]
pub async fn set_team(
    state: web::Data<AppState>,
    op: OperatorAuth,
    id: web::Path<i64>,
    body: web::Json<Limits>,
) -> Result<HttpResponse, ApiError> {
    let view = limits::set(&state.store, &op.actor(), LimitScope::Team, *id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(view))
}

#[tracing::instrument(name = "limits.clear_team", skip_all, fields(team_id = *id, actor = %op.prefix))]
pub async fn clear_team(
    state: web::Data<AppState>,
    op: OperatorAuth,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    limits::set(&state.store, &op.actor(), LimitScope::Team, *id, Limits::default()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[tracing::instrument(name = "limits.get_key", skip_all, fields(key_id = *id))]
pub async fn get_key(
    state: web::Data<AppState>,
    _op: OperatorAuth,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(limits::get(&state.store, LimitScope::Key, *id).await?))
}

#[tracing::instrument(name = "limits.set_key", skip_all, fields(key_id = *id, actor = %op.prefix))]
pub async fn set_key(
    state: web::Data<AppState>,
    op: OperatorAuth,
    id: web::Path<i64>,
    body: web::Json<Limits>,
) -> Result<HttpResponse, ApiError> {
    let view = limits::set(&state.store, &op.actor(), LimitScope::Key, *id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(view))
}

#[tracing::instrument(name = "limits.clear_key", skip_all, fields(key_id = *id, actor = %op.prefix))]
pub async fn clear_key(
    state: web::Data<AppState>,
    op: OperatorAuth,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    limits::set(&state.store, &op.actor(), LimitScope::Key, *id, Limits::default()).await?;
    Ok(HttpResponse::NoContent().finish())
}
