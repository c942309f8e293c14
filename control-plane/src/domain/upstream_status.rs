//! Upstream targets' rate-limit state as the nodes report it (`POST /node/v1/status`): per target (provider +
//! upstream model) the caps in force and their use, attempts held back, cool-downs after upstream 429s and the
//! limits the provider advertises. Kept in memory by the replica the nodes report to (only the latest report per
//! node; a node silent for [`STALE_AFTER`] is forgotten), and read by the admin API and the console's providers
//! pages next to the configured caps.
//!
//! The board also relays cool-downs: each node lists the cool-downs it started after a 429 it received, and the
//! answer to every report carries all those still running, so every node stops sending to a cooling target
//! within one status interval even without Redis. With several replicas behind a load balancer a cool-down
//! reaches the nodes reporting to the same replica; Redis (`SWITCHYARD_REDIS_URL`) shares it with every node.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use switchyard_shared::protocol::{CapUse, Cooldown, NodeStatus, StatusAck};

use super::models::Model;
use super::providers::Provider;

/// A node that has not reported for this long is left out.
pub const STALE_AFTER: Duration = Duration::seconds(60);
/// A target that held back an attempt at its cap this recently counts as saturated.
pub const SATURATED_WINDOW: Duration = Duration::seconds(30);
/// Most targets kept per node report (a report is bounded by the node's snapshot anyway).
const MAX_TARGETS: usize = 10_000;

#[derive(Debug, Default)]
pub struct Board {
    inner: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    nodes: HashMap<String, (DateTime<Utc>, NodeStatus)>,
    /// (provider, upstream model) → until.
    cooldowns: HashMap<(i64, String), DateTime<Utc>>,
}

/// The caps configured for a target: its upstream model's own where set, else the credential's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfiguredCaps {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_concurrency: Option<u32>,
    /// `model` when the upstream model has caps of its own, else `provider`.
    pub scope: String,
}

/// The provider's advertised limits (`x-ratelimit-limit-requests` / `-tokens`), as last reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnedLimits {
    pub requests: Option<u64>,
    pub tokens: Option<u64>,
}

/// One node's figures for a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeTargetView {
    pub node_id: String,
    pub reported_at: DateTime<Utc>,
    pub requests: Option<CapUse>,
    pub tokens: Option<CapUse>,
    pub concurrency: Option<CapUse>,
    pub throttled: u64,
    pub last_throttled_at: Option<DateTime<Utc>>,
    pub cooling_until: Option<DateTime<Utc>>,
}

/// What a target needs attention for, worst first: a cool-down beats saturation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetState {
    Ok,
    Saturated,
    Cooling,
}

impl TargetState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Saturated => "saturated",
            Self::Cooling => "cooling",
        }
    }
}

/// A target as the console and `GET /api/v1/upstream-status` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetView {
    pub provider_id: i64,
    pub provider: String,
    pub upstream_model: String,
    pub configured: ConfiguredCaps,
    pub learned: LearnedLimits,
    /// The busiest node's use of each cap (with Redis every node sees the fleet's count).
    pub requests: Option<CapUse>,
    pub tokens: Option<CapUse>,
    pub concurrency: Option<CapUse>,
    /// Attempts held back at a cap, summed over nodes (since each node started).
    pub throttled: u64,
    pub last_throttled_at: Option<DateTime<Utc>>,
    pub cooling_until: Option<DateTime<Utc>>,
    /// A cap is full on some node, or an attempt was held back at one within the last 30 s.
    pub saturated: bool,
    pub state: TargetState,
    pub nodes: Vec<NodeTargetView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamStatus {
    pub generated_at: DateTime<Utc>,
    /// Nodes whose report is included.
    pub nodes: Vec<String>,
    pub targets: Vec<TargetView>,
}

fn full(u: Option<CapUse>) -> bool {
    u.is_some_and(|u| u.used >= u.cap)
}

fn busier(a: Option<CapUse>, b: Option<CapUse>) -> Option<CapUse> {
    match (a, b) {
        (Some(x), Some(y)) => {
            Some(if u128::from(y.used) * u128::from(x.cap) > u128::from(x.used) * u128::from(y.cap) { y } else { x })
        }
        (x, y) => x.or(y),
    }
}

impl Board {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is a few map operations; a panic cannot leave the board half-written in a way that matters.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps a node's report and answers the fleet's cool-downs still running at `now`.
    pub fn record(&self, mut status: NodeStatus, now: DateTime<Utc>) -> StatusAck {
        status.targets.truncate(MAX_TARGETS);
        let mut s = self.lock();
        for c in &status.cooldowns {
            // Bounded like the nodes bound them (10 minutes), whatever a node claims.
            let until = c.until.min(now + Duration::minutes(10));
            let slot = s.cooldowns.entry((c.provider_id, c.upstream_model.clone())).or_insert(until);
            *slot = (*slot).max(until);
        }
        s.cooldowns.retain(|_, until| *until > now);
        s.nodes.retain(|_, (at, _)| now - *at < STALE_AFTER);
        s.nodes.insert(status.node_id.clone(), (now, status));
        let cooldowns = s
            .cooldowns
            .iter()
            .map(|((provider_id, upstream_model), until)| Cooldown {
                provider_id: *provider_id,
                upstream_model: upstream_model.clone(),
                until: *until,
            })
            .collect();
        StatusAck { cooldowns }
    }

