//! Building a node: the upstream client, the snapshot store (warm from disk), the background snapshot sync and
//! usage reporter, and the HTTP server with its routes. `build` binds the listener itself, so port 0 works and
//! [`Server::port`] reports the real one.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Settings;
use crate::health::Registry;
use crate::limits::Limiter;
use crate::metrics::Metrics;
use crate::reporting::{self, UsageSink};
use crate::snapshot::{self, SnapshotStore};
use crate::{models, proxy};

/// What every request handler shares. Each actix worker holds its own copy with its own upstream `client`.
#[derive(Clone)]
pub struct AppState {
    pub snapshots: Arc<SnapshotStore>,
    pub usage: Arc<UsageSink>,
    /// This worker's upstream connection pool (see [`upstream_client`]).
    pub client: reqwest::Client,
    pub node_id: Arc<str>,
    pub max_body_bytes: usize,
    pub timeouts: Timeouts,
    pub governance: bool,
    pub limiter: Arc<Limiter>,
}

/// Time limits of one request, on both sides.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Upstream response headers.
    pub first_byte: Duration,
    /// Silence between two chunks of an upstream stream.
    pub idle: Duration,
    /// The whole request, from its arrival.
    pub total: Duration,
    /// The client's request body.
    pub client_body: Duration,
}

impl Timeouts {
    /// The node's limits with a provider's overrides applied.
    pub fn for_upstream(&self, o: &switchyard_shared::snapshot::UpstreamTimeouts) -> Self {
        let ms = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_millis);
        Self {
            first_byte: ms(o.first_byte_ms, self.first_byte),
            idle: ms(o.idle_ms, self.idle),
            total: ms(o.total_ms, self.total),
            client_body: self.client_body,
        }
    }
}

/// A handle on a running node's state, for operations and tests.
#[derive(Clone)]
pub struct Node {
    pub id: Arc<str>,
    pub snapshots: Arc<SnapshotStore>,
    pub usage: Arc<UsageSink>,
    pub limiter: Arc<Limiter>,
}

pub struct Server {
    port: u16,
    http: actix_web::dev::Server,
    node: Node,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    usage_grace: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("node id `{0}` may only contain letters, digits, `-`, `_` and `.`")]
    NodeId(String),
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("could not set up TLS for upstream connections: {0}")]
    Tls(#[from] rustls::Error),
    #[error("could not listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("could not set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("state directory {path}: {source}")]
    StateDir { path: String, source: std::io::Error },
    #[error(transparent)]
    Limits(#[from] crate::limits::LimiterError),
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
}

/// How long a stopping node waits for a snapshot apply in progress (compile + fsync) to finish.
const SYNC_SHUTDOWN_BOUND: Duration = Duration::from_secs(30);

impl Server {
    pub async fn build(settings: Settings) -> Result<Self, BuildError> {
        // The process may already have one (tests run many nodes); either way one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let node_id: Arc<str> = match settings.node_id.clone() {
            Some(id) => id,
            None => stable_node_id(&settings.state_dir).await?,
        }
        .into();
        if node_id.is_empty() || !node_id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(BuildError::NodeId(node_id.to_string()));
        }
        // The background tasks' client (snapshot sync, usage reporter), on the main runtime.
        let connect_timeout = settings.upstream_connect_timeout;
        let tls = upstream_tls()?;
        let client = upstream_client(connect_timeout, &tls)?;

        let metrics = Arc::new(Metrics::new()?);
        let snapshots =
            Arc::new(SnapshotStore::new(settings.state_dir.clone(), Arc::new(Registry::new(settings.breaker))));
        if let Some(v) = snapshots.load_from_disk().await {
            tracing::info!(version = v, "serving the snapshot kept on disk until the control plane answers");
        }
        let (sink, reporter) = reporting::channel(client.clone(), &settings, node_id.to_string(), metrics)?;
        let usage = Arc::new(sink);
        let limiter = Arc::new(Limiter::new(settings.limits.clone(), node_id.clone())?);
        // Bounded: a node whose Redis is down still starts, with per-node limits until Redis answers.
        if !limiter.connect(Duration::from_secs(1)).await {
            tracing::warn!("redis is not reachable yet; limits are per node until it is");
        }
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = vec![
            tokio::spawn(snapshot::run_sync(
                snapshots.clone(),
                client.clone(),
                settings.control_plane_url.clone(),
                settings.node_token.clone(),
                node_id.to_string(),
                settings.poll_wait,
                stop_rx.clone(),
            )),
            tokio::spawn(reporter.run(stop_rx.clone())),
        ];
        if settings.governance {
            let (snapshots, limiter, client, node_id) =
                (snapshots.clone(), limiter.clone(), client.clone(), node_id.to_string());
            let settings = settings.clone();
            tasks.push(tokio::spawn(async move {
                crate::upstream_status::run(snapshots, limiter, client, &settings, node_id, stop_rx).await;
            }));
        }

        let state = AppState {
            snapshots: snapshots.clone(),
            usage: usage.clone(),
            client,
            node_id: node_id.clone(),
            max_body_bytes: settings.max_body_bytes,
            timeouts: Timeouts {
                first_byte: settings.upstream_first_byte_timeout,
                idle: settings.upstream_idle_timeout,
                total: settings.upstream_total_timeout,
                client_body: settings.client_body_timeout,
            },
            governance: settings.governance,
            limiter: limiter.clone(),
        };
        let listener =
            TcpListener::bind(settings.listen).map_err(|source| BuildError::Bind { addr: settings.listen, source })?;
        let port = listener.local_addr().map_err(|source| BuildError::Bind { addr: settings.listen, source })?.port();
        let http = HttpServer::new(move || {
            // One upstream pool per worker: a pooled connection's task lives on the runtime that opened it, so
            // a pool shared between workers makes every reuse from another worker a cross-thread wake-up.
            // The settings already built one client above, so this does not fail in practice; if it did, the
            // worker would share the background tasks' pool rather than not start.
            let client = upstream_client(connect_timeout, &tls).unwrap_or_else(|_| state.client.clone());
            App::new().app_data(web::Data::new(AppState { client, ..state.clone() })).configure(routes)
        })
        .workers(settings.workers.max(1))
        .disable_signals()
        // SSE events are small writes; with Nagle on they wait for the client's delayed ACK (~40 ms).
        .tcp_nodelay(true)
        .shutdown_timeout(30)
        .listen(listener)
        .map_err(|source| BuildError::Bind { addr: settings.listen, source })?
        .run();
        if !settings.governance {
            tracing::warn!("governance is OFF: no authentication, no limits, no metering (benchmark baseline only)");
        }
        tracing::info!(port, node_id = %node_id, "data plane listening");
        Ok(Self {
            port,
            http,
            node: Node { id: node_id, snapshots, usage, limiter },
            stop,
            tasks,
            usage_grace: settings.shutdown_usage_grace,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn node(&self) -> Node {
        self.node.clone()
    }

    /// Stops the node: `graceful` lets in-flight requests and streams finish first.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.http.handle()
    }

    /// Serves until stopped through [`Server::handle`] (in-flight requests and streams drain first), then
    /// reports the usage still queued, waiting at most the configured grace period for the control plane.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.http.await;
        self.stop.send_replace(true);
        let mut tasks = self.tasks.into_iter();
        // The snapshot sync ends at once on `stop` unless it is applying a snapshot, which it finishes (the file
        // included) so the next start serves that version; bounded anyway, in case the disk hangs.
        if let Some(mut sync) = tasks.next()
            && tokio::time::timeout(SYNC_SHUTDOWN_BOUND, &mut sync).await.is_err()
        {
            sync.abort();
            tracing::warn!("snapshot sync still busy at shutdown; the node restarts from the previous snapshot file");
        }
        for mut task in tasks {
            if tokio::time::timeout(self.usage_grace, &mut task).await.is_err() {
                task.abort();
                tracing::warn!(
                    spooled_bytes = self.node.usage.spool_usage().0,
                    "control plane unreachable at shutdown; unreported usage stays in the spool for the next start"
                );
            }
        }
        served
    }
}

