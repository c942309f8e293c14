//! `/api/v1/models/{id}/prices`: a model's price versions (list, add).

use actix_web::{HttpResponse, web};

use crate::domain::prices::{self, NewPriceVersion};
use crate::web::AppState;
use crate::web::auth::OperatorAuth;
use crate::web::error::ApiError;

#[tracing::instrument(name = "prices.create", skip_all, fields(model_id = *id, actor = %op.prefix))]
pub async fn create(
    state: web::Data<AppState>,
    op: OperatorAuth,
    id: web::Path<i64>,
    body: web::Json<NewPriceVersion>,
) -> Result<HttpResponse, ApiError> {
    let version = prices::create(&state.store, &op.actor(), *id, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(version))
}

#[tracing::instrument(name = "prices.list", skip_all, fields(model_id = *id))]
pub async fn list(state: web::Data<AppState>, _op: OperatorAuth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(prices::list(&state.store, *id).await?))
}
