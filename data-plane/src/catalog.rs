//! The compiled, immutable form of a snapshot that the request path reads: hash maps from key hash to key
//! context and from public model name to its route, with upstreams resolved and header values pre-built.
//! A catalog is built once per snapshot version, off the request path, and swapped in whole.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::http::header::HeaderValue;
use chrono::{DateTime, Utc};
use hashbrown::HashTable;
use switchyard_shared::snapshot::{KeyEntry, Snapshot};
use switchyard_shared::{KeyHash, Price};

use crate::health::{Registry, RetryBudget, TargetHealth};
use crate::providers::Upstream;

pub struct Catalog {
    pub version: u64,
    pub created_at: DateTime<Utc>,
    keys: KeyTable,
    models: HashMap<Box<str>, ModelRoute>,
    /// Public model names, sorted, for `GET /v1/models`.
    model_names: Vec<Box<str>>,
    /// Limits of teams and keys, with budget spend.
    pub limits: crate::limits::Policies,
}

/// What the request path knows about the caller once its key is found. Kept small: a 1M-key catalog holds a
/// million of these (40 bytes; lists of allowed models are shared between keys with the same list).
#[derive(Debug)]
pub struct KeyCtx {
    pub id: i64,
    pub team_id: i64,
    allowed_models: Option<Arc<[Box<str>]>>,
    /// Microseconds since the epoch; `i64::MAX` when the key never expires.
    expires_at_us: i64,
}

impl KeyCtx {
    /// The caller when governance is off (benchmarks' baseline): no key, every model, nothing metered.
    pub const UNGOVERNED: KeyCtx = KeyCtx { id: 0, team_id: 0, allowed_models: None, expires_at_us: i64::MAX };

    pub fn allows(&self, model: &str) -> bool {
        self.allowed_models.as_ref().is_none_or(|m| m.iter().any(|a| &**a == model))
    }

    pub fn expired_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at_us <= now.timestamp_micros()
    }
}

/// Key hash → key context: the entries in one flat vector, found through a table of indices hashed by the key
/// hash's own prefix (it is SHA-256 output). About 80 bytes per key at 1M keys, against 176 for a
/// `HashMap<KeyHash, KeyCtx>` whose 2^21 buckets each carried a whole entry.
struct KeyTable {
    entries: Vec<(KeyHash, KeyCtx)>,
    index: HashTable<u32>,
}

impl KeyTable {
    fn new() -> Self {
        Self { entries: Vec::new(), index: HashTable::new() }
    }

    fn build(keys: &[KeyEntry]) -> Self {
        let mut entries = Vec::with_capacity(keys.len());
        let mut index = HashTable::with_capacity(keys.len());
        let mut lists: HashMap<&[String], Arc<[Box<str>]>> = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            // More than u32::MAX keys cannot be indexed; a snapshot that size does not fit in memory anyway.
            let Ok(i) = u32::try_from(i) else { break };
            let allowed_models = k
                .allowed_models
                .as_deref()
                .map(|m| lists.entry(m).or_insert_with(|| m.iter().map(|s| s.as_str().into()).collect()).clone());
            let expires_at_us = k.expires_at.map_or(i64::MAX, |t| t.timestamp_micros());
            entries.push((k.hash, KeyCtx { id: k.id, team_id: k.team_id, allowed_models, expires_at_us }));
            // `Snapshot::validate` refused duplicate hashes, so every insert is unique.
            index.insert_unique(k.hash.prefix(), i, |&j| entries[j as usize].0.prefix());
        }
        Self { entries, index }
    }

    fn get(&self, hash: &KeyHash) -> Option<&KeyCtx> {
        let i = self.index.find(hash.prefix(), |&i| self.entries.get(i as usize).is_some_and(|(h, _)| h == hash))?;
        self.entries.get(*i as usize).map(|(_, ctx)| ctx)
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
    /// The provider credential's capacity caps (shared by every target on that provider), if it has any.
    pub caps: Option<Arc<crate::limits::Policy>>,
    /// `x-switchyard-upstream: provider/upstream_model`, built once. Names come from operators; one that is not a
    /// valid header value is left out rather than sent.
    pub upstream_header: Option<HeaderValue>,
}

impl Catalog {
    pub fn empty() -> Self {
        Self {
            version: 0,
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            keys: KeyTable::new(),
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
        let caps: HashMap<i64, Arc<crate::limits::Policy>> = snapshot
            .providers
            .iter()
            .filter_map(|p| crate::limits::Policy::of_caps(&p.caps).map(|c| (p.id, Arc::new(c))))
            .collect();
        let keys = KeyTable::build(&snapshot.keys);
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
                        let upstream_header =
                            HeaderValue::from_str(&format!("{}/{}", upstream.name, t.upstream_model)).ok();
                        Some((
                            t.priority,
                            Target {
                                upstream,
                                upstream_model: t.upstream_model.as_str().into(),
                                upstream_model_json: json.into(),
                                weight: t.weight,
                                health: health.target(t.provider_id, &t.upstream_model),
                                caps: caps.get(&t.provider_id).cloned(),
                                upstream_header,
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

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_shared::snapshot::TeamEntry;

    fn key(id: i64, allowed: Option<&[&str]>, expires_at: Option<DateTime<Utc>>) -> KeyEntry {
        KeyEntry {
            id,
            hash: KeyHash::of(&format!("key-{id}")),
            team_id: 1,
            name: format!("k{id}"),
            allowed_models: allowed.map(|m| m.iter().map(|s| (*s).to_owned()).collect()),
            expires_at,
        }
    }

    #[test]
    fn keys_are_found_by_hash_with_their_permissions_and_expiry() {
        let now = Utc::now();
        let mut s = Snapshot::empty(now);
        s.version = 1;
        s.teams = vec![TeamEntry { id: 1, name: "t".into() }];
        s.keys = (0..1000).map(|i| key(i, None, None)).collect();
        s.keys.push(key(1000, Some(&["a", "b"]), None));
        s.keys.push(key(1001, Some(&["a", "b"]), Some(now)));
        s.validate().unwrap();
        let c = Catalog::compile(&s, &Registry::default());

        for i in [0, 1, 500, 999] {
            let k = c.key(&KeyHash::of(&format!("key-{i}"))).unwrap();
            assert_eq!((k.id, k.team_id), (i, 1));
            assert!(k.allows("anything") && !k.expired_at(now));
        }
        assert!(c.key(&KeyHash::of("key-5000")).is_none());
        let (limited, expiring) = (c.key(&KeyHash::of("key-1000")).unwrap(), c.key(&KeyHash::of("key-1001")).unwrap());
        assert!(limited.allows("b") && !limited.allows("c") && !limited.expired_at(now));
        assert!(expiring.expired_at(now) && !expiring.expired_at(now - chrono::Duration::seconds(1)));
        // Keys with the same list share one copy of it.
        let (a, b) = (limited.allowed_models.as_ref().unwrap(), expiring.allowed_models.as_ref().unwrap());
        assert!(Arc::ptr_eq(a, b));
    }
}
