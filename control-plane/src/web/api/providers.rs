//! `/api/v1/providers`: create, list, update — operators only. Credentials go in, never come out.

use actix_web::{HttpResponse, web};

use crate::domain::provider_presets::{self, FromPreset};
use crate::domain::providers::{self, ProviderInput};
use crate::domain::upstream_status;
use crate::web::AppState;
use crate::web::auth::ApiCaller;
use crate::web::error::ApiError;

#[tracing::instrument(name = "providers.create", skip_all, fields(actor = %caller.token_prefix))]
pub async fn create(
    state: web::Data<AppState>,
    caller: ApiCaller,
    body: web::Json<ProviderInput>,
) -> Result<HttpResponse, ApiError> {
    caller.require(caller.is_operator())?;
    let provider = providers::create(&state.store, &caller.actor(), body.into_inner()).await?;
    Ok(HttpResponse::Created().json(provider))
}

#[tracing::instrument(name = "providers.list", skip_all)]
pub async fn list(state: web::Data<AppState>, caller: ApiCaller) -> Result<HttpResponse, ApiError> {
    caller.require(caller.is_operator())?;
    Ok(HttpResponse::Ok().json(providers::list(&state.store).await?))
}

#[tracing::instrument(name = "providers.update", skip_all, fields(provider_id = *id, actor = %caller.token_prefix))]
pub async fn update(
    state: web::Data<AppState>,
    caller: ApiCaller,
    id: web::Path<i64>,
    body: web::Json<ProviderInput>,
) -> Result<HttpResponse, ApiError> {
    caller.require(caller.is_operator())?;
    let provider = providers::update(&state.store, &caller.actor(), *id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(provider))
}

#[derive(Debug, serde::Deserialize)]
pub struct StatusQuery {
    pub provider_id: Option<i64>,
}

/// Upstream targets' rate-limit state, as the nodes last reported it, next to the configured caps.
#[tracing::instrument(name = "providers.upstream_status", skip_all)]
pub async fn upstream_status(
    state: web::Data<AppState>,
    caller: ApiCaller,
    query: web::Query<StatusQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(caller.is_operator())?;
    let mut status = upstream_status::read(&state.store, &state.upstream).await?;
    if let Some(id) = query.provider_id {
        status.targets.retain(|t| t.provider_id == id);
    }
    Ok(HttpResponse::Ok().json(status))
}

/// The presets an operator can create a provider from (`POST /providers/from-preset`).
#[tracing::instrument(name = "providers.presets", skip_all)]
pub async fn presets(caller: ApiCaller) -> Result<HttpResponse, ApiError> {
    caller.require(caller.is_operator())?;
    Ok(HttpResponse::Ok().json(provider_presets::PRESETS))
}

#[tracing::instrument(name = "providers.create_from_preset", skip_all, fields(preset = %body.preset, actor = %caller.token_prefix))]
pub async fn create_from_preset(
    state: web::Data<AppState>,
    caller: ApiCaller,
    body: web::Json<FromPreset>,
) -> Result<HttpResponse, ApiError> {
    caller.require(caller.is_operator())?;
    let provider = provider_presets::create(&state.store, &caller.actor(), body.into_inner()).await?;
    Ok(HttpResponse::Created().json(provider))
}
