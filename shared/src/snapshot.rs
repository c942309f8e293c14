//! The snapshot: everything a data-plane node needs to serve requests without asking anyone — key hashes with
//! their team and permissions, providers with their credentials, and models with their routes and prices.
//!
//! Versions are assigned by the control plane and strictly increase; a node never applies a version lower than
//! or equal to the one it holds. Fields added later must carry `#[serde(default)]` so older payloads still parse.

use std::collections::HashSet;
use std::fmt;

use rustc_hash::FxHashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::limits::{Limits, Spend};
use crate::money::Price;
use crate::secret::{KeyHash, KeyHashSet};

/// The snapshot schema this build writes and reads.
pub const SNAPSHOT_SCHEMA: u32 = 1;

/// `K` is how the keys are held: a list of [`KeyEntry`] (what the control plane builds and writes), or a table a
/// node decodes them straight into (see [`SnapshotKeys`]), so a node never materialises a million `KeyEntry`s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot<K = Vec<KeyEntry>> {
    pub schema: u32,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub teams: Vec<TeamEntry>,
    #[serde(default)]
    pub keys: K,
    #[serde(default)]
    pub providers: Vec<ProviderEntry>,
    #[serde(default)]
    pub models: Vec<ModelEntry>,
    /// Limits of teams and keys that have any, with the spend counted so far in their budget period.
    #[serde(default)]
    pub limits: Vec<LimitEntry>,
    /// Per node, the newest usage record the spend in `limits` already includes, so a node counts its own
    /// unreported spend on top without counting anything twice.
    #[serde(default)]
    pub usage_watermarks: Vec<UsageWatermark>,
}

/// Which level a limit applies to. A request is checked against its key's limits and its team's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitScope {
    Team,
    Key,
}

impl LimitScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Team => "team",
            Self::Key => "key",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitEntry {
    pub scope: LimitScope,
    /// The team id or key id.
    pub id: i64,
    pub limits: Limits,
    /// Spend counted by the control plane in the current budget period (absent without a budget).
    #[serde(default)]
    pub spend: Option<Spend>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageWatermark {
    pub node_id: String,
    /// Usage record ids are UUIDv7 minted by the node, so they order by time.
    pub last_record_id: uuid::Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamEntry {
    pub id: i64,
    pub name: String,
}

/// An API key as the data plane sees it: only its hash, never the plaintext.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyEntry {
    pub id: i64,
    pub hash: KeyHash,
    pub team_id: i64,
    pub name: String,
    /// `None` means every model; otherwise only the listed public model names.
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

impl KeyEntry {
    pub fn allows(&self, model: &str) -> bool {
        self.allowed_models.as_ref().is_none_or(|m| m.iter().any(|a| a == model))
    }

    pub fn expired_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Any server speaking OpenAI's chat completions API: OpenAI, DeepSeek, Qwen compatible mode, GLM, vLLM, Ollama.
    OpenaiCompatible,
    /// Azure OpenAI: the base URL is a deployment URL carrying `?api-version=...`, the credential goes in an
    /// `api-key` header; bodies are OpenAI's.
    AzureOpenai,
    /// Anthropic's Messages API (`/v1/messages`, `x-api-key`): chat completions are translated both ways.
    Anthropic,
    /// A kind added by a newer control plane; a node that does not know it refuses to route to it.
    #[serde(other)]
    Unsupported,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderEntry {
    pub id: i64,
    pub name: String,
    pub kind: ProviderKind,
    /// Base URL including the version segment, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// The upstream credential in plaintext: snapshots are secrets in transit and at rest.
    #[serde(default)]
    pub credential: Option<String>,
    #[serde(default)]
    pub timeouts: UpstreamTimeouts,
    /// The credential's own capacity, which the nodes keep traffic under; absent: uncapped.
    #[serde(default)]
    pub caps: TargetCaps,
    /// Caps of single upstream models on this credential: each dimension a [`ModelCaps`] sets replaces the
    /// credential-wide cap of that dimension for that upstream model (counted for it alone); the dimensions it
    /// leaves out stay under the credential-wide cap. `caps.team_share_pct` applies to both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_caps: Vec<ModelCaps>,
}

/// One upstream model's own caps on a provider credential.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelCaps {
    pub upstream_model: String,
    #[serde(default)]
    pub rpm: Option<u64>,
    #[serde(default)]
    pub tpm: Option<u64>,
    #[serde(default)]
    pub max_concurrency: Option<u32>,
}

/// Per-provider (credential) capacity caps; `None` leaves that dimension uncapped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetCaps {
    /// Requests per minute.
    #[serde(default)]
    pub rpm: Option<u64>,
    /// Tokens (prompt + completion) per minute.
    #[serde(default)]
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// The most of each cap (1-100 percent) any one team may take; absent: no per-team share.
    #[serde(default)]
    pub team_share_pct: Option<u8>,
}

impl TargetCaps {
    pub fn is_empty(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none() && self.max_concurrency.is_none()
    }
}

/// Per-provider overrides of a node's upstream time limits, in milliseconds; `None` keeps the node's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamTimeouts {
    /// Until the upstream's response headers.
    #[serde(default)]
    pub first_byte_ms: Option<u64>,
    /// Longest silence between two chunks of a stream.
    #[serde(default)]
    pub idle_ms: Option<u64>,
    /// The whole request, streams included.
    #[serde(default)]
    pub total_ms: Option<u64>,
}

