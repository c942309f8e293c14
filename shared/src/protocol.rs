//! The node protocol: how data-plane nodes fetch snapshots and report usage. Nodes authenticate to the
//! control plane with `Authorization: Bearer <node token>`.
//!
//! - `GET  {SNAPSHOT_PATH}?node_id=..&applied=V&wait_secs=S` long-polls: it answers `200` with a snapshot newer
//!   than `V` as soon as one exists (body = snapshot JSON, [`SNAPSHOT_SHA256_HEADER`] = SHA-256 of the body), or
//!   `204` after `S` seconds with nothing newer. Each poll also tells the control plane which version the node
//!   has applied and that it is alive.
//! - `POST {USAGE_PATH}` with a [`crate::UsageBatch`] answers [`crate::UsageAck`] once the records are durable.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const SNAPSHOT_PATH: &str = "/node/v1/snapshot";
pub const USAGE_PATH: &str = "/node/v1/usage";
pub const SNAPSHOT_SHA256_HEADER: &str = "x-switchyard-snapshot-sha256";
pub const SNAPSHOT_VERSION_HEADER: &str = "x-switchyard-snapshot-version";
/// The longest a control plane holds a snapshot poll open.
pub const MAX_WAIT_SECS: u64 = 60;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPoll {
    pub node_id: String,
    /// The version the node currently serves from (0 when it has none).
    pub applied: u64,
    #[serde(default)]
    pub wait_secs: u64,
}

/// Hex SHA-256 of a snapshot body, used to check integrity in transit and on disk.
pub fn body_digest(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}