/// An upstream HTTP client (one connection pool). Built once per actix worker and once for background tasks.
fn upstream_client(connect_timeout: Duration, tls: &rustls::ClientConfig) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls.clone())
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(4096)
        .tcp_nodelay(true)
        .build()
}

/// What reqwest would build for each client (platform roots, HTTP/2 and 1.1 by ALPN), built once: loading the
/// system's root certificates on every worker thread cost ~7 MiB of RSS per worker (each thread's malloc arena
/// kept the parsing garbage).
fn upstream_tls() -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tls)
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(post("/v1/chat/completions", proxy::chat_completions))
        .service(post("/v1/completions", proxy::completions))
        .service(post("/v1/embeddings", proxy::embeddings))
        .service(post("/v1/responses", proxy::responses))
        .service(post("/v1/messages", proxy::messages))
        .service(
            web::resource("/v1/models")
                .route(web::get().to(models::list))
                .default_service(web::to(proxy::method_not_allowed)),
        )
        .service(
            web::resource("/v1/models/{id:.*}")
                .route(web::get().to(models::get))
                .default_service(web::to(proxy::method_not_allowed)),
        )
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .default_service(web::to(proxy::unknown_path));
}

/// A POST-only resource; other methods get an OpenAI-shaped 405.
fn post<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path).route(web::post().to(handler)).default_service(web::to(proxy::method_not_allowed))
}

/// Prometheus text exposition; scrape-time gauges are filled in here.
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let catalog = state.snapshots.load();
    let age = if catalog.version == 0 { -1 } else { (chrono::Utc::now() - catalog.created_at).num_seconds() };
    state.usage.metrics().set_spool(state.usage.spool_usage());
    let body = state.usage.metrics().render(catalog.version, age, state.usage.queued(), state.limiter.stats());
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(body)
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(r#"{"status":"ok"}"#)
}

/// Ready once a snapshot is applied: before that every request would be refused.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let version = state.snapshots.version();
    let body = format!(
        r#"{{"status":"{}","snapshot_version":{version}}}"#,
        if version > 0 { "ready" } else { "waiting_for_snapshot" }
    );
    let mut res = if version > 0 { HttpResponse::Ok() } else { HttpResponse::ServiceUnavailable() };
    res.content_type("application/json").body(body)
}

/// A node id kept in the state directory, so a restarted node reports under the same name.
async fn stable_node_id(dir: &Path) -> Result<String, BuildError> {
    let path = dir.join("node-id");
    if let Ok(id) = tokio::fs::read_to_string(&path).await {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(id.to_owned());
        }
    }
    let id = format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let err = |source| BuildError::StateDir { path: dir.display().to_string(), source };
    tokio::fs::create_dir_all(dir).await.map_err(err)?;
    tokio::fs::write(&path, &id).await.map_err(err)?;
    Ok(id)
}
