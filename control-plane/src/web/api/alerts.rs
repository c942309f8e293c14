//! `GET /api/v1/alerts?team_id=&limit=`: budget alerts, newest first.

use actix_web::{HttpResponse, web};

use crate::domain::limits::{self, AlertFilter};
use crate::web::AppState;
use crate::web::auth::OperatorAuth;
use crate::web::error::ApiError;

#[tracing::instrument(name = "alerts.list", skip_all, fields(team_id = ?filter.team_id))]
pub async fn list(
    state: web::Data<AppState>,
    _op: OperatorAuth,
    filter: web::Query<AlertFilter>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(limits::alerts(&state.store, filter.into_inner()).await?))
}
