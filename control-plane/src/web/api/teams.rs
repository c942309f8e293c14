//! `/api/v1/teams`: create and update (operators), list (the teams the caller can see), show.

use actix_web::{HttpResponse, web};

use crate::domain::teams::{self, NewTeam, TeamUpdate};
use crate::web::AppState;
use crate::web::auth::ApiCaller;
use crate::web::error::ApiError;

#[tracing::instrument(name = "teams.create", skip_all, fields(actor = %caller.token_prefix))]
pub async fn create(
    state: web::Data<AppState>,
    caller: ApiCaller,
    body: web::Json<NewTeam>,
) -> Result<HttpResponse, ApiError> {
    caller.require(caller.is_operator())?;
    let team = teams::create(&state.store, &caller.actor(), body.into_inner()).await?;
    Ok(HttpResponse::Created().json(team))
}

#[tracing::instrument(name = "teams.list", skip_all)]
pub async fn list(state: web::Data<AppState>, caller: ApiCaller) -> Result<HttpResponse, ApiError> {
    let mut all = teams::list(&state.store).await?;
    all.retain(|t| caller.can_view_team(t.id));
    Ok(HttpResponse::Ok().json(all))
}

#[tracing::instrument(name = "teams.get", skip_all, fields(team_id = *id))]
pub async fn get(state: web::Data<AppState>, caller: ApiCaller, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    caller.visible_team(*id)?;
    Ok(HttpResponse::Ok().json(teams::get(&state.store, *id).await?))
}

#[tracing::instrument(name = "teams.update", skip_all, fields(team_id = *id, actor = %caller.token_prefix))]
pub async fn update(
    state: web::Data<AppState>,
    caller: ApiCaller,
    id: web::Path<i64>,
    body: web::Json<TeamUpdate>,
) -> Result<HttpResponse, ApiError> {
    caller.visible_team(*id)?;
    caller.require(caller.is_operator())?;
    Ok(HttpResponse::Ok().json(teams::update(&state.store, &caller.actor(), *id, body.into_inner()).await?))
}
