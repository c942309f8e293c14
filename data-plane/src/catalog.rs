//! The compiled, immutable form of a snapshot that the request path reads: hash maps from key hash to key
//! context and from public model name to its route, with upstreams resolved and header values pre-built.
//! A catalog is built once per snapshot version, off the request path, and swapped in whole.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use actix_web::http::header::HeaderValue;
use chrono::{DateTime, Utc};
use hashbrown::HashTable;
use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use switchyard_shared::snapshot::{KeyEntry, Snapshot, SnapshotError, SnapshotKeys};
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
        let mut b = KeyTableBuilder::with_capacity(keys.len());
        for k in keys {
            b.push(k.id, k.hash, k.team_id, k.allowed_models.as_deref(), k.expires_at);
        }
        // `Snapshot::validate` refused duplicate hashes before this is called.
        b.finish().table
    }

    fn get(&self, hash: &KeyHash) -> Option<&KeyCtx> {
        let i = self.index.find(hash.prefix(), |&i| self.entries.get(i as usize).is_some_and(|(h, _)| h == hash))?;
        self.entries.get(*i as usize).map(|(_, ctx)| ctx)
    }
}

/// Fills a [`KeyTable`] one key at a time, sharing equal lists of allowed models between keys.
struct KeyTableBuilder {
    entries: Vec<(KeyHash, KeyCtx)>,
    lists: HashSet<Arc<[Box<str>]>>,
}

impl KeyTableBuilder {
    fn with_capacity(n: usize) -> Self {
        Self { entries: Vec::with_capacity(n), lists: HashSet::new() }
    }

    fn push<S: AsRef<str>>(
        &mut self,
        id: i64,
        hash: KeyHash,
        team_id: i64,
        allowed: Option<&[S]>,
        expires_at: Option<DateTime<Utc>>,
    ) {
        let allowed_models = allowed.map(|m| self.list(m));
        let expires_at_us = expires_at.map_or(i64::MAX, |t| t.timestamp_micros());
        self.entries.push((hash, KeyCtx { id, team_id, allowed_models, expires_at_us }));
    }

    fn list<S: AsRef<str>>(&mut self, models: &[S]) -> Arc<[Box<str>]> {
        let owned: Box<[Box<str>]> = models.iter().map(|s| s.as_ref().into()).collect();
        if let Some(shared) = self.lists.get(&*owned) {
            return shared.clone();
        }
        let shared: Arc<[Box<str>]> = owned.into();
        self.lists.insert(shared.clone());
        shared
    }

    /// Indexes the entries. A hash listed twice keeps its first entry and is reported in `duplicate`.
    fn finish(self) -> DecodedKeys {
        let mut entries = self.entries;
        entries.shrink_to_fit();
        let mut index = HashTable::with_capacity(entries.len());
        let mut duplicate = None;
        for (i, (hash, ctx)) in entries.iter().enumerate() {
            // More than u32::MAX keys cannot be indexed; a snapshot that size does not fit in memory anyway.
            let Ok(i) = u32::try_from(i) else { break };
            let slot = index.entry(
                hash.prefix(),
                |&j: &u32| entries.get(j as usize).is_some_and(|(h, _)| h == hash),
                |&j: &u32| entries.get(j as usize).map_or(0, |(h, _)| h.prefix()),
            );
            match slot {
                hashbrown::hash_table::Entry::Vacant(v) => {
                    v.insert(i);
                }
                hashbrown::hash_table::Entry::Occupied(_) => {
                    duplicate.get_or_insert(ctx.id);
                }
            }
        }
        DecodedKeys { table: KeyTable { entries, index }, duplicate }
    }
}

/// The keys of a snapshot decoded straight into the catalog's key table: no `KeyEntry` per key, no key names
/// (the request path never uses them), strings borrowed from the body where JSON allows. Checked by
/// `Snapshot::validate` like a list of entries, then moved into the catalog by [`Catalog::from_decoded`].
pub struct DecodedKeys {
    table: KeyTable,
    /// The id of the first key whose hash an earlier key already has.
    duplicate: Option<i64>,
}

impl Default for DecodedKeys {
    fn default() -> Self {
        Self { table: KeyTable::new(), duplicate: None }
    }
}

