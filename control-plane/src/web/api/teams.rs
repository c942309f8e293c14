//! `/api/v1/teams`: create, list, show.

use actix_web::{HttpResponse, web};

use crate::domain::teams::{self, NewTeam};
use crate::web::AppState;
use crate::web::auth::OperatorAuth;
use crate::web::error::ApiError;

#[tracing::instrument(name = "teams.create", skip_all, fields(actor = %op.prefix))]
pub async fn create(
    state: web::Data<AppState>,
    op: OperatorAuth,
    body: web::Json<NewTeam>,
) -> Result<HttpResponse, ApiError> {
    let team = teams::create(&state.store, &op.actor(), body.into_inner()).await?;
    Ok(HttpResponse::Created().json(team))
}

#[tracing::instrument(name = "teams.list", skip_all)]
pub async fn list(state: web::Data<AppState>, _op: OperatorAuth) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(teams::list(&state.store).await?))
}

#[tracing::instrument(name = "teams.get", skip_all, fields(team_id = *id))]
pub async fn get(state: web::Data<AppState>, _op: OperatorAuth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(teams::get(&state.store, *id).await?))
}
