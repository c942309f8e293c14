//! `GET /api/v1/nodes`: the nodes that polled, which version each applied, and whether it lags. Operators only.

use actix_web::{HttpResponse, web};

use crate::domain::nodes;
use crate::web::AppState;
use crate::web::auth::ApiCaller;
use crate::web::error::ApiError;

#[tracing::instrument(name = "nodes.list", skip_all)]
pub async fn list(state: web::Data<AppState>, caller: ApiCaller) -> Result<HttpResponse, ApiError> {
    caller.require(caller.is_operator())?;
    Ok(HttpResponse::Ok().json(nodes::list(&state.store).await?))
}
