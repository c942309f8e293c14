//! The snapshot builder and publisher. The builder reads the configuration version and every row it covers in
//! one transaction (REPEATABLE READ on Postgres) so the two always agree; the publisher serialises each version
//! once and hands the bytes, with their SHA-256, to every long-polling node through a `watch` channel.
//!
//! The publisher rebuilds when a committed change rings it (bursts coalesce into one rebuild), and on a timer
//! when the version in the database moved without it hearing (another control-plane replica made the change).
//! Budget spend has its own doorbell: ingest bumps the version and rings it after every batch that moved a
//! budget, and the publisher answers it at most once per spend floor, so a busy ingest costs a few snapshot
//! rebuilds a second, not one per batch (nodes skip the versions in between).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sea_orm::{
    AccessMode, ColumnTrait as _, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait as _,
    IsolationLevel, QueryFilter as _, QueryOrder as _, TransactionTrait as _,
};
use switchyard_shared::money::Price;
use switchyard_shared::protocol::body_digest;
use switchyard_shared::snapshot::{
    KeyEntry, ModelEntry, ProviderEntry, ProviderKind, SNAPSHOT_SCHEMA, TargetEntry, TeamEntry,
};
use switchyard_shared::{KeyHash, Snapshot};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::DomainError;
use super::keys::decode_allowed_models;
use super::limits;
use super::models::load_all;
use super::providers::parse_kind;
use crate::crypto::Cipher;
use crate::entities::{api_keys, config_version, providers, teams};

/// One snapshot version, serialised once and shared by every poll that answers with it.
#[derive(Debug)]
pub struct Published {
    pub version: u64,
    pub body: Bytes,
    /// Hex SHA-256 of `body`.
    pub sha256: String,
}

/// The publisher's doorbells: one rung after every committed configuration change, one after ingest moved
/// budget spend.
#[derive(Clone, Debug, Default)]
pub struct Republish {
    config: Arc<Notify>,
    spend: Arc<Notify>,
}

impl Republish {
    pub fn ring(&self) {
        // A stored permit coalesces any number of rings into one rebuild.
        self.config.notify_one();
    }

    /// Spend moved (the version was bumped with it): publish, but no sooner than the spend floor after the
    /// previous spend publication.
    pub fn ring_spend(&self) {
        self.spend.notify_one();
    }
}

/// The latest published snapshot, for as many readers as there are polling nodes.
#[derive(Clone, Debug)]
pub struct SnapshotFeed {
    rx: watch::Receiver<Arc<Published>>,
}

impl SnapshotFeed {
    pub fn latest(&self) -> Arc<Published> {
        self.rx.borrow().clone()
    }

    /// The published snapshot if it is newer than `applied`, waiting up to `wait` for one to appear. `None`
    /// after the wait, or at once when `stopping` turns true.
    pub async fn newer_than(
        &self,
        applied: u64,
        wait: Duration,
        mut stopping: watch::Receiver<bool>,
    ) -> Option<Arc<Published>> {
        let mut rx = self.rx.clone();
        tokio::select! {
            found = tokio::time::timeout(wait, rx.wait_for(|p| p.version > applied)) => match found {
                Ok(Ok(p)) => Some(p.clone()),
                _ => None,
            },
            () = stopped(&mut stopping) => None,
        }
    }
}

/// Resolves once `stopping` turns true (or its sender is gone). Holds no borrow of the channel when done.
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

/// The configuration version as committed in the database.
pub async fn current_version(conn: &impl ConnectionTrait) -> Result<u64, DomainError> {
    let row = config_version::Entity::find_by_id(config_version::ROW_ID)
        .one(conn)
        .await?
        .ok_or_else(|| DomainError::Internal("the config_version row is missing".into()))?;
    Ok(u64::try_from(row.version).unwrap_or_default())
}

