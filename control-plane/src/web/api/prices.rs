//! `/api/v1/models/{id}/prices`: a model's price versions (list: operators and finance; add: operators).

use actix_web::{HttpResponse, web};

use crate::domain::prices::{self, NewPriceVersion};
use crate::web::AppState;
use crate::web::auth::ApiCaller;
use crate::web::error::ApiError;

#[tracing::instrument(name = "prices.create", skip_all, fields(model_id = *id, actor = %caller.token_prefix))]
pub async fn create(
    state: web::Data<AppState>,
    caller: ApiCaller,
    id: web::Path<i64>,
    body: web::Json<NewPriceVersion>,
) -> Result<HttpResponse, ApiError> {
    caller.require(caller.is_operator())?;
    let version = prices::create(&state.store, &caller.actor(), *id, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(version))
}

#[tracing::instrument(name = "prices.list", skip_all, fields(model_id = *id))]
pub async fn list(state: web::Data<AppState>, caller: ApiCaller, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    caller.require(caller.is_operator() || caller.is_finance())?;
    Ok(HttpResponse::Ok().json(prices::list(&state.store, *id).await?))
}
