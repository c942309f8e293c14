//! `/console/audit`: the audit log (operators only), newest first, searchable by who, action or target and
//! paginated by id: who changed what, when, and from which address.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::error::PageError;
use super::format;
use super::session::Viewer;
use super::view::{self, Chrome};
use crate::domain::listing::{self, Search};
use crate::web::AppState;

const PAGE_SIZE: u64 = 50;

#[derive(Template)]
#[template(path = "audit/list.html")]
pub struct AuditView {
    pub chrome: Chrome,
    pub q: String,
    pub rows: Vec<AuditRow>,
    /// The link to the next (older) page, keeping the search.
    pub older: Option<String>,
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
    q: Option<String>,
    #[serde(default)]
    before_id: Option<i64>,
}

pub async fn list(
    state: web::Data<AppState>,
    viewer: Viewer,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, PageError> {
    viewer.require(viewer.is_operator())?;
    let q = Search::new(query.q.as_deref().unwrap_or_default());
    let rows = listing::audit(&state.store, &q, query.before_id, PAGE_SIZE).await?;
    let older = (rows.len() as u64 == PAGE_SIZE).then(|| rows.last().map(|r| r.id)).flatten().map(|id| {
        let query =
            serde_urlencoded::to_string([("q", q.as_str()), ("before_id", &id.to_string())]).unwrap_or_default();
        format!("/console/audit?{query}")
    });
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
    view::ok(&AuditView { chrome: Chrome::new(&viewer, "audit"), q: q.as_str().to_owned(), rows, older })
}
