//! The control-plane binary: configuration → telemetry → build → print first-start credentials → serve until
//! Ctrl-C or SIGTERM. `quickstart` instead runs the whole system on the embedded default.

use anyhow::Context as _;
use switchyard_control_plane::domain::{Store, encryption_rotation, rollups};
use switchyard_control_plane::{Application, Settings, quickstart, startup, telemetry};

const USAGE: &str =
    "usage: switchyard-control-plane [serve | migrate | rotate-encryption-key | check-rollups | probe URL | quickstart]

  serve          run the control plane (default); configured by SWITCHYARD_* environment variables;
                 applies pending migrations first
  migrate        apply pending database migrations (SWITCHYARD_DATABASE_URL) and exit; safe to run while
                 other replicas start, as they take the same lock
  rotate-encryption-key
                 re-encrypt every stored secret with SWITCHYARD_ENCRYPTION_KEY, reading old values with
                 SWITCHYARD_ENCRYPTION_KEY_PREVIOUS (deploy/OPERATIONS.md, \"Rotating secrets\")
  check-rollups  recompute the usage rollups from the raw records, print the differences as JSON,
                 and exit with status 1 if there are any
  probe URL      GET an http://host:port/path URL and exit 0 on a 2xx answer (container health checks)
  quickstart     run the control plane on SQLite with the mock upstream and one data-plane node,
                 seed a demo team, model and key, and print a ready-to-curl example";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = std::env::args().nth(1);
    if command.as_deref() == Some("probe") {
        // Before settings and logging: a health check needs neither.
        let url = std::env::args().nth(2).unwrap_or_default();
        return switchyard_control_plane::probe::run(&url).await.with_context(|| format!("probe {url}"));
    }
    let settings = Settings::from_env().context("reading configuration")?;
    telemetry::init_from_env()?;
    match command.as_deref() {
        None | Some("serve") => serve(settings).await,
        Some("migrate") => migrate(settings).await,
        Some("rotate-encryption-key") => rotate_encryption_key(settings).await,
        Some("quickstart") => quickstart::run(settings, shutdown_signal()).await,
        Some("check-rollups") => check_rollups(settings).await,
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => anyhow::bail!("unknown command `{other}`\n{USAGE}"),
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await.context("starting the control plane")?;
    if let Some(creds) = app.bootstrap() {
        // Printed once, on purpose, to stdout only: the database keeps nothing but hashes.
        println!("First start: created the operator account.");
        println!("  email:          {}", creds.email);
        println!("  password:       {}", creds.password.expose());
        println!("  operator token: {}", creds.operator_token.expose());
        println!("Store them now; they will not be shown again.");
    }
    let stop = app.stop_handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        stop.stop().await;
    });
    app.run_until_stopped().await?;
    Ok(())
}

async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let db = startup::connect(&settings).await.context("connecting to the database")?;
    let applied = switchyard_control_plane::migrate::run(&db).await.context("migrating the database")?;
    println!("{applied} migration(s) applied; the schema is current.");
    db.close().await.ok();
    Ok(())
}

async fn check_rollups(settings: Settings) -> anyhow::Result<()> {
    let db = startup::connect(&settings).await.context("opening the database")?;
    switchyard_control_plane::migrate::run(&db).await.context("migrating the database")?;
    let report = rollups::check(&db, settings.reporting_timezone).await.context("checking the rollups")?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if !report.is_consistent() {
        std::process::exit(1);
    }
    Ok(())
}

async fn rotate_encryption_key(settings: Settings) -> anyhow::Result<()> {
    let secrets = settings.resolve_secrets().context("reading the encryption keys")?;
    let db = startup::connect(&settings).await.context("connecting to the database")?;
    switchyard_control_plane::migrate::run(&db).await.context("migrating the database")?;
    let store = Store {
        db: db.clone(),
        cipher: secrets.cipher,
        republish: Default::default(),
        reporting_zone: settings.reporting_timezone,
        currency: settings.currency,
        partitions: Default::default(),
        ingest_lanes: Default::default(),
    };
    let done = encryption_rotation::reencrypt_all(&store).await.context("re-encrypting stored secrets")?;
    println!(
        "{} secret(s) re-encrypted with the current key, {} already were; \
         SWITCHYARD_ENCRYPTION_KEY_PREVIOUS can now be removed.",
        done.reencrypted, done.already_current
    );
    db.close().await.ok();
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
