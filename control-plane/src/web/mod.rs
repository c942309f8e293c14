//! The HTTP surface, actix only: extract → call one domain function → render. Routes live in [`configure`];
//! errors become HTTP responses in exactly one place per surface: [`error`] (JSON) and [`pages::error`] (HTML).

pub mod api;
pub mod auth;
pub mod error;
pub mod node_api;
pub mod pages;

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpResponse, web};
use tokio::sync::watch;

use crate::domain::Store;
use crate::domain::snapshot::SnapshotFeed;
use auth::NodeToken;
use error::ApiError;

/// Everything handlers share. Cloned into each worker behind `web::Data`.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub feed: SnapshotFeed,
    pub node_token: NodeToken,
    /// Turns true when the server is stopping, so long-polls answer at once instead of holding shutdown.
    pub stopping: watch::Receiver<bool>,
}

/// Default JSON body limit of the admin API.
const ADMIN_JSON_LIMIT: usize = 1024 * 1024;
/// Usage batches can be large after a node was cut off for a while.
const USAGE_JSON_LIMIT: usize = 32 * 1024 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(error::json_config(ADMIN_JSON_LIMIT))
        .app_data(error::query_config())
        .app_data(error::path_config())
        .route("/healthz", web::get().to(healthz))
        .service(
            web::scope("/api/v1")
                .route("/teams", web::post().to(api::teams::create))
                .route("/teams", web::get().to(api::teams::list))
                .route("/teams/{id}", web::get().to(api::teams::get))
                .route("/teams/{id}/keys", web::post().to(api::keys::issue))
                .route("/teams/{id}/keys", web::get().to(api::keys::list))
                .route("/keys/{id}/revoke", web::post().to(api::keys::revoke))
                .route("/teams/{id}/limits", web::get().to(api::limits::get_team))
                .route("/teams/{id}/limits", web::put().to(api::limits::set_team))
                .route("/teams/{id}/limits", web::delete().to(api::limits::clear_team))
                .route("/keys/{id}/limits", web::get().to(api::limits::get_key))
                .route("/keys/{id}/limits", web::put().to(api::limits::set_key))
                .route("/keys/{id}/limits", web::delete().to(api::limits::clear_key))
                .route("/alerts", web::get().to(api::alerts::list))
                .route("/providers", web::post().to(api::providers::create))
                .route("/providers", web::get().to(api::providers::list))
                .route("/providers/{id}", web::put().to(api::providers::update))
                .route("/models", web::post().to(api::models::create))
                .route("/models", web::get().to(api::models::list))
                .route("/models/{id}", web::put().to(api::models::replace))
                .route("/models/{id}", web::delete().to(api::models::delete))
                .route("/models/{id}/prices", web::get().to(api::prices::list))
                .route("/models/{id}/prices", web::post().to(api::prices::create))
                .route("/usage", web::get().to(api::usage::query))
                .route("/usage/rollups/check", web::get().to(api::rollups::check))
                .route("/nodes", web::get().to(api::nodes::list)),
        )
        .service(
            web::scope("/node/v1")
                .wrap(from_fn(auth::require_node_token))
                .route("/snapshot", web::get().to(node_api::snapshot::poll))
                .service(
                    web::resource("/usage")
                        .app_data(error::json_config(USAGE_JSON_LIMIT))
                        .route(web::post().to(node_api::usage::ingest)),
                ),
        )
        // The admin console (HTML, cookie sessions) under `/console`.
        .configure(pages::configure)
        .default_service(web::to(not_found));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound)
}

/// One log line per request: method, path (never the query or body), status, latency.
pub async fn log_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let res = next.call(req).await;
    let status = match &res {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    tracing::info!(
        %method,
        path,
        status,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    res
}
