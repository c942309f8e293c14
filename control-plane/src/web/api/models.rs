//! `/api/v1/models`: create, list, replace, delete.

use actix_web::{HttpResponse, web};

use crate::domain::models::{self, ModelInput};
use crate::web::AppState;
use crate::web::auth::OperatorAuth;
use crate::web::error::ApiError;

#[tracing::instrument(name = "models.create", skip_all, fields(actor = %op.prefix))]
pub async fn create(
    state: web::Data<AppState>,
    op: OperatorAuth,
    body: web::Json<ModelInput>,
) -> Result<HttpResponse, ApiError> {
    let model = models::create(&state.store, &op.actor(), body.into_inner()).await?;
    Ok(HttpResponse::Created().json(model))
}

#[tracing::instrument(name = "models.list", skip_all)]
pub async fn list(state: web::Data<AppState>, _op: OperatorAuth) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(models::list(&state.store).await?))
}

#[tracing::instrument(name = "models.replace", skip_all, fields(model_id = *id, actor = %op.prefix))]
pub async fn replace(
    state: web::Data<AppState>,
    op: OperatorAuth,
    id: web::Path<i64>,
    body: web::Json<ModelInput>,
) -> Result<HttpResponse, ApiError> {
    let model = models::replace(&state.store, &op.actor(), *id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(model))
}

#[tracing::instrument(name = "models.delete", skip_all, fields(model_id = *id, actor = %op.prefix))]
pub async fn delete(
    state: web::Data<AppState>,
    op: OperatorAuth,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    models::delete(&state.store, &op.actor(), *id).await?;
    Ok(HttpResponse::NoContent().finish())
}