impl fmt::Debug for ProviderEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderEntry")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("credential", &self.credential.as_ref().map(|_| "<redacted>"))
            .field("timeouts", &self.timeouts)
            .field("caps", &self.caps)
            .field("model_caps", &self.model_caps)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// The public model name clients send.
    pub name: String,
    pub price: Price,
    pub targets: Vec<TargetEntry>,
    /// The teams whose keys may use the model; `None` means every team. A key of another team is told the
    /// model does not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_teams: Option<Vec<i64>>,
}

impl ModelEntry {
    pub fn admits(&self, team_id: i64) -> bool {
        self.allowed_teams.as_ref().is_none_or(|t| t.contains(&team_id))
    }
}

/// One place a model can be served from. Lower `priority` is tried first; within a priority, `weight` shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetEntry {
    pub provider_id: i64,
    pub upstream_model: String,
    pub weight: u32,
    pub priority: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("snapshot schema {0} is not supported by this node (expects {SNAPSHOT_SCHEMA})")]
    Schema(u32),
    #[error("duplicate {0} `{1}`")]
    Duplicate(&'static str, String),
    #[error("key {0} belongs to unknown team {1}")]
    UnknownTeam(i64, i64),
    #[error("model `{0}` routes to unknown provider {1}")]
    UnknownProvider(String, i64),
    #[error("model `{0}` has a target with weight 0")]
    ZeroWeight(String),
    #[error("limits of {0} {1} refer to nothing in the snapshot")]
    UnknownLimitScope(&'static str, i64),
}

/// What [`Snapshot::validate`] needs from the keys, however they were decoded.
pub trait SnapshotKeys {
    /// Refuses a key hash listed twice (naming the id of the second key with it) and a key whose team is not
    /// `known_team`.
    fn check(&self, known_team: impl Fn(i64) -> bool) -> Result<(), SnapshotError>;

    /// Every key id, for checking key-scoped limits.
    fn ids(&self) -> impl Iterator<Item = i64> + '_;
}

impl SnapshotKeys for Vec<KeyEntry> {
    fn check(&self, known_team: impl Fn(i64) -> bool) -> Result<(), SnapshotError> {
        let mut hashes = KeyHashSet::with_capacity_and_hasher(self.len(), Default::default());
        for k in self {
            if !hashes.insert(k.hash) {
                return Err(SnapshotError::Duplicate("key hash", k.id.to_string()));
            }
            if !known_team(k.team_id) {
                return Err(SnapshotError::UnknownTeam(k.id, k.team_id));
            }
        }
        Ok(())
    }

    fn ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.iter().map(|k| k.id)
    }
}

impl Snapshot {
    /// An empty snapshot, version 0: what a node holds before it has received anything.
    pub fn empty(now: DateTime<Utc>) -> Self {
        Self {
            schema: SNAPSHOT_SCHEMA,
            version: 0,
            created_at: now,
            teams: Vec::new(),
            keys: Vec::new(),
            providers: Vec::new(),
            models: Vec::new(),
            limits: Vec::new(),
            usage_watermarks: Vec::new(),
        }
    }
}

