//! The compiled, immutable form of a snapshot that the request path reads: hash maps from key hash to key
//! context and from public model name to its route, with upstreams resolved and header values pre-built.
//! A catalog is built once per snapshot version, off the request path, and swapped in whole.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use switchyard_shared::snapshot::{KeyEntry, Snapshot};
use switchyard_shared::{KeyHash, Price};

use crate::health::{Registry, RetryBudget, TargetHealth};
use crate::providers::Upstream;

pub struct Catalog {
    pub version: u64,
    pub created_at: DateTime<Utc>,
    keys: HashMap<KeyHash, KeyCtx>,
    models: HashMap<Box<str>, ModelRoute>,
    /// Public model names, sorted, for `GET /v1/models`.
    model_names: Vec<Box<str>>,
    /// Limits of teams and keys, with budget spend.
    pub limits: crate::limits::Policies,
}

/// What the request path knows about the caller once its key is found.
#[derive(Debug)]
pub struct KeyCtx {
    pub id: i64,
    pub team_id: i64,
    allowed_models: Option<Box<[Box<str>]>>,
    expires_at: Option<DateTime<Utc>>,
}

impl KeyCtx {
    /// The caller when governance is off (benchmarks' baseline): no key, every model, nothing metered.
    pub const UNGOVERNED: KeyCtx = KeyCtx { id: 0, team_id: 0, allowed_models: None, expires_at: None };

    pub fn allows(&self, model: &str) -> bool {
        self.allowed_models.as_ref().is_none_or(|m| m.iter().any(|a| &**a == model))
    }

    pub fn expired_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

pub struct ModelRoute {
    pub name: Box<str>,
    pub price: Price,
    pub retry_budget: Arc<RetryBudget>,
    /// Targets grouped by priority, best tier first.
    pub tiers: Vec<Tier>,
    /// The teams whose keys may use this model; `None` = every team.
    allowed_teams: Option<Box<[i64]>>,
}

impl ModelRoute {
    /// Whether `key`'s team may use this model. The ungoverned caller (id 0; stored keys start at 1) may use all.
    pub fn admits(&self, key: &KeyCtx) -> bool {
        key.id == 0 || self.allowed_teams.as_ref().is_none_or(|t| t.contains(&key.team_id))
    }
}

pub struct Tier {
    pub targets: Vec<Target>,
    pub total_weight: u64,
}

pub struct Target {
    pub upstream: Arc<Upstream>,
    pub upstream_model: Box<str>,
    /// `upstream_model` already encoded as a JSON string, spliced into request bodies as is.
    pub upstream_model_json: Box<str>,
    pub weight: u32,
    pub health: Arc<TargetHealth>,
}

impl Catalog {
    pub fn empty() -> Self {
        Self {
            version: 0,
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            keys: HashMap::new(),
            models: HashMap::new(),
            model_names: Vec::new(),
            limits: Default::default(),
        }
    }

    /// Compiles a validated snapshot. Targets on providers this node cannot speak to are left out, so such a
    /// model answers `no_route` instead of failing mid-request.
    pub fn compile(snapshot: &Snapshot, health: &Registry) -> Self {
        let upstreams: HashMap<i64, Arc<Upstream>> =
            snapshot.providers.iter().filter_map(|p| Upstream::from_entry(p).map(|u| (p.id, Arc::new(u)))).collect();
        let keys = snapshot.keys.iter().map(|k| (k.hash, key_ctx(k))).collect();
        let models = snapshot
            .models
            .iter()
            .map(|m| {
                let mut targets: Vec<(u32, Target)> = m
                    .targets
                    .iter()
                    .filter_map(|t| {
                        let upstream = upstreams.get(&t.provider_id)?.clone();
                        let json = serde_json::to_string(&t.upstream_model).ok()?;
                        Some((
                            t.priority,
                            Target {
                                upstream,
                                upstream_model: t.upstream_model.as_str().into(),
                                upstream_model_json: json.into(),
                                weight: t.weight,
                                health: health.target(t.provider_id, &t.upstream_model),
                            },
                        ))
                    })
                    .collect();
                targets.sort_by_key(|(p, _)| *p);
                let mut tiers: Vec<(u32, Tier)> = Vec::new();
                for (priority, target) in targets {
                    match tiers.last_mut() {
                        Some((p, tier)) if *p == priority => {
                            tier.total_weight += u64::from(target.weight);
                            tier.targets.push(target);
                        }
                        _ => tiers
                            .push((priority, Tier { total_weight: u64::from(target.weight), targets: vec![target] })),
                    }
                }
                let route = ModelRoute {
                    name: m.name.as_str().into(),
                    price: m.price,
                    retry_budget: health.budget(&m.name),
                    tiers: tiers.into_iter().map(|(_, t)| t).collect(),
                    allowed_teams: m.allowed_teams.as_deref().map(Into::into),
                };
                (m.name.as_str().into(), route)
            })
            .collect();
        let mut model_names: Vec<Box<str>> = snapshot.models.iter().map(|m| m.name.as_str().into()).collect();
        model_names.sort();
        let limits = crate::limits::Policies::compile(snapshot);
        Self { version: snapshot.version, created_at: snapshot.created_at, keys, models, model_names, limits }
    }

    /// The public model names `key` may use, sorted.
    pub fn models_for<'a>(&'a self, key: &'a KeyCtx) -> impl Iterator<Item = &'a str> + 'a {
        self.model_names
            .iter()
            .map(|n| &**n)
            .filter(move |n| key.allows(n) && self.models.get(*n).is_some_and(|r| r.admits(key)))
    }

    pub fn key(&self, hash: &KeyHash) -> Option<&KeyCtx> {
        self.keys.get(hash)
    }

    pub fn model(&self, name: &str) -> Option<&ModelRoute> {
        self.models.get(name)
    }

    /// The route of `name` if `key`'s team may use it: a model of other teams does not exist for this key.
    pub fn model_for(&self, name: &str, key: &KeyCtx) -> Option<&ModelRoute> {
        self.models.get(name).filter(|r| r.admits(key))
    }
}

fn key_ctx(k: &KeyEntry) -> KeyCtx {
    KeyCtx {
        id: k.id,
        team_id: k.team_id,
        allowed_models: k.allowed_models.as_ref().map(|m| m.iter().map(|s| s.as_str().into()).collect()),
        expires_at: k.expires_at,
    }
}
