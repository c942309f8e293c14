//! Wiring: settings → database (created and migrated) → secrets → snapshot publisher → first-start bootstrap
//! → HTTP server. [`Application::build`] binds the listener itself, so port 0 works and [`Application::port`]
//! reports the real one.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use sea_orm::sqlx::sqlite::SqliteJournalMode;
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{ConfigError, Settings};
use crate::domain::bootstrap::{self, BootstrapCredentials};
use crate::domain::{DomainError, Store, snapshot};
use crate::web::auth::NodeToken;
use crate::web::{self as http, AppState};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("configuration")]
    Config(#[from] ConfigError),
    #[error("cannot prepare the directory of the SQLite database {0}")]
    SqliteDir(String, #[source] std::io::Error),
    #[error("cannot connect to the database")]
    Connect(#[source] DbErr),
    #[error("database migration failed")]
    Migrate(#[from] crate::migrate::MigrateError),
    #[error("startup failed")]
    Domain(#[from] DomainError),
    #[error("cannot listen on {0}")]
    Bind(String, #[source] std::io::Error),
}

/// A built, listening control plane.
pub struct Application {
    port: u16,
    server: Server,
    stop: StopHandle,
    bootstrap: Option<BootstrapCredentials>,
    db: DatabaseConnection,
    store: Store,
    publisher: JoinHandle<()>,
    /// Cross-replica wake-up (Postgres only).
    replicas: Option<JoinHandle<()>>,
}

/// Stops a running [`Application`]: long-polls answer at once, in-flight requests finish, then the server exits.
#[derive(Clone)]
pub struct StopHandle {
    server: ServerHandle,
    stopping: Arc<watch::Sender<bool>>,
}

impl StopHandle {
    pub async fn stop(&self) {
        self.stopping.send_replace(true);
        self.server.stop(true).await;
    }
}

/// Opens the database, creating the SQLite file's directory when needed.
pub async fn connect(settings: &Settings) -> Result<DatabaseConnection, StartupError> {
    if let Some(path) = settings.sqlite_path()
        && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|e| StartupError::SqliteDir(path.display().to_string(), e))?;
    }
    let mut opts = ConnectOptions::new(settings.database_url.expose().to_owned());
    opts.sqlx_logging(false).connect_timeout(Duration::from_secs(10)).acquire_timeout(Duration::from_secs(10));
    if settings.is_sqlite() {
        // WAL lets snapshot reads proceed while a change commits; writers queue on the busy timeout.
        opts.max_connections(8).map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal).busy_timeout(Duration::from_secs(10)).foreign_keys(true)
        });
    } else {
        opts.max_connections(20);
    }
    Database::connect(opts).await.map_err(StartupError::Connect)
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let secrets = settings.resolve_secrets()?;
        let db = connect(&settings).await?;
        crate::migrate::run(&db).await?;
        crate::domain::limits::seed_missing_counters(&db, chrono::Utc::now()).await?;

        let (stopping_tx, stopping_rx) = watch::channel(false);
        let publisher = snapshot::start(
            db.clone(),
            secrets.cipher.clone(),
            settings.replica_poll_interval,
            settings.spend_publish_floor,
            stopping_rx.clone(),
        )
        .await?;
        let replicas =
            crate::replicas::start(&db, publisher.feed.clone(), publisher.republish.clone(), stopping_rx.clone());
        let store = Store {
            db: db.clone(),
            cipher: secrets.cipher,
            republish: publisher.republish.clone(),
            reporting_zone: settings.reporting_timezone,
            currency: settings.currency,
            partitions: Default::default(),
            ingest_lanes: crate::domain::usage_copy::Lanes::connect(&db, settings.usage_ingest_lanes),
        };
        // Partitions for this month and the next ones before the first batch; then hourly (retention too).
        if let Err(e) = crate::domain::partitions::maintain(
            &db,
            &store.partitions,
            store.reporting_zone,
            settings.usage_retention_months,
            chrono::Utc::now(),
            true,
        )
        .await
        {
            // Records land in the DEFAULT partition meanwhile; the hourly pass and ingest create partitions later.
            tracing::warn!(error = %e, "usage partition maintenance failed at start");
        }
        crate::domain::partitions::start(
            db.clone(),
            store.partitions.clone(),
            store.reporting_zone,
            settings.usage_retention_months,
            stopping_rx.clone(),
        );
        let bootstrap = bootstrap::ensure_operator(&store, settings.bootstrap_operator_token.as_ref()).await?;

        let listener =
            TcpListener::bind(&settings.listen).map_err(|e| StartupError::Bind(settings.listen.clone(), e))?;
        let port = listener.local_addr().map_err(|e| StartupError::Bind(settings.listen.clone(), e))?.port();
        let state = web::Data::new(AppState {
            store: store.clone(),
            feed: publisher.feed.clone(),
            node_token: NodeToken::new(secrets.node_token.expose()),
            stopping: stopping_rx,
            upstream: Default::default(),
        });
        let mut server = HttpServer::new(move || {
            App::new().wrap(from_fn(http::log_requests)).app_data(state.clone()).configure(http::configure)
        })
        .disable_signals()
        .shutdown_timeout(10);
        if let Some(n) = settings.workers {
            server = server.workers(n);
        }
        let server = server.listen(listener).map_err(|e| StartupError::Bind(settings.listen.clone(), e))?.run();
        tracing::info!(port, "control plane listening");
        Ok(Self {
            port,
            stop: StopHandle { server: server.handle(), stopping: Arc::new(stopping_tx) },
            server,
            bootstrap,
            db,
            store,
            publisher: publisher.task,
            replicas,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The credentials a first start created; `None` on every later start.
    pub fn bootstrap(&self) -> Option<&BootstrapCredentials> {
        self.bootstrap.as_ref()
    }

    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// The application's database pool (tests inspect rows through it).
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The domain store, for in-process callers such as the quickstart.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves until stopped through a [`StopHandle`], then stops the publisher.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.stop.stopping.send_replace(true);
        if let Err(e) = self.publisher.await {
            tracing::warn!(error = %e, "the snapshot publisher ended abnormally");
        }
        if let Some(task) = self.replicas
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "the replica notifier ended abnormally");
        }
        result
    }
}
