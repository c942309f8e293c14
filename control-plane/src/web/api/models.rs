//! `/api/v1/models`: create, replace, delete (operators); list (operators and finance).

use actix_web::{HttpResponse, web};

use crate::domain::models::{self, ModelInput};
use crate::web::AppState;
use crate::web::auth::ApiCaller;
use crate::web::error::ApiError;

#[tracing::instrument(name = "models.create", skip_all, fields(actor = %caller.token_prefix))]
pub async fn create(
    state: web::Data<AppState>,
    caller: ApiCaller,
    body: web::Json<ModelInput>,
) -> Result<HttpResponse, ApiError> {
    caller.require(caller.is_operator())?;
    let model = models::create(&state.store, &caller.actor(), body.into_inner()).await?;
    Ok(HttpResponse::Created().json(model))
}

#[tracing::instrument(name = "models.list", skip_all)]
pub async fn list(state: web::Data<AppState>, caller: ApiCaller) -> Result<HttpResponse, ApiError> {
    caller.require(caller.sees_all_teams())?;
    Ok(HttpResponse::Ok().json(models::list(&state.store).await?))
}

#[tracing::instrument(name = "models.replace", skip_all, fields(model_id = *id, actor = %caller.token_prefix))]
pub async fn replace(
    state: web::Data<AppState>,
    caller: ApiCaller,
    id: web::Path<i64>,
    body: web::Json<ModelInput>,
) -> Result<HttpResponse, ApiError> {
    caller.require(caller.is_operator())?;
    let model = models::replace(&state.store, &caller.actor(), *id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(model))
}

#[tracing::instrument(name = "models.delete", skip_all, fields(model_id = *id, actor = %caller.token_prefix))]
pub async fn delete(
    state: web::Data<AppState>,
    caller: ApiCaller,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(caller.is_operator())?;
    models::delete(&state.store, &caller.actor(), *id).await?;
    Ok(HttpResponse::NoContent().finish())
}
