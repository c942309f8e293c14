//! `GET /api/v1/alerts?team_id=&limit=`: budget alerts, newest first. Callers who see every team may omit
//! `team_id`; everyone else names one of their teams.

use actix_web::{HttpResponse, web};

use crate::domain::limits::{self, AlertFilter};
use crate::web::AppState;
use crate::web::auth::ApiCaller;
use crate::web::error::ApiError;

#[tracing::instrument(name = "alerts.list", skip_all, fields(team_id = ?filter.team_id))]
pub async fn list(
    state: web::Data<AppState>,
    caller: ApiCaller,
    filter: web::Query<AlertFilter>,
) -> Result<HttpResponse, ApiError> {
    match filter.team_id {
        Some(team_id) => caller.visible_team(team_id)?,
        None if caller.sees_all_teams() => {}
        None => return Err(ApiError::BadRequest("pass `team_id`: your role reads one team at a time".into())),
    }
    Ok(HttpResponse::Ok().json(limits::alerts(&state.store, filter.into_inner()).await?))
}