impl<K: SnapshotKeys> Snapshot<K> {
    /// Checks the references inside the snapshot, so that a node never swaps in one it cannot serve from.
    /// Ids are hashed with Fx and key hashes by their own prefix: at 1M keys SipHash was most of the time here.
    pub fn validate(&self) -> Result<(), SnapshotError> {
        if self.schema != SNAPSHOT_SCHEMA {
            return Err(SnapshotError::Schema(self.schema));
        }
        let mut teams = FxHashSet::with_capacity_and_hasher(self.teams.len(), Default::default());
        for t in &self.teams {
            if !teams.insert(t.id) {
                return Err(SnapshotError::Duplicate("team", t.id.to_string()));
            }
        }
        self.keys.check(|team| teams.contains(&team))?;
        let providers: FxHashSet<i64> = self.providers.iter().map(|p| p.id).collect();
        let mut models = HashSet::with_capacity(self.models.len());
        for m in &self.models {
            if !models.insert(m.name.as_str()) {
                return Err(SnapshotError::Duplicate("model", m.name.clone()));
            }
            for t in &m.targets {
                if !providers.contains(&t.provider_id) {
                    return Err(SnapshotError::UnknownProvider(m.name.clone(), t.provider_id));
                }
                if t.weight == 0 {
                    return Err(SnapshotError::ZeroWeight(m.name.clone()));
                }
            }
        }
        // Key ids are only needed to check key-scoped limits; most keys have none.
        let key_ids: FxHashSet<i64> = if self.limits.iter().any(|l| l.scope == LimitScope::Key) {
            self.keys.ids().collect()
        } else {
            FxHashSet::default()
        };
        let mut scopes = FxHashSet::with_capacity_and_hasher(self.limits.len(), Default::default());
        for l in &self.limits {
            let known = match l.scope {
                LimitScope::Team => teams.contains(&l.id),
                LimitScope::Key => key_ids.contains(&l.id),
            };
            if !known {
                return Err(SnapshotError::UnknownLimitScope(l.scope.as_str(), l.id));
            }
            if !scopes.insert((l.scope, l.id)) {
                return Err(SnapshotError::Duplicate("limits of", format!("{} {}", l.scope.as_str(), l.id)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            schema: SNAPSHOT_SCHEMA,
            version: 7,
            created_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            teams: vec![TeamEntry { id: 1, name: "research".into() }],
            keys: vec![KeyEntry {
                id: 10,
                hash: KeyHash::of("k"),
                team_id: 1,
                name: "ci".into(),
                allowed_models: Some(vec!["gpt-4o".into()]),
                expires_at: None,
            }],
            providers: vec![ProviderEntry {
                id: 3,
                name: "openai".into(),
                kind: ProviderKind::OpenaiCompatible,
                base_url: "https://api.openai.com/v1".into(),
                credential: Some("sk-upstream".into()),
                timeouts: UpstreamTimeouts { first_byte_ms: Some(30_000), idle_ms: None, total_ms: None },
                caps: TargetCaps { rpm: Some(500), tpm: None, max_concurrency: Some(8), team_share_pct: Some(50) },
                model_caps: vec![ModelCaps {
                    upstream_model: "gpt-4o-mini".into(),
                    rpm: Some(5000),
                    ..Default::default()
                }],
            }],
            models: vec![ModelEntry {
                name: "gpt-4o".into(),
                price: Price { input_per_mtok: 2_500_000, output_per_mtok: 10_000_000 },
                targets: vec![TargetEntry {
                    provider_id: 3,
                    upstream_model: "gpt-4o-2024-08-06".into(),
                    weight: 1,
                    priority: 0,
                }],
                allowed_teams: Some(vec![1]),
            }],
            limits: vec![
                LimitEntry {
                    scope: LimitScope::Team,
                    id: 1,
                    limits: Limits {
                        rpm: Some(600),
                        budget: Some(crate::limits::Budget { max_micros: Some(10_000_000), ..Default::default() }),
                        ..Default::default()
                    },
                    spend: Some(Spend {
                        period_start: DateTime::from_timestamp(1_698_796_800, 0).unwrap(),
                        micros: 1234,
                        tokens: 99,
                    }),
                },
                LimitEntry {
                    scope: LimitScope::Key,
                    id: 10,
                    limits: Limits { max_concurrent: Some(2), ..Default::default() },
                    spend: None,
                },
            ],
            usage_watermarks: vec![UsageWatermark { node_id: "n1".into(), last_record_id: uuid::Uuid::now_v7() }],
        }
    }

    #[test]
    fn round_trips_and_validates() {
        let s = sample();
        let json = serde_json::to_vec(&s).unwrap();
        let back: Snapshot = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, s);
        back.validate().unwrap();
    }

    #[test]
    fn an_older_minimal_payload_still_parses() {
        let json = r#"{"schema":1,"version":1,"created_at":"2026-01-01T00:00:00Z"}"#;
        let s: Snapshot = serde_json::from_str(json).unwrap();
        assert!(s.keys.is_empty());
        s.validate().unwrap();
    }

    #[test]
    fn a_payload_from_before_limits_still_parses() {
        // What a control plane without limits wrote: no `limits`, no `usage_watermarks`.
        let mut old = serde_json::to_value(sample()).unwrap();
        let obj = old.as_object_mut().unwrap();
        obj.remove("limits");
        obj.remove("usage_watermarks");
        let s: Snapshot = serde_json::from_value(old).unwrap();
        assert!(s.limits.is_empty() && s.usage_watermarks.is_empty());
        s.validate().unwrap();
        // A limit entry with only some fields set parses with the rest unlimited.
        let e: LimitEntry = serde_json::from_str(r#"{"scope":"key","id":3,"limits":{"rpm":5}}"#).unwrap();
        assert_eq!((e.limits.rpm, e.limits.tpm, e.spend), (Some(5), None, None));
    }

    #[test]
    fn limits_must_refer_to_known_teams_and_keys_once() {
        let mut s = sample();
        s.limits[1].id = 77;
        assert_eq!(s.validate(), Err(SnapshotError::UnknownLimitScope("key", 77)));
        let mut s = sample();
        s.limits.push(s.limits[0].clone());
        assert!(matches!(s.validate(), Err(SnapshotError::Duplicate(..))));
    }

    #[test]
    fn provider_kinds_round_trip_by_their_snake_case_names() {
        for (kind, name) in [
            (ProviderKind::OpenaiCompatible, "openai_compatible"),
            (ProviderKind::AzureOpenai, "azure_openai"),
            (ProviderKind::Anthropic, "anthropic"),
        ] {
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<ProviderKind>(&format!("\"{name}\"")).unwrap(), kind);
        }
    }

    #[test]
    fn unknown_provider_kinds_parse_as_unsupported() {
        let json = r#"{"id":1,"name":"x","kind":"future_kind","base_url":"http://x"}"#;
        let p: ProviderEntry = serde_json::from_str(json).unwrap();
        assert_eq!(p.kind, ProviderKind::Unsupported);
    }

    #[test]
    fn broken_references_are_refused() {
        let mut s = sample();
        s.models[0].targets[0].provider_id = 99;
        assert_eq!(s.validate(), Err(SnapshotError::UnknownProvider("gpt-4o".into(), 99)));
        let mut s = sample();
        s.keys[0].team_id = 2;
        assert_eq!(s.validate(), Err(SnapshotError::UnknownTeam(10, 2)));
        let mut s = sample();
        s.schema = 99;
        assert_eq!(s.validate(), Err(SnapshotError::Schema(99)));
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        assert!(!format!("{:?}", sample()).contains("sk-upstream"));
    }

    #[test]
    fn key_permissions_and_expiry() {
        let mut k = sample().keys[0].clone();
        assert!(k.allows("gpt-4o"));
        assert!(!k.allows("claude"));
        k.allowed_models = None;
        assert!(k.allows("claude"));
        let now = Utc::now();
        assert!(!k.expired_at(now));
        k.expires_at = Some(now);
        assert!(k.expired_at(now));
    }

    #[test]
    fn models_restricted_to_teams() {
        let mut m = sample().models[0].clone();
        assert!(m.admits(1));
        assert!(!m.admits(2));
        m.allowed_teams = None;
        assert!(m.admits(2));
        // A control plane from before team restrictions sends no `allowed_teams`: every team may use the model.
        let old: ModelEntry =
            serde_json::from_str(r#"{"name":"m","price":{"input_per_mtok":1,"output_per_mtok":1},"targets":[]}"#)
                .unwrap();
        assert_eq!(old.allowed_teams, None);
    }
}