/// Builds the snapshot of the committed configuration, reading everything in one consistent transaction.
pub async fn build(db: &DatabaseConnection, cipher: &Cipher, now: DateTime<Utc>) -> Result<Snapshot, DomainError> {
    let txn = if db.get_database_backend() == DatabaseBackend::Postgres {
        db.begin_with_config(Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly)).await?
    } else {
        db.begin().await?
    };
    let version = current_version(&txn).await?;
    let team_rows = teams::Entity::find().order_by_asc(teams::Column::Id).all(&txn).await?;
    let key_rows = api_keys::Entity::find()
        .filter(api_keys::Column::RevokedAt.is_null())
        .order_by_asc(api_keys::Column::Id)
        .all(&txn)
        .await?;
    let provider_rows = providers::Entity::find().order_by_asc(providers::Column::Id).all(&txn).await?;
    let mut model_caps = super::providers::model_caps_by_provider(&txn, None).await?;
    let models = load_all(&txn).await?;
    let team_ids = team_rows.iter().map(|t| t.id).collect();
    let key_ids = key_rows.iter().map(|k| k.id).collect();
    let limit_entries = limits::snapshot_entries(&txn, &team_ids, &key_ids, now).await?;
    let usage_watermarks = limits::watermarks(&txn).await?;
    txn.commit().await?;

    let keys = key_rows
        .into_iter()
        .map(|k| {
            Ok(KeyEntry {
                hash: KeyHash::from_hex(&k.hash)
                    .map_err(|_| DomainError::Internal(format!("api key {} has a malformed hash", k.id)))?,
                allowed_models: decode_allowed_models(k.allowed_models.as_deref())?,
                id: k.id,
                team_id: k.team_id,
                name: k.name,
                expires_at: k.expires_at,
            })
        })
        .collect::<Result<Vec<_>, DomainError>>()?;
    let providers = provider_rows
        .into_iter()
        .map(|p| {
            Ok(ProviderEntry {
                credential: p.credential_ciphertext.as_deref().map(|c| cipher.decrypt(c)).transpose()?,
                kind: parse_kind(&p.kind).unwrap_or(ProviderKind::Unsupported),
                id: p.id,
                timeouts: super::providers::timeouts_of(&p),
                caps: super::providers::caps_of(&p),
                model_caps: model_caps.remove(&p.id).unwrap_or_default(),
                name: p.name,
                base_url: p.base_url,
            })
        })
        .collect::<Result<Vec<_>, DomainError>>()?;
    let snapshot = Snapshot {
        schema: SNAPSHOT_SCHEMA,
        version,
        created_at: now,
        teams: team_rows.into_iter().map(|t| TeamEntry { id: t.id, name: t.name }).collect(),
        keys,
        providers,
        models: models
            .into_iter()
            .map(|m| ModelEntry {
                name: m.name,
                price: Price { input_per_mtok: m.input_price_per_mtok, output_per_mtok: m.output_price_per_mtok },
                targets: m
                    .targets
                    .into_iter()
                    .map(|t| TargetEntry {
                        provider_id: t.provider_id,
                        upstream_model: t.upstream_model,
                        weight: t.weight,
                        priority: t.priority,
                    })
                    .collect(),
                allowed_teams: m.allowed_teams,
            })
            .collect(),
        limits: limit_entries,
        usage_watermarks,
    };
    snapshot.validate().map_err(|e| DomainError::Internal(format!("the built snapshot is inconsistent: {e}")))?;
    Ok(snapshot)
}

/// Serialises a snapshot once, with its digest.
pub fn serialise(snapshot: &Snapshot) -> Result<Published, DomainError> {
    let body = serde_json::to_vec(snapshot).map_err(|e| DomainError::Internal(e.to_string()))?;
    Ok(Published { version: snapshot.version, sha256: body_digest(&body), body: Bytes::from(body) })
}

async fn build_published(db: &DatabaseConnection, cipher: &Cipher) -> Result<Published, DomainError> {
    serialise(&build(db, cipher, Utc::now()).await?)
}

/// A running publisher.
#[derive(Debug)]
pub struct Publisher {
    pub feed: SnapshotFeed,
    pub republish: Republish,
    pub task: JoinHandle<()>,
}

/// Publishes the current configuration (failing if it cannot, so a wrong encryption key stops startup), then
/// keeps publishing in a background task until `stopping` turns true.
pub async fn start(
    db: DatabaseConnection,
    cipher: Cipher,
    replica_poll_interval: Duration,
    spend_floor: Duration,
    mut stopping: watch::Receiver<bool>,
) -> Result<Publisher, DomainError> {
    let first = build_published(&db, &cipher).await?;
    tracing::info!(version = first.version, bytes = first.body.len(), "snapshot published");
    let (tx, rx) = watch::channel(Arc::new(first));
    let republish = Republish::default();
    let doorbell = republish.clone();
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(replica_poll_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_spend = Instant::now().checked_sub(spend_floor).unwrap_or_else(Instant::now);
        loop {
            let published = tx.borrow().version;
            tokio::select! {
                () = doorbell.config.notified() => {}
                () = doorbell.spend.notified() => {
                    // Spend rung meanwhile is coalesced into this publication.
                    let wait = tokio::time::sleep_until(last_spend + spend_floor);
                    tokio::select! {
                        () = wait => {}
                        // A configuration change, or spend near a cap, does not wait for the floor.
                        () = doorbell.config.notified() => {}
                        () = stopped(&mut stopping) => break,
                    }
                    last_spend = Instant::now();
                }
                _ = ticker.tick() => match current_version(&db).await {
                    Ok(v) if v > published => {}
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(error = %error_chain(&e), "cannot read the configuration version");
                        continue;
                    }
                },
                () = stopped(&mut stopping) => break,
            }
            match build_published(&db, &cipher).await {
                Ok(p) if p.version > tx.borrow().version => {
                    tracing::info!(version = p.version, bytes = p.body.len(), "snapshot published");
                    tx.send_replace(Arc::new(p));
                }
                Ok(_) => {}
                Err(e) => tracing::error!(
                    error = %error_chain(&e),
                    "snapshot build failed; nodes keep the previous snapshot"
                ),
            }
        }
    });
    Ok(Publisher { feed: SnapshotFeed { rx }, republish, task })
}

/// `error: cause: cause` in one line, for logs.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
