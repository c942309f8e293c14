//! Business rules of the control plane over sea-orm: tenants, keys, providers, models, usage, nodes, the
//! snapshot. No actix types live here; the web layer extracts, calls one function, and renders the result.
//!
//! Architecture invariant: every configuration change goes through [`change::Change`], so the change, its audit
//! row and the snapshot version bump commit together, and the publisher hears about it only after the commit.

pub mod access;
pub mod accounts;
pub mod audit;
pub mod bootstrap;
pub mod change;
pub mod csrf;
pub mod csv;
pub mod dashboard;
pub mod encryption_rotation;
pub mod error;
pub mod fleet_status;
pub mod invites;
pub mod invoices;
pub mod key_owners;
pub mod keys;
pub mod limits;
pub mod listing;
pub mod memberships;
pub mod models;
pub mod nodes;
pub mod operators;
pub mod partitions;
pub mod personal_tokens;
pub mod prices;
pub mod provider_presets;
pub mod providers;
pub mod rollups;
pub mod sessions;
pub mod snapshot;
pub mod spend;
pub mod teams;
pub mod upstream_status;
pub mod usage;
pub mod usage_copy;
pub mod usage_export;

use sea_orm::DatabaseConnection;
use switchyard_shared::period::Zone;

pub use audit::Actor;
pub use error::DomainError;

use crate::crypto::Cipher;

/// What every domain operation needs: the database, the credential cipher, and the doorbell of the snapshot
/// publisher. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pub db: DatabaseConnection,
    pub cipher: Cipher,
    pub republish: snapshot::Republish,
    /// The calendar days of usage rollups and reports.
    pub reporting_zone: Zone,
    /// The deployment currency of invoices (`SWITCHYARD_CURRENCY`).
    pub currency: invoices::Currency,
    /// The monthly partitions of `usage_records` this process knows exist (Postgres).
    pub partitions: partitions::Partitions,
    /// Postgres: the connections batches are COPYed through (`usage_copy`); empty elsewhere.
    pub ingest_lanes: usage_copy::Lanes,
}