    /// Every target of `models` and every target a node reported, with the configured caps of `providers`.
    pub fn view(&self, providers: &[Provider], models: &[Model], now: DateTime<Utc>) -> UpstreamStatus {
        let by_id: HashMap<i64, &Provider> = providers.iter().map(|p| (p.id, p)).collect();
        let mut targets: BTreeMap<(String, String), TargetView> = BTreeMap::new();
        fn slot<'t>(
            targets: &'t mut BTreeMap<(String, String), TargetView>,
            by_id: &HashMap<i64, &Provider>,
            provider_id: i64,
            model: &str,
        ) -> Option<&'t mut TargetView> {
            let p = by_id.get(&provider_id)?;
            Some(targets.entry((p.name.clone(), model.to_owned())).or_insert_with(|| empty_view(p, model)))
        }
        for m in models {
            for t in &m.targets {
                slot(&mut targets, &by_id, t.provider_id, &t.upstream_model);
            }
        }
        let s = self.lock();
        let mut nodes: Vec<String> = Vec::new();
        for (node_id, (at, status)) in &s.nodes {
            if now - *at >= STALE_AFTER {
                continue;
            }
            nodes.push(node_id.clone());
            for t in &status.targets {
                let Some(v) = slot(&mut targets, &by_id, t.provider_id, &t.upstream_model) else { continue };
                v.requests = busier(v.requests, t.requests);
                v.tokens = busier(v.tokens, t.tokens);
                v.concurrency = busier(v.concurrency, t.concurrency);
                v.throttled += t.throttled;
                v.last_throttled_at = v.last_throttled_at.max(t.last_throttled_at);
                v.cooling_until = v.cooling_until.max(t.cooling_until.filter(|u| *u > now));
                v.learned.requests = t.learned_requests.or(v.learned.requests);
                v.learned.tokens = t.learned_tokens.or(v.learned.tokens);
                v.nodes.push(NodeTargetView {
                    node_id: node_id.clone(),
                    reported_at: status.at,
                    requests: t.requests,
                    tokens: t.tokens,
                    concurrency: t.concurrency,
                    throttled: t.throttled,
                    last_throttled_at: t.last_throttled_at,
                    cooling_until: t.cooling_until,
                });
            }
        }
        for ((provider_id, model), until) in &s.cooldowns {
            if *until <= now {
                continue;
            }
            if let Some(v) = slot(&mut targets, &by_id, *provider_id, model) {
                v.cooling_until = v.cooling_until.max(Some(*until));
            }
        }
        drop(s);
        nodes.sort();
        let targets = targets
            .into_values()
            .map(|mut v| {
                v.nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
                let recently = v.last_throttled_at.is_some_and(|t| now - t < SATURATED_WINDOW);
                v.saturated =
                    recently || v.nodes.iter().any(|n| full(n.requests) || full(n.tokens) || full(n.concurrency));
                v.state = if v.cooling_until.is_some() {
                    TargetState::Cooling
                } else if v.saturated {
                    TargetState::Saturated
                } else {
                    TargetState::Ok
                };
                v
            })
            .collect();
        UpstreamStatus { generated_at: now, nodes, targets }
    }
}

/// The board's view with the configured caps and targets read from the database.
pub async fn read(store: &super::Store, board: &Board) -> Result<UpstreamStatus, super::DomainError> {
    let providers = super::providers::list(store).await?;
    let models = super::models::list(store).await?;
    Ok(board.view(&providers, &models, Utc::now()))
}

fn empty_view(p: &Provider, model: &str) -> TargetView {
    let own = p.model_caps.iter().find(|m| m.upstream_model == model);
    let configured = ConfiguredCaps {
        rpm: own.and_then(|m| m.rpm).or(p.caps.rpm),
        tpm: own.and_then(|m| m.tpm).or(p.caps.tpm),
        max_concurrency: own.and_then(|m| m.max_concurrency).or(p.caps.max_concurrency),
        scope: if own.is_some() { "model" } else { "provider" }.to_owned(),
    };
    TargetView {
        provider_id: p.id,
        provider: p.name.clone(),
        upstream_model: model.to_owned(),
        configured,
        learned: LearnedLimits::default(),
        requests: None,
        tokens: None,
        concurrency: None,
        throttled: 0,
        last_throttled_at: None,
        cooling_until: None,
        saturated: false,
        state: TargetState::Ok,
        nodes: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cooldown_reported_by_one_node_is_answered_to_the_others_until_it_ends() {
        let board = Board::default();
        let now = Utc::now();
        let until = now + Duration::seconds(20);
        let a = NodeStatus {
            node_id: "a".into(),
            at: now,
            targets: Vec::new(),
            cooldowns: vec![Cooldown { provider_id: 1, upstream_model: "m".into(), until }],
        };
        assert_eq!(board.record(a, now).cooldowns.len(), 1);
        let b = NodeStatus { node_id: "b".into(), at: now, targets: Vec::new(), cooldowns: Vec::new() };
        let ack = board.record(b.clone(), now + Duration::seconds(1));
        assert_eq!(ack.cooldowns, [Cooldown { provider_id: 1, upstream_model: "m".into(), until }]);
        assert!(board.record(b, now + Duration::seconds(21)).cooldowns.is_empty());
    }
}
