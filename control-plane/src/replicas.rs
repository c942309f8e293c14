//! Cross-replica wake-up on Postgres: every replica announces each snapshot version it publishes with
//! `NOTIFY switchyard_config, '<version>'`, and listens on that channel; hearing a version newer than its own
//! rings its publisher's doorbell, so nodes long-polling any replica get a change made through any other within
//! one rebuild. The publisher's timer (`SWITCHYARD_CP_REPLICA_POLL_MS`) stays as the fallback for notifications
//! lost while a listener reconnects. SQLite (one process) needs none of this.
//!
//! Each version is announced at most once per replica, and a replica ignores versions it already serves, so the
//! echo of a notification stops after one round.

use std::convert::Infallible;
use std::time::Duration;

use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ConnectionTrait as _, DatabaseBackend, DatabaseConnection, Statement};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::domain::snapshot::{Republish, SnapshotFeed, error_chain};

/// The Postgres notification channel.
pub const CHANNEL: &str = "switchyard_config";
/// How long a broken listener waits before connecting again.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Starts the announcer and the listener when the database is Postgres; `None` otherwise.
pub fn start(
    db: &DatabaseConnection,
    feed: SnapshotFeed,
    republish: Republish,
    stopping: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return None;
    }
    let announcer = tokio::spawn(announce(db.clone(), feed.clone(), stopping.clone()));
    let listener = tokio::spawn(listen(db.clone(), feed, republish, stopping));
    Some(tokio::spawn(async move {
        let _ = tokio::join!(announcer, listener);
    }))
}

/// NOTIFY for every version this replica publishes, until stopping.
async fn announce(db: DatabaseConnection, feed: SnapshotFeed, stopping: watch::Receiver<bool>) {
    let mut announced = 0;
    loop {
        let Some(published) = feed.newer_than(announced, Duration::from_secs(3600), stopping.clone()).await else {
            if *stopping.borrow() {
                return;
            }
            continue;
        };
        announced = published.version;
        let notify = Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [CHANNEL.into(), announced.to_string().into()],
        );
        if let Err(e) = db.execute_raw(notify).await {
            tracing::warn!(error = %error_chain(&e), version = announced, "cannot notify other replicas");
        }
    }
}

/// LISTEN and ring the doorbell for versions newer than the one served, reconnecting until stopping.
async fn listen(db: DatabaseConnection, feed: SnapshotFeed, republish: Republish, mut stopping: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            Err(e) = relay(&db, &feed, &republish) => {
                tracing::warn!(error = %e, "replica notifications interrupted; reconnecting");
            }
            _ = stopping.wait_for(|s| *s) => return,
        }
        tokio::select! {
            () = tokio::time::sleep(RECONNECT_DELAY) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
    }
}

/// One listening session; returns only when the connection fails.
async fn relay(
    db: &DatabaseConnection,
    feed: &SnapshotFeed,
    republish: &Republish,
) -> Result<Infallible, sea_orm::sqlx::Error> {
    let mut listener = PgListener::connect_with(db.get_postgres_connection_pool()).await?;
    listener.listen(CHANNEL).await?;
    // Whatever was missed while not listening: one rebuild settles it.
    republish.ring();
    loop {
        let n = listener.recv().await?;
        match n.payload().parse::<u64>() {
            Ok(v) if v > feed.latest().version => republish.ring(),
            Ok(_) => {}
            Err(_) => tracing::warn!(payload = n.payload(), "ignoring a malformed replica notification"),
        }
    }
}
