//! Invoices and their reconciliation: `GET /api/v1/teams/{id}/invoices/{yyyy-mm}` (JSON), the same with `.csv`,
//! and `GET /api/v1/reconciliation?month=yyyy-mm`. Operators and finance read every team; team admins their own.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::domain::invoices::{self, Month};
use crate::domain::memberships::TeamRole;
use crate::web::AppState;
use crate::web::auth::ApiCaller;
use crate::web::error::ApiError;

async fn draft(state: &AppState, caller: &ApiCaller, id: i64, month: &str) -> Result<invoices::Invoice, ApiError> {
    caller.visible_team(id)?;
    caller.require(caller.sees_all_teams() || caller.team_role(id) == Some(TeamRole::Admin))?;
    Ok(invoices::draft(&state.store, id, Month::parse(month)?).await?)
}

#[tracing::instrument(name = "invoices.get", skip_all, fields(team_id = path.0))]
pub async fn get(
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<(i64, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, month) = path.into_inner();
    Ok(HttpResponse::Ok().json(draft(&state, &caller, id, &month).await?))
}

#[tracing::instrument(name = "invoices.csv", skip_all, fields(team_id = path.0))]
pub async fn csv(
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<(i64, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, month) = path.into_inner();
    let invoice = draft(&state, &caller, id, &month).await?;
    let name = format!("attachment; filename=\"invoice-{id}-{}.csv\"", invoice.month);
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(("Content-Disposition", name))
        .body(invoices::to_csv(&invoice)))
}

#[derive(Debug, Deserialize)]
pub struct MonthQuery {
    month: Option<String>,
}

#[tracing::instrument(name = "invoices.reconcile", skip_all)]
pub async fn reconcile(
    state: web::Data<AppState>,
    caller: ApiCaller,
    query: web::Query<MonthQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(caller.sees_all_teams())?;
    let month = query.month.as_deref().ok_or_else(|| ApiError::BadRequest("pass `month=yyyy-mm`".into()))?;
    Ok(HttpResponse::Ok().json(invoices::reconcile(&state.store, Month::parse(month)?).await?))
}
