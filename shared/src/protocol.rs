//! The node protocol: how data-plane nodes fetch snapshots and report usage. Nodes authenticate to the
//! control plane with `Authorization: Bearer <node token>`.
//!
//! - `GET  {SNAPSHOT_PATH}?node_id=..&applied=V&wait_secs=S` long-polls: it answers `200` with a snapshot newer
//!   than `V` as soon as one exists (body = snapshot JSON, [`SNAPSHOT_SHA256_HEADER`] = SHA-256 of the body), or
//!   `204` after `S` seconds with nothing newer. Each poll also tells the control plane which version the node
//!   has applied and that it is alive.
//! - `POST {USAGE_PATH}` with a [`crate::UsageBatch`] answers [`crate::UsageAck`] once the records are durable.
//! - `POST {STATUS_PATH}` with a [`NodeStatus`] (every status interval, and at once when an upstream 429 starts a
//!   cool-down) reports the node's view of its upstream targets; the answer, [`StatusAck`], carries the cool-downs
//!   other nodes reported, so a cool-down reaches every node without Redis.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const SNAPSHOT_PATH: &str = "/node/v1/snapshot";
pub const USAGE_PATH: &str = "/node/v1/usage";
pub const STATUS_PATH: &str = "/node/v1/status";
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

/// A node's view of its upstream targets (provider + upstream model).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node_id: String,
    pub at: DateTime<Utc>,
    #[serde(default)]
    pub targets: Vec<TargetStatus>,
    /// Cool-downs this node started after upstream 429s it received itself, still running.
    #[serde(default)]
    pub cooldowns: Vec<Cooldown>,
}

/// One target on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetStatus {
    pub provider_id: i64,
    pub upstream_model: String,
    /// The configured cap in force and how much of it the current minute has used; absent when uncapped.
    #[serde(default)]
    pub requests: Option<CapUse>,
    #[serde(default)]
    pub tokens: Option<CapUse>,
    /// Requests in flight against the concurrency cap.
    #[serde(default)]
    pub concurrency: Option<CapUse>,
    /// Whether the cap is the upstream model's own (`model`) or the credential's (`provider`).
    #[serde(default)]
    pub cap_scope: Option<String>,
    /// Attempts this node held back from the target because it was at a cap (since the node started).
    #[serde(default)]
    pub throttled: u64,
    #[serde(default)]
    pub last_throttled_at: Option<DateTime<Utc>>,
    /// The end of the target's cool-down after an upstream 429, from whichever node it came.
    #[serde(default)]
    pub cooling_until: Option<DateTime<Utc>>,
    /// The provider's advertised `x-ratelimit-limit-requests` / `-tokens`, as last seen.
    #[serde(default)]
    pub learned_requests: Option<u64>,
    #[serde(default)]
    pub learned_tokens: Option<u64>,
}

/// `used` of `cap` (requests or tokens taken in the rolling minute, or requests in flight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapUse {
    pub used: u64,
    pub cap: u64,
}

/// A target cooling down after an upstream 429, until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cooldown {
    pub provider_id: i64,
    pub upstream_model: String,
    pub until: DateTime<Utc>,
}

/// The control plane's answer to a [`NodeStatus`]: every cool-down of the fleet still running.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusAck {
    #[serde(default)]
    pub cooldowns: Vec<Cooldown>,
}

/// Hex SHA-256 of a snapshot body, used to check integrity in transit and on disk.
pub fn body_digest(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}
