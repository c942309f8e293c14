//! `/api/v1/teams/{id}/keys` and `/api/v1/keys/{id}/revoke`. The plaintext key appears only in the answer to
//! issuing it.

use actix_web::{HttpResponse, web};

use crate::domain::keys::{self, NewKey};
use crate::web::AppState;
use crate::web::auth::OperatorAuth;
use crate::web::error::ApiError;

#[tracing::instrument(name = "keys.issue", skip_all, fields(team_id = *team_id, actor = %op.prefix))]
pub async fn issue(
    state: web::Data<AppState>,
    op: OperatorAuth,
    team_id: web::Path<i64>,
    body: web::Json<NewKey>,
) -> Result<HttpResponse, ApiError> {
    let issued = keys::issue(&state.store, &op.actor(), *team_id, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(issued))
}

#[tracing::instrument(name = "keys.list", skip_all, fields(team_id = *team_id))]
pub async fn list(
    state: web::Data<AppState>,
    _op: OperatorAuth,
    team_id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(keys::list_for_team(&state.store, *team_id).await?))
}

#[tracing::instrument(name = "keys.revoke", skip_all, fields(key_id = *key_id, actor = %op.prefix))]
pub async fn revoke(
    state: web::Data<AppState>,
    op: OperatorAuth,
    key_id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(keys::revoke(&state.store, &op.actor(), *key_id).await?))
}
