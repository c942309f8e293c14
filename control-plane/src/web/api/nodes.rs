//! `GET /api/v1/nodes`: the nodes that polled, which version each applied, and whether it lags.

use actix_web::{HttpResponse, web};

use crate::domain::nodes;
use crate::web::AppState;
use crate::web::auth::OperatorAuth;
use crate::web::error::ApiError;

#[tracing::instrument(name = "nodes.list", skip_all)]
pub async fn list(state: web::Data<AppState>, _op: OperatorAuth) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(nodes::list(&state.store).await?))
}
