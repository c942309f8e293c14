//! `/console/audit`: the audit log (operators only), newest first, paginated by id: who changed what, when,
//! and from which address.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::error::PageError;
use super::format;
use super::session::Viewer;
use super::view::{self, Chrome};
use crate::domain::audit;
use crate::web::AppState;

const PAGE_SIZE: u64 = 50;

#[derive(Template)]
#[template(path = "audit/list.html")]
pub struct AuditView {
    pub chrome: Chrome,
    pub rows: Vec<AuditRow>,
    pub older: Option<i64>,
}

pub struct AuditRow {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    before_id: Option<i64>,
}

pub async fn list(
    state: web::Data<AppState>,
    viewer: Viewer,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, PageError> {
    viewer.require(viewer.is_operator())?;
    let rows = audit::list(&state.store, query.before_id, PAGE_SIZE).await?;
    let older = (rows.len() as u64 == PAGE_SIZE).then(|| rows.last().map(|r| r.id)).flatten();
    let rows = rows
        .into_iter()
        .map(|r| AuditRow {
            at: format::timestamp(r.at),
            actor: r.actor,
            action: r.action,
            target: format!("{} {}", r.target_type, r.target_id),
            detail: r.detail,
        })
        .collect();
    view::ok(&AuditView { chrome: Chrome::new(&viewer, "audit"), rows, older })
}
