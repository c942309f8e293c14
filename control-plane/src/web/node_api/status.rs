//! `POST /node/v1/status`: a node's upstream status report; the answer carries the fleet's running cool-downs.

use actix_web::{HttpResponse, web};
use chrono::Utc;
use switchyard_shared::protocol::NodeStatus;

use crate::domain::nodes::NodeId;
use crate::web::AppState;
use crate::web::error::ApiError;

#[tracing::instrument(name = "node.status", skip_all, fields(node_id = %status.node_id, targets = status.targets.len()))]
pub async fn report(state: web::Data<AppState>, status: web::Json<NodeStatus>) -> Result<HttpResponse, ApiError> {
    NodeId::parse(&status.node_id)?;
    Ok(HttpResponse::Ok().json(state.upstream.record(status.into_inner(), Utc::now())))
}
