//! `GET /api/v1/usage`: usage records, newest first, with totals over the whole filter. Callers who see every
//! team may omit `team_id`; everyone else names one of their teams.

use actix_web::{HttpResponse, web};

use crate::domain::usage::{self, UsageFilter};
use crate::web::AppState;
use crate::web::auth::ApiCaller;
use crate::web::error::ApiError;

#[tracing::instrument(name = "usage.query", skip_all, fields(team_id = ?filter.team_id))]
pub async fn query(
    state: web::Data<AppState>,
    caller: ApiCaller,
    filter: web::Query<UsageFilter>,
) -> Result<HttpResponse, ApiError> {
    match filter.team_id {
        Some(team_id) => caller.visible_team(team_id)?,
        None if caller.sees_all_teams() => {}
        None => return Err(ApiError::BadRequest("pass `team_id`: your role reads one team at a time".into())),
    }
    Ok(HttpResponse::Ok().json(usage::query(&state.store, filter.into_inner()).await?))
}
