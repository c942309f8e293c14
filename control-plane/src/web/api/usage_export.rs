//! `GET /api/v1/usage/export.csv?month=yyyy-mm[&team_id=N]` (or `from`/`to`, RFC 3339, instead of `month`): the raw
//! usage records of a period as CSV, one row per record, streamed a page at a time
//! ([`crate::domain::usage_export`]) so a month of millions of records is sent in constant memory. Operators and
//! finance export every team or one; a team admin names her own team.

use std::time::Instant;

use actix_web::{HttpResponse, web};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::stream;
use serde::Deserialize;

use crate::domain::memberships::TeamRole;
use crate::domain::usage_export::{Export, ExportRange, PAGE_ROWS};
use crate::web::AppState;
use crate::web::auth::ApiCaller;
use crate::web::error::ApiError;

#[derive(Debug, Deserialize)]
pub struct ExportQuery {
    month: Option<String>,
    team_id: Option<i64>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

#[tracing::instrument(name = "usage.export_csv", skip_all, fields(team_id = ?query.team_id))]
pub async fn csv(
    state: web::Data<AppState>,
    caller: ApiCaller,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    match q.team_id {
        Some(team_id) => {
            caller.visible_team(team_id)?;
            caller.require(caller.sees_all_teams() || caller.team_role(team_id) == Some(TeamRole::Admin))?;
        }
        None if caller.sees_all_teams() => {}
        None => return Err(ApiError::BadRequest("pass `team_id`: your role exports one team at a time".into())),
    }
    let (range, name) = match (q.month.as_deref(), q.from, q.to) {
        (Some(month), None, None) => {
            (ExportRange::month(state.store.reporting_zone, month, q.team_id)?, month.to_owned())
        }
        (None, Some(from), Some(to)) => {
            let name = format!("{}_{}", from.format("%Y%m%dT%H%M%SZ"), to.format("%Y%m%dT%H%M%SZ"));
            (ExportRange::between(from, to, q.team_id)?, name)
        }
        _ => return Err(ApiError::BadRequest("pass either `month=yyyy-mm` or both `from` and `to` (RFC 3339)".into())),
    };
    let param = if q.month.is_some() { "month" } else { "from" };
    range.ensure_retained(&state.store.db, state.store.reporting_zone, param).await?;
    let mut export = Export::begin(&state.store.db, range, PAGE_ROWS).await?;
    // The first page before the headers, so a failing query is still an error response, not a cut-off file.
    let first = export.next_chunk().await?;
    let team = q.team_id.map(|t| format!("-team-{t}")).unwrap_or_default();
    let disposition = format!("attachment; filename=\"usage-{name}{team}.csv\"");
    let started = Instant::now();
    let body = stream::unfold((first, Some(export)), move |(pending, export)| async move {
        let mut export = export?;
        let chunk = match pending {
            Some(chunk) => Ok(Some(chunk)),
            None => export.next_chunk().await,
        };
        match chunk {
            Ok(Some(chunk)) => Some((Ok(Bytes::from(chunk)), (None, Some(export)))),
            Ok(None) => {
                tracing::info!(
                    rows = export.rows(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "usage export sent"
                );
                None
            }
            // Ends the response without its last chunk, so the client sees a broken transfer, never a short file.
            Err(e) => {
                tracing::error!(rows = export.rows(), error = %e, "usage export failed part-way");
                Some((Err(ApiError::from(e)), (None, None)))
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(("Content-Disposition", disposition))
        .streaming(body))
}
