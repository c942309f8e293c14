//! `/console/nodes`: data-plane nodes (operators only) with their applied snapshot version and last contact;
//! lagging nodes and nodes silent for over a minute stand out.

use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::Utc;

use super::error::PageError;
use super::format;
use super::session::Viewer;
use super::view::{self, Chrome, ListNav, ListQuery};
use crate::domain::{listing, nodes};
use crate::web::AppState;

/// A node that has not polled for this long is shown as silent (a healthy node polls every ~25 s).
const SILENT_AFTER_SECS: i64 = 60;

#[derive(Template)]
#[template(path = "nodes/list.html")]
pub struct NodesView {
    pub chrome: Chrome,
    pub current_version: u64,
    pub nav: ListNav,
    pub rows: Vec<NodeRow>,
    pub lagging: usize,
}

pub struct NodeRow {
    pub id: String,
    pub applied: u64,
    pub lagging: bool,
    pub silent: bool,
    pub last_contact: String,
    pub last_contact_ago: String,
    pub first_seen: String,
}

pub async fn list(
    state: web::Data<AppState>,
    viewer: Viewer,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, PageError> {
    viewer.require(viewer.is_operator())?;
    let q = query.search();
    let (current_version, paged) = listing::nodes(&state.store, &q, query.page()).await?;
    let nav = ListNav::new("/console/nodes", "nodes", "Search by node id", &q, &paged);
    // Lagging nodes are counted over the whole fleet, not only this page.
    let lagging = nodes::list(&state.store).await?.data.iter().filter(|n| n.lagging).count();
    let now = Utc::now();
    let rows: Vec<NodeRow> = paged
        .rows
        .into_iter()
        .map(|n| NodeRow {
            silent: (now - n.last_seen_at).num_seconds() > SILENT_AFTER_SECS,
            last_contact_ago: format::ago(n.last_seen_at, now),
            last_contact: format::timestamp(n.last_seen_at),
            first_seen: format::timestamp(n.first_seen_at),
            id: n.node_id,
            applied: n.applied_version,
            lagging: n.lagging,
        })
        .collect();
    let page = NodesView { chrome: Chrome::new(&viewer, "nodes"), current_version, nav, rows, lagging };
    view::ok(&page)
}