impl SnapshotKeys for DecodedKeys {
    fn check(&self, known_team: impl Fn(i64) -> bool) -> Result<(), SnapshotError> {
        if let Some(id) = self.duplicate {
            return Err(SnapshotError::Duplicate("key hash", id.to_string()));
        }
        match self.table.entries.iter().find(|(_, k)| !known_team(k.team_id)) {
            Some((_, k)) => Err(SnapshotError::UnknownTeam(k.id, k.team_id)),
            None => Ok(()),
        }
    }

    fn ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.table.entries.iter().map(|(_, k)| k.id)
    }
}

/// One element of `keys` as the wire has it ([`KeyEntry`]'s fields), borrowing from the body.
#[derive(Deserialize)]
struct KeyRow<'a> {
    id: i64,
    hash: KeyHash,
    team_id: i64,
    /// Required as in `KeyEntry`, then skipped without being copied.
    #[allow(dead_code)]
    name: IgnoredAny,
    #[serde(default, borrow)]
    allowed_models: Option<Vec<Str<'a>>>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

/// A JSON string borrowed from the body unless it had escapes (`Cow<str>` inside a `Vec` is always owned).
struct Str<'a>(Cow<'a, str>);

impl AsRef<str> for Str<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Borrowed(s)))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

impl<'de> Deserialize<'de> for DecodedKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = DecodedKeys;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of keys")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DecodedKeys, A::Error> {
                let mut b = KeyTableBuilder::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(k) = seq.next_element::<KeyRow<'de>>()? {
                    b.push(k.id, k.hash, k.team_id, k.allowed_models.as_deref(), k.expires_at);
                }
                Ok(b.finish())
            }
        }
        d.deserialize_seq(Keys)
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
    /// The caps this target is kept under (the upstream model's own, the credential's), if it has any.
    pub caps: Option<Arc<crate::limits::TargetPolicy>>,
    /// `x-switchyard-upstream: provider/upstream_model`, built once. Names come from operators; one that is not a
    /// valid header value is left out rather than sent.
    pub upstream_header: Option<HeaderValue>,
}

