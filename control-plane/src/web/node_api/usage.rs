//! `POST /node/v1/usage`: stores a usage batch and acknowledges only once it is committed.

use actix_web::{HttpResponse, web};
use switchyard_shared::UsageBatch;

use crate::domain::usage;
use crate::web::AppState;
use crate::web::error::ApiError;

#[tracing::instrument(name = "node.usage", skip_all, fields(node_id = %batch.node_id, records = batch.records.len()))]
pub async fn ingest(state: web::Data<AppState>, batch: web::Json<UsageBatch>) -> Result<HttpResponse, ApiError> {
    let ack = usage::ingest(&state.store, batch.into_inner()).await?;
    Ok(HttpResponse::Ok().json(ack))
}
