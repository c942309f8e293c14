//! `GET /api/v1/usage`: usage records, newest first, with totals over the whole filter.

use actix_web::{HttpResponse, web};

use crate::domain::usage::{self, UsageFilter};
use crate::web::AppState;
use crate::web::auth::OperatorAuth;
use crate::web::error::ApiError;

#[tracing::instrument(name = "usage.query", skip_all, fields(team_id = ?filter.team_id))]
pub async fn query(
    state: web::Data<AppState>,
    _op: OperatorAuth,
    filter: web::Query<UsageFilter>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(usage::query(&state.store, filter.into_inner()).await?))
}