impl Catalog {
    /// Every target of every model (a target routed by several models comes once per model).
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.models.values().flat_map(|m| m.tiers.iter().flat_map(|t| t.targets.iter()))
    }

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
        Self::assemble(snapshot, KeyTable::build(&snapshot.keys), health)
    }

    /// Compiles a validated snapshot whose keys were decoded straight into the key table.
    pub fn from_decoded(snapshot: Snapshot<DecodedKeys>, health: &Registry) -> Self {
        let mut snapshot = snapshot;
        let keys = std::mem::take(&mut snapshot.keys).table;
        Self::assemble(&snapshot, keys, health)
    }

    fn assemble<K>(snapshot: &Snapshot<K>, keys: KeyTable, health: &Registry) -> Self {
        let upstreams: HashMap<i64, Arc<Upstream>> =
            snapshot.providers.iter().filter_map(|p| Upstream::from_entry(p).map(|u| (p.id, Arc::new(u)))).collect();
        let providers: HashMap<i64, &switchyard_shared::snapshot::ProviderEntry> =
            snapshot.providers.iter().map(|p| (p.id, p)).collect();
        let caps_of = |provider_id: i64, upstream_model: &str| {
            let p = providers.get(&provider_id)?;
            let own = p.model_caps.iter().find(|m| m.upstream_model == upstream_model);
            crate::limits::TargetPolicy::of(&p.caps, own).map(Arc::new)
        };
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
                                caps: caps_of(t.provider_id, &t.upstream_model),
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

    pub fn key_count(&self) -> usize {
        self.keys.entries.len()
    }

    pub fn model_count(&self) -> usize {
        self.models.len()
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

    fn decode(json: &[u8]) -> Result<Snapshot<DecodedKeys>, serde_json::Error> {
        serde_json::from_slice(json)
    }

    #[test]
    fn keys_decoded_straight_into_the_table_serve_like_compiled_ones() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut s = Snapshot::empty(now);
        s.version = 4;
        s.teams = vec![TeamEntry { id: 1, name: "t".into() }];
        s.keys = (0..100).map(|i| key(i, None, None)).collect();
        // An escaped model name cannot be borrowed from the body; it must still come out right.
        s.keys.push(key(100, Some(&["a\"b", "ü"]), Some(now)));
        s.keys.push(key(101, Some(&["a\"b", "ü"]), None));
        let json = serde_json::to_vec(&s).unwrap();
        let d = decode(&json).unwrap();
        d.validate().unwrap();
        assert_eq!(d.keys.ids().count(), 102);
        let c = Catalog::from_decoded(d, &Registry::default());
        assert_eq!((c.version, c.key_count()), (4, 102));
        for i in [0, 57, 99] {
            let k = c.key(&KeyHash::of(&format!("key-{i}"))).unwrap();
            assert_eq!((k.id, k.team_id), (i, 1));
            assert!(k.allows("anything") && !k.expired_at(now));
        }
        let (a, b) = (c.key(&KeyHash::of("key-100")).unwrap(), c.key(&KeyHash::of("key-101")).unwrap());
        assert!(a.allows("a\"b") && a.allows("ü") && !a.allows("c") && a.expired_at(now) && !b.expired_at(now));
        assert!(Arc::ptr_eq(a.allowed_models.as_ref().unwrap(), b.allowed_models.as_ref().unwrap()));
        assert!(c.key(&KeyHash::of("key-5000")).is_none());
    }

    #[test]
    fn decoded_keys_are_validated_like_entries() {
        let mut s = Snapshot::empty(Utc::now());
        s.teams = vec![TeamEntry { id: 1, name: "t".into() }];
        s.keys = vec![key(1, None, None), key(2, None, None)];
        s.keys[1].hash = s.keys[0].hash;
        let dup = decode(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(dup.validate(), Err(SnapshotError::Duplicate("key hash", "2".into())));
        assert_eq!(s.validate(), dup.validate());

        s.keys[1] = key(2, None, None);
        s.keys[1].team_id = 9;
        let orphan = decode(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(orphan.validate(), Err(SnapshotError::UnknownTeam(2, 9)));
        assert_eq!(s.validate(), orphan.validate());

        // Key-scoped limits are checked against the decoded ids.
        s.keys[1].team_id = 1;
        s.limits = vec![switchyard_shared::snapshot::LimitEntry {
            scope: switchyard_shared::snapshot::LimitScope::Key,
            id: 3,
            limits: Default::default(),
            spend: None,
        }];
        let limited = decode(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(limited.validate(), Err(SnapshotError::UnknownLimitScope("key", 3)));
        s.limits[0].id = 2;
        decode(&serde_json::to_vec(&s).unwrap()).unwrap().validate().unwrap();
    }

    #[test]
    fn decoded_keys_keep_the_wire_schema() {
        let head =
            r#"{"schema":1,"version":1,"created_at":"2026-01-01T00:00:00Z","teams":[{"id":1,"name":"t"}],"keys":"#;
        let hash = KeyHash::of("k").to_hex();
        let ok = format!(r#"{head}[{{"id":1,"hash":"{hash}","team_id":1,"name":"n","future":[1]}}]}}"#);
        decode(ok.as_bytes()).unwrap().validate().unwrap();
        // Every field `KeyEntry` requires is required here too, the name included although it is not kept.
        for field in ["id", "hash", "team_id", "name"] {
            let mut row = serde_json::json!({"id": 1, "hash": hash, "team_id": 1, "name": "n"});
            row.as_object_mut().unwrap().remove(field);
            let json = format!("{head}[{row}]}}");
            assert!(decode(json.as_bytes()).is_err(), "accepted a key without {field}");
        }
        let bad_hash = format!(r#"{head}[{{"id":1,"hash":"zz","team_id":1,"name":"n"}}]}}"#);
        assert!(decode(bad_hash.as_bytes()).is_err());
        let absent = r#"{"schema":1,"version":1,"created_at":"2026-01-01T00:00:00Z"}"#;
        assert_eq!(Catalog::from_decoded(decode(absent.as_bytes()).unwrap(), &Registry::default()).key_count(), 0);
    }
}
