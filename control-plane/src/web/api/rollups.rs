//! `GET /api/v1/usage/rollups/check`: recomputes the usage rollups from the raw records and lists differences.

use actix_web::{HttpResponse, web};

use crate::domain::rollups;
use crate::web::AppState;
use crate::web::auth::ApiCaller;
use crate::web::error::ApiError;

#[tracing::instrument(name = "usage.rollups.check", skip_all)]
pub async fn check(state: web::Data<AppState>, caller: ApiCaller) -> Result<HttpResponse, ApiError> {
    caller.require(caller.is_operator())?;
    let report = rollups::check(&state.store.db, state.store.reporting_zone).await?;
    Ok(HttpResponse::Ok().json(report))
}
