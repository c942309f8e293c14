//! The HTTP surface, actix only: extract → call one domain function → render. Routes live in [`configure`];
//! errors become HTTP responses in exactly one place per surface: [`error`] (JSON) and [`pages::error`] (HTML).

pub mod api;
pub mod auth;
pub mod error;
pub mod node_api;
pub mod ops;
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
    /// The nodes' latest upstream status reports, in this replica's memory.
    pub upstream: std::sync::Arc<crate::domain::upstream_status::Board>,
}

/// Default JSON body limit of the admin API.
const ADMIN_JSON_LIMIT: usize = 1024 * 1024;
/// Usage batches can be large after a node was cut off for a while.
const USAGE_JSON_LIMIT: usize = 32 * 1024 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(error::json_config(ADMIN_JSON_LIMIT))
        .app_data(error::query_config())
        .app_data(error::path_config())
        .route("/healthz", web::get().to(ops::healthz))
        .route("/readyz", web::get().to(ops::readyz))
        .route("/metrics", web::get().to(ops::metrics))
        .service(
            // Every admin route comes from the one table that the OpenAPI document is generated from.
            web::scope("/api/v1").configure(api::routes::configure),
        )
        .service(
            web::scope("/node/v1")
                .wrap(from_fn(auth::require_node_token))
                .route("/snapshot", web::get().to(node_api::snapshot::poll))
                .service(
                    // A report lists every target of the node's snapshot.
                    web::resource("/status")
                        .app_data(error::json_config(USAGE_JSON_LIMIT))
                        .route(web::post().to(node_api::status::report)),
                )
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
