//! `GET /node/v1/snapshot`: answers a snapshot newer than the node's as soon as one exists, or 204 after the
//! node's `wait_secs` (capped at `MAX_WAIT_SECS`). Each poll also records the node's applied version.

use std::time::Duration;

use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, web};
use chrono::Utc;
use switchyard_shared::protocol::{MAX_WAIT_SECS, SNAPSHOT_SHA256_HEADER, SNAPSHOT_VERSION_HEADER, SnapshotPoll};

use crate::domain::nodes::{self, NodeId};
use crate::domain::snapshot::error_chain;
use crate::web::AppState;
use crate::web::error::ApiError;

#[tracing::instrument(name = "node.snapshot", skip_all, fields(node_id = %poll.node_id, applied = poll.applied))]
pub async fn poll(state: web::Data<AppState>, poll: web::Query<SnapshotPoll>) -> Result<HttpResponse, ApiError> {
    let node = NodeId::parse(&poll.node_id)?;
    // Liveness bookkeeping must not stop a node from getting its configuration.
    if let Err(e) = nodes::record_poll(&state.store, &node, poll.applied, Utc::now()).await {
        tracing::warn!(error = %error_chain(&e), "cannot record the node poll");
    }
    let wait = Duration::from_secs(poll.wait_secs.min(MAX_WAIT_SECS));
    match state.feed.newer_than(poll.applied, wait, state.stopping.clone()).await {
        Some(p) => Ok(HttpResponse::Ok()
            .insert_header(ContentType::json())
            .insert_header((SNAPSHOT_SHA256_HEADER, p.sha256.as_str()))
            .insert_header((SNAPSHOT_VERSION_HEADER, p.version.to_string()))
            .body(p.body.clone())),
        None => Ok(HttpResponse::NoContent().finish()),
    }
}
