//! `/api/v1/providers`: create, list, update. Credentials go in, never come out.

use actix_web::{HttpResponse, web};

use crate::domain::providers::{self, ProviderInput};
use crate::web::AppState;
use crate::web::auth::OperatorAuth;
use crate::web::error::ApiError;

#[tracing::instrument(name = "providers.create", skip_all, fields(actor = %op.prefix))]
pub async fn create(
    state: web::Data<AppState>,
    op: OperatorAuth,
    body: web::Json<ProviderInput>,
) -> Result<HttpResponse, ApiError> {
    let provider = providers::create(&state.store, &op.actor(), body.into_inner()).await?;
    Ok(HttpResponse::Created().json(provider))
}

#[tracing::instrument(name = "providers.list", skip_all)]
pub async fn list(state: web::Data<AppState>, _op: OperatorAuth) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(providers::list(&state.store).await?))
}

#[tracing::instrument(name = "providers.update", skip_all, fields(provider_id = *id, actor = %op.prefix))]
pub async fn update(
    state: web::Data<AppState>,
    op: OperatorAuth,
    id: web::Path<i64>,
    body: web::Json<ProviderInput>,
) -> Result<HttpResponse, ApiError> {
    let provider = providers::update(&state.store, &op.actor(), *id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(provider))
}
