//! Invoices and their reconciliation: `GET /api/v1/teams/{id}/invoices/{yyyy-mm}` (JSON; the issued document once
//! issued, the live draft before), the same with `.csv`, `POST …/{yyyy-mm}/issue`, `GET /api/v1/invoices?month=`
//! and `GET /api/v1/reconciliation?month=yyyy-mm`. Operators and finance read every team and issue; team admins
//! read their own teams' invoices; a team the caller cannot see is 404.

use actix_web::{HttpResponse, web};
use chrono::Utc;
use serde::Deserialize;

use crate::domain::invoices::{self, Month};
use crate::domain::memberships::TeamRole;
use crate::web::AppState;
use crate::web::auth::ApiCaller;
use crate::web::error::ApiError;

async fn draft(state: &AppState, caller: &ApiCaller, id: i64, month: &str) -> Result<invoices::Invoice, ApiError> {
    caller.visible_team(id)?;
    caller.require(caller.sees_all_teams() || caller.team_role(id) == Some(TeamRole::Admin))?;
    Ok(invoices::get(&state.store, id, Month::parse(month)?).await?)
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

#[tracing::instrument(name = "invoices.issue", skip_all, fields(team_id = path.0, actor = %caller.token_prefix))]
pub async fn issue(
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<(i64, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, month) = path.into_inner();
    caller.visible_team(id)?;
    caller.require(caller.sees_all_teams())?;
    let month = Month::parse(&month)?;
    let issued = invoices::issue(&state.store, &caller.actor(), &caller.user.email, id, month, Utc::now()).await?;
    Ok(HttpResponse::Created().json(issued))
}

#[derive(Debug, Deserialize)]
pub struct MonthQuery {
    month: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    month: Option<String>,
    team_id: Option<i64>,
}

#[tracing::instrument(name = "invoices.list", skip_all)]
pub async fn list(
    state: web::Data<AppState>,
    caller: ApiCaller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let teams: Option<Vec<i64>> = match query.team_id {
        Some(t) => {
            caller.visible_team(t)?;
            caller.require(caller.sees_all_teams() || caller.team_role(t) == Some(TeamRole::Admin))?;
            Some(vec![t])
        }
        None if caller.sees_all_teams() => None,
        None => Some(caller.teams.iter().filter(|(_, r)| **r == TeamRole::Admin).map(|(t, _)| *t).collect()),
    };
    let month = query.month.as_deref().ok_or_else(|| ApiError::BadRequest("pass `month=yyyy-mm`".into()))?;
    let month = Month::parse(month)?;
    Ok(HttpResponse::Ok().json(invoices::list(&state.store, month, teams.as_deref()).await?))
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
