//! Limits on the request path: requests and tokens per minute, requests in flight, and budgets per calendar
//! period, for the key and for its team (both apply). [`Limiter::admit`] runs after the model is resolved and
//! before the upstream call; the [`Ticket`] it returns is settled with the real usage when the request ends
//! (`Meter::finish`) and frees its concurrency slots when dropped, whichever way the request ended.
//!
//! Without Redis every node enforces every limit on its own (so N nodes admit up to N times a rate). With
//! Redis (`SWITCHYARD_REDIS_URL`) rates and concurrency are fleet-wide, leased in slices (see `redis.rs`); budgets
//! are always reserve-then-settle on the node against the spend the control plane pushes with snapshots.
//! Architecture invariant: no database and no Redis round trip per request on the fast path; a Redis failure
//! never blocks a request (fail-open to per-node limits by default, with a log line and a counter).

pub mod budget;
pub mod concurrency;
pub mod cooldown;
pub mod gcra;
pub mod redis;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant};

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use chrono::{DateTime, Utc};
use switchyard_shared::limits::Spend;
use switchyard_shared::period::{Period, PeriodKind, Zone};
use switchyard_shared::snapshot::{LimitScope, ModelCaps, Snapshot, TargetCaps};
use switchyard_shared::{Price, UsageRecord};
use uuid::Uuid;

use self::budget::{Amount, Ledger, Reservation};
use self::concurrency::{Permit, Slots};
use self::gcra::{Decision, Gcra, Rate};
use self::redis::{Fleet, LEASE_TTL};

/// Limit settings of a node (see `config.rs` for the environment variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSettings {
    /// `redis://host:port[/db]` for fleet-wide limits; `None`: per-node limits (`SWITCHYARD_REDIS_URL`).
    pub redis_url: Option<String>,
    /// Prefix of every Redis key, so deployments (or tests) can share one Redis (`SWITCHYARD_REDIS_PREFIX`).
    pub redis_prefix: String,
    /// Longest wait for one Redis call (`SWITCHYARD_REDIS_TIMEOUT_MS`, default 50).
    pub redis_timeout: Duration,
    /// With Redis unreachable: `true` (default) falls back to per-node limits, `false` refuses limited requests
    /// (`SWITCHYARD_LIMITS_FAIL_OPEN`).
    pub fail_open: bool,
    /// Completion tokens a budget reserves for a request that names no `max_tokens`/`max_completion_tokens`
    /// (`SWITCHYARD_LIMITS_DEFAULT_MAX_TOKENS`, default 4096).
    pub default_max_tokens: u64,
}

impl LimitSettings {
    /// Overrides defaults from the environment; `var` reads one variable (empty counts as unset).
    pub fn read_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), crate::config::ConfigError> {
        let invalid = |name: &'static str, reason: String| crate::config::ConfigError::Invalid { name, reason };
        if let Some(v) = var("SWITCHYARD_REDIS_URL") {
            self.redis_url = Some(v);
        }
        if let Some(v) = var("SWITCHYARD_REDIS_PREFIX") {
            self.redis_prefix = v;
        }
        if let Some(v) = var("SWITCHYARD_REDIS_TIMEOUT_MS") {
            let ms: u64 = v.parse().map_err(|e| invalid("SWITCHYARD_REDIS_TIMEOUT_MS", format!("{e}")))?;
            self.redis_timeout = Duration::from_millis(ms.max(1));
        }
        if let Some(v) = var("SWITCHYARD_LIMITS_FAIL_OPEN") {
            self.fail_open = match v.as_str() {
                "true" | "1" | "on" => true,
                "false" | "0" | "off" => false,
                _ => return Err(invalid("SWITCHYARD_LIMITS_FAIL_OPEN", "use `true` or `false`".into())),
            };
        }
        if let Some(v) = var("SWITCHYARD_LIMITS_DEFAULT_MAX_TOKENS") {
            self.default_max_tokens =
                v.parse().map_err(|e| invalid("SWITCHYARD_LIMITS_DEFAULT_MAX_TOKENS", format!("{e}")))?;
        }
        Ok(())
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            redis_url: None,
            redis_prefix: "switchyard:".to_owned(),
            redis_timeout: Duration::from_millis(50),
            fail_open: true,
            default_max_tokens: 4096,
        }
    }
}

// ---- policies: compiled once per snapshot ----------------------------------------------------------------------

/// The limits of one team or key, ready for the request path.
#[derive(Debug)]
pub struct Policy {
    pub rpm: Option<Rate>,
    pub tpm: Option<Rate>,
    pub max_concurrent: Option<u32>,
    pub budget: Option<BudgetPolicy>,
    /// On an upstream credential's caps: the most of them any one team may take (`TargetCaps::team_share_pct`).
    pub team_share: Option<Box<Policy>>,
}

#[derive(Debug)]
pub struct BudgetPolicy {
    pub budget: switchyard_shared::limits::Budget,
    pub kind: PeriodKind,
    pub zone: Zone,
    pub spend: Option<Spend>,
}

/// Every team's and key's limits in one snapshot, plus which of this fleet's usage the spend already includes.
#[derive(Debug, Default)]
pub struct Policies {
    version: u64,
    entries: HashMap<(LimitScope, i64), Arc<Policy>>,
    watermarks: HashMap<Box<str>, Uuid>,
}

impl Policies {
    pub fn compile<K>(snapshot: &Snapshot<K>) -> Self {
        let entries = snapshot
            .limits
            .iter()
            .filter(|e| !e.limits.is_empty())
            .map(|e| {
                let l = &e.limits;
                let budget = l.budget.as_ref().map(|b| BudgetPolicy {
                    budget: b.clone(),
                    kind: b.period,
                    // The control plane refuses unknown zones; an older node that cannot read one uses UTC.
                    zone: b.zone().unwrap_or(Zone::UTC),
                    spend: e.spend,
                });
                let policy = Policy {
                    rpm: l.rpm.filter(|&n| n > 0).map(Rate::per_minute),
                    tpm: l.tpm.filter(|&n| n > 0).map(Rate::per_minute),
                    max_concurrent: l.max_concurrent,
                    budget,
                    team_share: None,
                };
                ((e.scope, e.id), Arc::new(policy))
            })
            .collect();
        let watermarks =
            snapshot.usage_watermarks.iter().map(|w| (w.node_id.as_str().into(), w.last_record_id)).collect();
        Self { version: snapshot.version, entries, watermarks }
    }

    pub fn get(&self, scope: LimitScope, id: i64) -> Option<&Arc<Policy>> {
        self.entries.get(&(scope, id))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

// ---- time ------------------------------------------------------------------------------------------------------

/// The limiter's clocks: monotonic nanoseconds for rates, wall time for budget periods. A parameter so tests can
/// move time by hand.
pub trait Clock: Send + Sync {
    fn mono_ns(&self) -> u64;
    fn utc(&self) -> DateTime<Utc>;
}

struct SystemClock(Instant);

impl Clock for SystemClock {
    fn mono_ns(&self) -> u64 {
        // Starts at one period so a fresh bucket's TAT (0) is always in the past.
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX).saturating_add(60_000_000_000)
    }
    fn utc(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

// ---- admission ---------------------------------------------------------------------------------------------------

/// What the request path knows at admission.
pub struct Ask<'a> {
    pub team_id: i64,
    pub key_id: i64,
    /// Prompt token estimate (request bytes / 4).
    pub prompt_tokens: u64,
    /// The request body, read for `max_tokens`/`max_completion_tokens` only when a budget applies.
    pub body: &'a [u8],
    pub price: Price,
}

/// Whose limits a state holds: a team's or key's, an upstream provider credential's capacity caps, or one team's
/// share of those caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    Team,
    Key,
    Provider,
    /// One team's share of a provider credential's caps; the state's `sub` is the team.
    ProviderTeam,
    /// One upstream model's own caps on a provider credential (`ModelCaps`); the state's `model` names it.
    ProviderModel,
    /// One team's share of an upstream model's own caps; `sub` is the team, `model` the upstream model.
    ProviderModelTeam,
}

impl Subject {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Team => "team",
            Self::Key => "key",
            Self::Provider => "provider",
            Self::ProviderTeam => "team's share of the provider",
            Self::ProviderModel => "upstream model",
            Self::ProviderModelTeam => "team's share of the upstream model",
        }
    }
}

impl From<LimitScope> for Subject {
    fn from(s: LimitScope) -> Self {
        match s {
            LimitScope::Team => Self::Team,
            LimitScope::Key => Self::Key,
        }
    }
}

/// Why a request was refused; becomes a 429.
#[derive(Debug, Clone)]
pub enum Denied {
    /// A rate or concurrency limit (`rate_limit_exceeded`).
    Rate { scope: Subject, what: &'static str, limit: u64, retry_after: Duration, headers: RateHeaders },
    /// A budget (`insufficient_quota`): nothing more until `resets_at`.
    Budget { scope: Subject, resets_at: DateTime<Utc>, retry_after: Duration },
    /// Fail-closed and Redis unreachable.
    Unavailable,
    /// Every upstream target of the model is at its capacity cap or cooling down after a 429.
    Capacity { model: String, retry_after: Duration },
}

impl Denied {
    pub fn is_quota(&self) -> bool {
        matches!(self, Self::Budget { .. })
    }

    pub fn retry_after(&self) -> Duration {
        match self {
            Self::Rate { retry_after, .. } | Self::Budget { retry_after, .. } | Self::Capacity { retry_after, .. } => {
                *retry_after
            }
            Self::Unavailable => Duration::from_secs(1),
        }
    }

    /// `Retry-After` in whole seconds, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after();
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }

    pub fn message(&self) -> String {
        match self {
            Self::Rate { scope, what, limit, .. } if *what == "concurrent" => {
                format!("Too many concurrent requests for this {}: the limit is {limit}.", scope.as_str())
            }
            Self::Rate { scope, what, limit, retry_after, .. } => format!(
                "Rate limit reached for this {}: {limit} {what} per minute. Try again in {}.",
                scope.as_str(),
                format_duration(*retry_after)
            ),
            Self::Budget { scope, resets_at, .. } => format!(
                "This {}'s budget for the current period is used up; it resets at {}.",
                scope.as_str(),
                resets_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            Self::Unavailable => "Rate limits cannot be checked right now; try again shortly.".to_owned(),
            Self::Capacity { model, retry_after } => format!(
                "Every upstream of model `{model}` is at its rate limit. Try again in {}.",
                format_duration(*retry_after)
            ),
        }
    }

    pub fn headers(&self) -> Option<&RateHeaders> {
        match self {
            Self::Rate { headers, .. } => Some(headers),
            _ => None,
        }
    }
}

/// One limit's state for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateView {
    pub limit: u64,
    pub remaining: u64,
    pub reset: Duration,
}

/// OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`: the tightest of the key's and team's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<RateView>,
    pub tokens: Option<RateView>,
}

impl RateHeaders {
    fn merge(slot: &mut Option<RateView>, v: RateView) {
        if slot.is_none_or(|cur| v.remaining < cur.remaining) {
            *slot = Some(v);
        }
    }

    pub fn write(&self, headers: &mut HeaderMap) {
        for (suffix, view) in [("requests", self.requests), ("tokens", self.tokens)] {
            let Some(v) = view else { continue };
            for (name, value) in [
                ("limit", v.limit.to_string()),
                ("remaining", v.remaining.to_string()),
                ("reset", format_duration(v.reset)),
            ] {
                if let (Ok(n), Ok(val)) =
                    (HeaderName::try_from(format!("x-ratelimit-{name}-{suffix}")), HeaderValue::try_from(value))
                {
                    headers.insert(n, val);
                }
            }
        }
    }
}

/// OpenAI's duration format: `20ms`, `1s`, `6m0s`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if secs < 60 { format!("{secs}s") } else { format!("{}m{}s", secs / 60, secs % 60) }
}

/// An admitted request's hold on its limits. Settled once with the real usage; dropping it frees its concurrency
/// slots and gives back any reservation that was never settled.
pub struct Ticket {
    pub headers: RateHeaders,
    held: Mutex<Held>,
    limiter: Weak<Inner>,
}

#[derive(Default)]
struct Held {
    permits: Vec<Permit>,
    reservations: Vec<(Arc<ScopeState>, Reservation)>,
    /// Token-rate charges made on the prompt estimate, corrected at settlement.
    token_charges: Vec<(Arc<ScopeState>, Rate, u64)>,
}

impl Ticket {
    /// Replaces reservations and estimates by the request's real usage; frees the concurrency slots.
    pub fn settle(&self, record: &UsageRecord) {
        let held = std::mem::take(&mut *lock(&self.held));
        let tokens = record.prompt_tokens.saturating_add(record.completion_tokens);
        let actual = Amount { micros: record.cost_micros, tokens };
        for (state, r) in held.reservations {
            lock(&state.ledger).settle(r, actual, record.id);
        }
        if let Some(inner) = self.limiter.upgrade() {
            for (state, rate, charged) in held.token_charges {
                let delta = i64::try_from(tokens).unwrap_or(i64::MAX) - i64::try_from(charged).unwrap_or(i64::MAX);
                inner.correct_tokens(&state, rate, delta);
            }
        }
        drop(held.permits);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let held = std::mem::take(&mut *lock(&self.held));
        for (state, r) in held.reservations {
            lock(&state.ledger).release(r);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a few arithmetic steps that leave the state consistent even if a panic
    // interrupted the holder, so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---- the limiter -------------------------------------------------------------------------------------------------

/// Counters for operators and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitStats {
    /// Admissions decided without Redis because it was unreachable (fail-open or fail-closed).
    pub redis_fallbacks: u64,
    /// Redis calls that failed or timed out.
    pub redis_errors: u64,
    pub denied_rate: u64,
    pub denied_budget: u64,
}

#[derive(Default)]
struct RateState {
    local: Gcra,
    /// Fleet mode: units leased from Redis, usable until `pool_expires` (monotonic ns).
    pool: u64,
    pool_expires: u64,
    /// Fleet mode: the fleet bucket as of the last lease, for headers.
    fleet_remaining: u64,
    fleet_reset: Duration,
    /// Fleet mode: token corrections not yet sent to Redis.
    pending: i64,
    pending_rate: Option<Rate>,
}

struct ScopeState {
    scope: Subject,
    id: i64,
    /// The team of a `ProviderTeam`/`ProviderModelTeam` state (whose `id` is the provider); 0 otherwise.
    sub: i64,
    /// The upstream model of a `ProviderModel`/`ProviderModelTeam` state.
    model: Option<Arc<str>>,
    rpm: Mutex<RateState>,
    tpm: Mutex<RateState>,
    slots: Arc<Slots>,
    ledger: Mutex<Ledger>,
}

impl ScopeState {
    /// This state's Redis key for `kind` (`rpm`, `tpm`, `conc`).
    fn fleet_key(&self, fleet: &Fleet, kind: &str) -> String {
        let model = self.model.as_deref().unwrap_or_default();
        match self.scope {
            Subject::ProviderTeam => fleet.key(kind, &format!("provider:{}:team", self.id), self.sub),
            Subject::ProviderModel => fleet.key(kind, "provider", self.id) + ":model:" + model,
            Subject::ProviderModelTeam => {
                fleet.key(kind, &format!("provider:{}:team", self.id), self.sub) + ":model:" + model
            }
            s => fleet.key(kind, s.as_str(), self.id),
        }
    }
}

/// (whose, id, sub, hash of the upstream model or 0): see [`ScopeState`].
type StateKey = (Subject, i64, i64, u64);

struct Inner {
    node_id: Arc<str>,
    settings: LimitSettings,
    fleet: Option<Fleet>,
    scopes: RwLock<HashMap<StateKey, Arc<ScopeState>>>,
    clock: Box<dyn Clock>,
    fallbacks: AtomicU64,
    denied_rate: AtomicU64,
    denied_budget: AtomicU64,
    /// Rung when an upstream 429 starts a cool-down here, so the status reporter tells the control plane at once.
    cooled: tokio::sync::Notify,
}

pub struct Limiter {
    inner: Arc<Inner>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Limiter {
    fn drop(&mut self) {
        if let Some(t) = &self.ticker {
            t.abort();
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("SWITCHYARD_REDIS_URL is not a Redis URL: {0}")]
pub struct LimiterError(#[from] ::redis::RedisError);

/// How often the fleet task hands back idle slots and sends token corrections.
const TICK: Duration = Duration::from_millis(100);
/// Heartbeats for held slots every this many ticks.
const HEARTBEAT_TICKS: u32 = 20;

impl Limiter {
    /// A limiter; with a Redis URL it also starts the background fleet task (needs a tokio runtime).
    pub fn new(settings: LimitSettings, node_id: Arc<str>) -> Result<Self, LimiterError> {
        Self::with_clock(settings, node_id, Box::new(SystemClock(Instant::now())))
    }

    pub fn with_clock(settings: LimitSettings, node_id: Arc<str>, clock: Box<dyn Clock>) -> Result<Self, LimiterError> {
        let fleet = match &settings.redis_url {
            Some(url) => Some(Fleet::new(url, &settings.redis_prefix, &node_id, settings.redis_timeout)?),
            None => None,
        };
        let inner = Arc::new(Inner {
            node_id,
            fleet,
            settings,
            scopes: RwLock::new(HashMap::new()),
            clock,
            fallbacks: AtomicU64::new(0),
            denied_rate: AtomicU64::new(0),
            denied_budget: AtomicU64::new(0),
            cooled: tokio::sync::Notify::new(),
        });
        let ticker = inner.fleet.is_some().then(|| tokio::spawn(fleet_task(Arc::downgrade(&inner))));
        Ok(Self { inner, ticker })
    }

    /// With Redis: waits up to `within` for the connection (a node calls this once at start, so its first
    /// requests are already fleet-wide). True without Redis.
    pub async fn connect(&self, within: Duration) -> bool {
        match &self.inner.fleet {
            Some(f) => f.connect(within).await,
            None => true,
        }
    }

    /// Resolves when a cool-down started on this node since the last call (or at once if one did meanwhile).
    pub async fn cooled(&self) {
        self.inner.cooled.notified().await;
    }

    pub fn stats(&self) -> LimitStats {
        let i = &self.inner;
        LimitStats {
            redis_fallbacks: i.fallbacks.load(Ordering::Relaxed),
            redis_errors: i.fleet.as_ref().map_or(0, |f| f.health.errors.load(Ordering::Relaxed)),
            denied_rate: i.denied_rate.load(Ordering::Relaxed),
            denied_budget: i.denied_budget.load(Ordering::Relaxed),
        }
    }

    /// Checks and takes every limit of the key and its team. `Ok(None)`: neither has limits.
    pub async fn admit(&self, policies: &Policies, ask: &Ask<'_>) -> Result<Option<Ticket>, Denied> {
        let key = policies.get(LimitScope::Key, ask.key_id);
        let team = policies.get(LimitScope::Team, ask.team_id);
        if key.is_none() && team.is_none() {
            return Ok(None);
        }
        let scopes: Vec<(Arc<ScopeState>, &Policy)> =
            [(LimitScope::Key, ask.key_id, key), (LimitScope::Team, ask.team_id, team)]
                .into_iter()
                .filter_map(|(s, id, p)| p.map(|p| (self.inner.state(s.into(), id), &**p)))
                .collect();
        let ticket = Ticket {
            headers: RateHeaders::default(),
            held: Mutex::new(Held::default()),
            limiter: Arc::downgrade(&self.inner),
        };
        match self.inner.take_all(policies, ask, &scopes, ticket).await {
            Ok(t) => Ok(Some(t)),
            Err(d) => {
                let counter = if d.is_quota() { &self.inner.denied_budget } else { &self.inner.denied_rate };
                counter.fetch_add(1, Ordering::Relaxed);
                Err(d)
            }
        }
    }
}

/// `max_tokens` or `max_completion_tokens` of a request body, if it names one.
impl Limiter {
    /// Takes one request's share of an upstream provider credential's caps (`policy`, compiled from the snapshot's
    /// `TargetCaps`): a request, its prompt estimate in tokens, a slot in flight. Refused when the credential is at
    /// its cap, with the time until it has room again; routing then tries the next target. With a team share set,
    /// `team_id` also takes from its own share of the caps, and is refused past it.
    pub async fn admit_target(
        &self,
        provider_id: i64,
        team_id: i64,
        policy: &TargetPolicy,
        prompt_tokens: u64,
    ) -> Result<Ticket, Denied> {
        let ticket = Ticket {
            headers: RateHeaders::default(),
            held: Mutex::new(Held::default()),
            limiter: Arc::downgrade(&self.inner),
        };
        let ask = Ask { team_id: 0, key_id: 0, prompt_tokens, body: &[], price: Price::default() };
        // The team's shares first: a team over its share should not spend the credential's own allowance.
        let mut scopes = Vec::with_capacity(4);
        let model = policy.model.as_ref();
        if let Some((m, p)) = model
            && let Some(share) = &p.team_share
        {
            scopes.push((self.inner.state_of(Subject::ProviderModelTeam, provider_id, team_id, Some(m)), &**share));
        }
        if let Some(share) = policy.provider.as_ref().and_then(|p| p.team_share.as_deref()) {
            scopes.push((self.inner.state_of(Subject::ProviderTeam, provider_id, team_id, None), share));
        }
        if let Some((m, p)) = model {
            scopes.push((self.inner.state_of(Subject::ProviderModel, provider_id, 0, Some(m)), p));
        }
        if let Some(p) = &policy.provider {
            scopes.push((self.inner.state(Subject::Provider, provider_id), p));
        }
        self.inner.take_all(&Policies::default(), &ask, &scopes, ticket).await
    }

    /// How much of a target's caps is in use on this node right now (rates: taken in the rolling minute; with
    /// Redis, the fleet's figure as of the last lease), without taking anything.
    pub fn target_use(&self, provider_id: i64, policy: &TargetPolicy) -> TargetUse {
        let mut out = TargetUse::default();
        let now = self.inner.clock.mono_ns();
        let read = |state: Option<Arc<ScopeState>>, p: &Policy, out: &mut TargetUse| {
            let rate_use = |cell: Option<&Mutex<RateState>>, rate: Rate| {
                let used = cell.map_or(0, |c| {
                    let s = lock(c);
                    let remaining = if self.inner.fleet.is_some() && s.pool_expires > now {
                        s.fleet_remaining + s.pool
                    } else {
                        s.local.peek(rate, now).0
                    };
                    rate.limit.saturating_sub(remaining)
                });
                (used, rate.limit)
            };
            if let Some(rate) = p.rpm {
                out.requests = Some(rate_use(state.as_ref().map(|s| &s.rpm), rate));
            }
            if let Some(rate) = p.tpm {
                out.tokens = Some(rate_use(state.as_ref().map(|s| &s.tpm), rate));
            }
            if let Some(max) = p.max_concurrent {
                out.concurrency = Some((state.as_ref().map_or(0, |s| u64::from(s.slots.in_use())), u64::from(max)));
            }
        };
        if let Some(p) = &policy.provider {
            read(self.inner.find(Subject::Provider, provider_id, 0, None), p, &mut out);
        }
        if let Some((m, p)) = &policy.model {
            read(self.inner.find(Subject::ProviderModel, provider_id, 0, Some(m)), p, &mut out);
        }
        out
    }
}

/// [`Limiter::target_use`]: `(used, cap)` per capped dimension.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetUse {
    pub requests: Option<(u64, u64)>,
    pub tokens: Option<(u64, u64)>,
    pub concurrency: Option<(u64, u64)>,
}

/// An upstream model named in a limiter state, with a stable hash of its name for the state's key.
#[derive(Debug, Clone)]
pub struct ModelKey {
    pub name: Arc<str>,
    hash: u64,
}

impl ModelKey {
    pub fn new(name: &str) -> Self {
        // FNV-1a: stable across processes and snapshots, which is all the key needs.
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        Self { name: name.into(), hash: hash.max(1) }
    }
}

/// The caps a target (provider credential + upstream model) is kept under: its upstream model's own caps for the
/// dimensions they set, the credential-wide caps for the others (compiled once per snapshot).
#[derive(Debug)]
pub struct TargetPolicy {
    /// The credential-wide caps this target counts against, shared by the credential's other upstream models.
    pub provider: Option<Policy>,
    /// The upstream model's own caps, counted for (provider, upstream model) alone.
    pub model: Option<(ModelKey, Policy)>,
}

impl TargetPolicy {
    /// `None` when neither the credential nor the upstream model has a cap.
    pub fn of(caps: &switchyard_shared::snapshot::TargetCaps, model_caps: Option<&ModelCaps>) -> Option<Self> {
        let Some(mc) = model_caps else {
            return Policy::of_caps(caps).map(|p| Self { provider: Some(p), model: None });
        };
        let own = TargetCaps {
            rpm: mc.rpm,
            tpm: mc.tpm,
            max_concurrency: mc.max_concurrency,
            team_share_pct: caps.team_share_pct,
        };
        let rest = TargetCaps {
            rpm: caps.rpm.filter(|_| mc.rpm.is_none()),
            tpm: caps.tpm.filter(|_| mc.tpm.is_none()),
            max_concurrency: caps.max_concurrency.filter(|_| mc.max_concurrency.is_none()),
            team_share_pct: caps.team_share_pct,
        };
        let provider = Policy::of_caps(&rest);
        let model = Policy::of_caps(&own).map(|p| (ModelKey::new(&mc.upstream_model), p));
        (provider.is_some() || model.is_some()).then_some(Self { provider, model })
    }

    /// Whether the target's caps are its upstream model's own (`model`), the credential's (`provider`) or both.
    pub fn scope(&self) -> &'static str {
        match (&self.provider, &self.model) {
            (Some(_), Some(_)) => "model+provider",
            (None, Some(_)) => "model",
            _ => "provider",
        }
    }
}

impl Policy {
    /// An upstream credential's caps as a policy (no budget); `None` when it has none.
    pub fn of_caps(caps: &switchyard_shared::snapshot::TargetCaps) -> Option<Self> {
        let pct = caps.team_share_pct.filter(|p| (1..100).contains(p));
        (!caps.is_empty()).then(|| Self {
            rpm: caps.rpm.filter(|&n| n > 0).map(Rate::per_minute),
            tpm: caps.tpm.filter(|&n| n > 0).map(Rate::per_minute),
            max_concurrent: caps.max_concurrency.filter(|&n| n > 0),
            budget: None,
            team_share: pct.map(|pct| {
                // Rounded down, but never below 1: a share cannot shut a team out.
                let share = |n: u64| (n.saturating_mul(u64::from(pct)) / 100).max(1);
                Box::new(Self {
                    rpm: caps.rpm.filter(|&n| n > 0).map(|n| Rate::per_minute(share(n))),
                    tpm: caps.tpm.filter(|&n| n > 0).map(|n| Rate::per_minute(share(n))),
                    max_concurrent: caps
                        .max_concurrency
                        .filter(|&n| n > 0)
                        .map(|n| u32::try_from(share(u64::from(n))).unwrap_or(n)),
                    budget: None,
                    team_share: None,
                })
            }),
        })
    }
}

fn completion_cap(body: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Caps {
        max_tokens: Option<u64>,
        max_completion_tokens: Option<u64>,
    }
    let c: Caps = serde_json::from_slice(body).ok()?;
    c.max_completion_tokens.or(c.max_tokens)
}

enum Which {
    Requests,
    Tokens,
}

impl Inner {
    fn state(&self, scope: Subject, id: i64) -> Arc<ScopeState> {
        self.state_of(scope, id, 0, None)
    }

    /// The state if it exists, without creating one.
    fn find(&self, scope: Subject, id: i64, sub: i64, model: Option<&ModelKey>) -> Option<Arc<ScopeState>> {
        let key = (scope, id, sub, model.map_or(0, |m| m.hash));
        self.scopes.read().unwrap_or_else(|e| e.into_inner()).get(&key).cloned()
    }

    fn state_of(&self, scope: Subject, id: i64, sub: i64, model: Option<&ModelKey>) -> Arc<ScopeState> {
        if let Some(s) = self.find(scope, id, sub, model) {
            return s;
        }
        let key = (scope, id, sub, model.map_or(0, |m| m.hash));
        let period = Period::containing(PeriodKind::Monthly, Zone::UTC, self.clock.utc());
        self.scopes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_insert_with(|| {
                Arc::new(ScopeState {
                    scope,
                    id,
                    sub,
                    model: model.map(|m| m.name.clone()),
                    rpm: Mutex::default(),
                    tpm: Mutex::default(),
                    slots: Arc::default(),
                    ledger: Mutex::new(Ledger::new(period)),
                })
            })
            .clone()
    }

    async fn take_all(
        &self,
        policies: &Policies,
        ask: &Ask<'_>,
        scopes: &[(Arc<ScopeState>, &Policy)],
        mut ticket: Ticket,
    ) -> Result<Ticket, Denied> {
        // Rates first, refunded if anything later refuses: a refused request should not count against a rate.
        let mut charged: Vec<(Arc<ScopeState>, Which, Rate, u64)> = Vec::new();
        let outcome = self.take_rates(ask, scopes, &mut ticket, &mut charged).await;
        let outcome = match outcome {
            Ok(()) => self.take_slots(scopes, &ticket).await,
            Err(d) => Err(d),
        };
        let outcome = match outcome {
            Ok(()) => self.take_budgets(policies, ask, scopes, &ticket),
            Err(d) => Err(d),
        };
        match outcome {
            Ok(()) => {
                let mut held = lock(&ticket.held);
                for (state, which, rate, cost) in charged {
                    if matches!(which, Which::Tokens) {
                        held.token_charges.push((state, rate, cost));
                    }
                }
                drop(held);
                Ok(ticket)
            }
            Err(d) => {
                for (state, which, rate, cost) in charged {
                    self.refund(&state, which, rate, cost);
                }
                Err(d)
            }
        }
    }

    async fn take_rates(
        &self,
        ask: &Ask<'_>,
        scopes: &[(Arc<ScopeState>, &Policy)],
        ticket: &mut Ticket,
        charged: &mut Vec<(Arc<ScopeState>, Which, Rate, u64)>,
    ) -> Result<(), Denied> {
        for (state, policy) in scopes {
            if let Some(rate) = policy.rpm {
                let view = self.take_rate(state, Which::Requests, rate, 1, &ticket.headers).await?;
                RateHeaders::merge(&mut ticket.headers.requests, view);
                charged.push((state.clone(), Which::Requests, rate, 1));
            }
            if let Some(rate) = policy.tpm {
                let cost = ask.prompt_tokens.clamp(1, rate.limit);
                let view = self.take_rate(state, Which::Tokens, rate, cost, &ticket.headers).await?;
                RateHeaders::merge(&mut ticket.headers.tokens, view);
                charged.push((state.clone(), Which::Tokens, rate, cost));
            }
        }
        Ok(())
    }

    fn rate_state<'s>(state: &'s ScopeState, which: &Which) -> &'s Mutex<RateState> {
        match which {
            Which::Requests => &state.rpm,
            Which::Tokens => &state.tpm,
        }
    }

    async fn take_rate(
        &self,
        state: &ScopeState,
        which: Which,
        rate: Rate,
        cost: u64,
        headers: &RateHeaders,
    ) -> Result<RateView, Denied> {
        let now = self.clock.mono_ns();
        let cell = Self::rate_state(state, &which);
        let denied = |retry_after: Duration, reset: Duration| {
            let mut h = *headers;
            let view = RateView { limit: rate.limit, remaining: 0, reset };
            match which {
                Which::Requests => RateHeaders::merge(&mut h.requests, view),
                Which::Tokens => RateHeaders::merge(&mut h.tokens, view),
            }
            Denied::Rate {
                scope: state.scope,
                what: if matches!(which, Which::Requests) { "requests" } else { "tokens" },
                limit: rate.limit,
                retry_after,
                headers: h,
            }
        };
        let local = |s: &mut RateState| match s.local.check(rate, cost, now) {
            Decision::Allowed { remaining, reset } => Ok(RateView { limit: rate.limit, remaining, reset }),
            Decision::Denied { retry_after, reset } => Err(denied(retry_after, reset)),
        };
        let Some(fleet) = &self.fleet else {
            return local(&mut lock(cell));
        };
        let (need, key) = {
            let mut s = lock(cell);
            if s.pool_expires <= now {
                s.pool = 0;
            }
            if s.pool >= cost {
                s.pool -= cost;
                return Ok(RateView { limit: rate.limit, remaining: s.fleet_remaining + s.pool, reset: s.fleet_reset });
            }
            let kind = if matches!(which, Which::Requests) { "rpm" } else { "tpm" };
            (cost - s.pool, state.fleet_key(fleet, kind))
        };
        let slice = (rate.limit / 50).clamp(1, 10_000);
        match fleet.lease_rate(&key, rate, need, need.max(slice)).await {
            Ok(lease) if lease.granted >= need => {
                let mut s = lock(cell);
                let now = self.clock.mono_ns();
                if s.pool_expires <= now {
                    s.pool = 0;
                }
                s.pool = (s.pool + lease.granted).saturating_sub(cost);
                s.pool_expires = now + u64::try_from(LEASE_TTL.as_nanos()).unwrap_or(u64::MAX);
                s.fleet_remaining = lease.remaining;
                s.fleet_reset = lease.reset;
                Ok(RateView { limit: rate.limit, remaining: lease.remaining + s.pool, reset: lease.reset })
            }
            Ok(lease) => Err(denied(lease.retry_after.max(Duration::from_millis(1)), lease.reset)),
            Err(_) => {
                self.fallbacks.fetch_add(1, Ordering::Relaxed);
                if self.settings.fail_open { local(&mut lock(cell)) } else { Err(Denied::Unavailable) }
            }
        }
    }

    fn refund(&self, state: &ScopeState, which: Which, rate: Rate, cost: u64) {
        let mut s = lock(Self::rate_state(state, &which));
        if self.fleet.is_some() && s.pool_expires > self.clock.mono_ns() {
            s.pool += cost;
        } else {
            s.local.adjust(rate, -i64::try_from(cost).unwrap_or(i64::MAX), self.clock.mono_ns());
        }
    }

    /// A token-rate correction after the response: local buckets at once, the fleet bucket on the next tick.
    fn correct_tokens(&self, state: &ScopeState, rate: Rate, delta: i64) {
        if delta == 0 {
            return;
        }
        let mut s = lock(&state.tpm);
        if self.fleet.is_some() {
            s.pending = s.pending.saturating_add(delta);
            s.pending_rate = Some(rate);
        }
        // The local bucket is corrected either way: it is what applies while Redis is down.
        s.local.adjust(rate, delta, self.clock.mono_ns());
    }

    async fn take_slots(&self, scopes: &[(Arc<ScopeState>, &Policy)], ticket: &Ticket) -> Result<(), Denied> {
        for (state, policy) in scopes {
            let Some(max) = policy.max_concurrent else { continue };
            let refuse = || Denied::Rate {
                scope: state.scope,
                what: "concurrent",
                limit: u64::from(max),
                retry_after: Duration::from_secs(1),
                headers: ticket.headers,
            };
            let permit = match &self.fleet {
                None => state.slots.try_acquire(max).ok_or_else(refuse)?,
                Some(fleet) => match state.slots.try_acquire_leased() {
                    Some(p) => p,
                    None => {
                        let key = state.fleet_key(fleet, "conc");
                        match fleet.acquire_slots(&key, max, 1).await {
                            Ok(n) if n > 0 => state.slots.add_leased_and_acquire(n),
                            Ok(_) => return Err(refuse()),
                            Err(_) => {
                                self.fallbacks.fetch_add(1, Ordering::Relaxed);
                                if !self.settings.fail_open {
                                    return Err(Denied::Unavailable);
                                }
                                state.slots.try_acquire(max).ok_or_else(refuse)?
                            }
                        }
                    }
                },
            };
            lock(&ticket.held).permits.push(permit);
        }
        Ok(())
    }

    fn take_budgets(
        &self,
        policies: &Policies,
        ask: &Ask<'_>,
        scopes: &[(Arc<ScopeState>, &Policy)],
        ticket: &Ticket,
    ) -> Result<(), Denied> {
        if scopes.iter().all(|(_, p)| p.budget.is_none()) {
            return Ok(());
        }
        let now = self.clock.utc();
        let completion = completion_cap(ask.body).unwrap_or(self.settings.default_max_tokens);
        let want = Amount {
            micros: ask.price.cost(ask.prompt_tokens, completion),
            tokens: ask.prompt_tokens.saturating_add(completion),
        };
        let watermark = policies.watermarks.get(&*self.node_id).copied();
        for (state, policy) in scopes {
            let Some(b) = &policy.budget else { continue };
            let period = Period::containing(b.kind, b.zone, now);
            let mut ledger = lock(&state.ledger);
            ledger.roll(period);
            ledger.sync(policies.version, b.spend, watermark);
            match ledger.reserve(b.budget.caps(now), want) {
                Ok(r) => lock(&ticket.held).reservations.push((state.clone(), r)),
                Err(e) => {
                    let retry_after = (e.resets_at - now).to_std().unwrap_or(Duration::from_secs(1));
                    // Reservations taken for an earlier scope go back when the ticket is dropped.
                    return Err(Denied::Budget { scope: state.scope, resets_at: e.resets_at, retry_after });
                }
            }
        }
        Ok(())
    }
}

/// Fleet mode, in the background: hands idle concurrency slots back, sends token corrections, and keeps held
/// slots alive. Ends when the limiter is dropped.
async fn fleet_task(inner: Weak<Inner>) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u32 = 0;
    loop {
        ticker.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let Some(fleet) = &inner.fleet else { return };
        n = n.wrapping_add(1);
        let states: Vec<Arc<ScopeState>> =
            inner.scopes.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        for state in states {
            let key = state.fleet_key(fleet, "conc");
            let idle = state.slots.take_idle();
            if idle > 0 && fleet.release_slots(&key, idle).await.is_err() {
                // Redis lost or will expire them; nothing to hand back later.
                state.slots.forget_leases();
            }
            if n.is_multiple_of(HEARTBEAT_TICKS) && state.slots.leased() > 0 && fleet.heartbeat(&key).await.is_err() {
                state.slots.forget_leases();
            }
            let (pending, rate) = {
                let mut s = lock(&state.tpm);
                (std::mem::take(&mut s.pending), s.pending_rate)
            };
            if let (Some(rate), true) = (rate, pending != 0) {
                let key = state.fleet_key(fleet, "tpm");
                if fleet.adjust_rate(&key, rate, pending).await.is_err() {
                    lock(&state.tpm).pending += pending;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use switchyard_shared::limits::{Budget, Limits};
    use switchyard_shared::snapshot::{LimitEntry, UsageWatermark};
    use switchyard_shared::usage::UsageSource;

    use super::*;

    const SEC: u64 = 1_000_000_000;

    struct ManualClock {
        mono: AtomicU64,
        utc: Mutex<DateTime<Utc>>,
    }

    impl Clock for Arc<ManualClock> {
        fn mono_ns(&self) -> u64 {
            self.mono.load(Ordering::Relaxed)
        }
        fn utc(&self) -> DateTime<Utc> {
            *self.utc.lock().unwrap()
        }
    }

    impl ManualClock {
        fn advance(&self, secs: u64) {
            self.mono.fetch_add(secs * SEC, Ordering::Relaxed);
            let mut utc = self.utc.lock().unwrap();
            *utc += chrono::Duration::seconds(secs as i64);
        }
    }

    fn limiter() -> (Limiter, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock {
            mono: AtomicU64::new(1000 * SEC),
            utc: Mutex::new("2026-03-31T23:59:00Z".parse().unwrap()),
        });
        let l = Limiter::with_clock(LimitSettings::default(), "node-a".into(), Box::new(clock.clone())).unwrap();
        (l, clock)
    }

    fn policies(version: u64, entries: Vec<(LimitScope, i64, Limits, Option<Spend>)>) -> Policies {
        let mut s = Snapshot::empty(Utc::now());
        s.version = version;
        s.limits =
            entries.into_iter().map(|(scope, id, limits, spend)| LimitEntry { scope, id, limits, spend }).collect();
        Policies::compile(&s)
    }

    const PRICE: Price = Price { input_per_mtok: 1_000_000, output_per_mtok: 2_000_000 };

    fn ask(body: &[u8]) -> Ask<'_> {
        Ask { team_id: 1, key_id: 10, prompt_tokens: 100, body, price: PRICE }
    }

    fn record(prompt: u64, completion: u64) -> UsageRecord {
        UsageRecord {
            id: Uuid::now_v7(),
            request_id: "r".into(),
            node_id: "node-a".into(),
            team_id: 1,
            key_id: 10,
            model: "m".into(),
            provider_id: None,
            upstream_model: None,
            started_at: Utc::now(),
            duration_us: 1,
            ttft_us: None,
            status: 200,
            error_code: None,
            stream: false,
            prompt_tokens: prompt,
            completion_tokens: completion,
            cached_input_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            usage_source: UsageSource::Upstream,
            cost_micros: PRICE.cost(prompt, completion),
        }
    }

    #[tokio::test]
    async fn no_limits_means_no_ticket() {
        let (l, _) = limiter();
        assert!(l.admit(&Policies::default(), &ask(b"{}")).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn requests_per_minute_with_headers_and_retry_after() {
        let (l, clock) = limiter();
        let p = policies(1, vec![(LimitScope::Key, 10, Limits { rpm: Some(2), ..Default::default() }, None)]);
        let t = l.admit(&p, &ask(b"{}")).await.unwrap().unwrap();
        assert_eq!(t.headers.requests, Some(RateView { limit: 2, remaining: 1, reset: Duration::from_secs(30) }));
        assert!(l.admit(&p, &ask(b"{}")).await.unwrap().is_some());
        let d = l.admit(&p, &ask(b"{}")).await.err().unwrap();
        assert_eq!(d.retry_after_secs(), 30);
        assert!(!d.is_quota());
        assert_eq!(d.headers().unwrap().requests.unwrap().remaining, 0);
        let mut h = HeaderMap::new();
        d.headers().unwrap().write(&mut h);
        assert_eq!(h.get("x-ratelimit-limit-requests").unwrap(), "2");
        assert_eq!(h.get("x-ratelimit-remaining-requests").unwrap(), "0");
        assert_eq!(h.get("x-ratelimit-reset-requests").unwrap(), "1m0s");
        clock.advance(30);
        assert!(l.admit(&p, &ask(b"{}")).await.is_ok());
        assert_eq!(l.stats().denied_rate, 1);
    }

    #[tokio::test]
    async fn key_and_team_both_apply_and_a_refusal_gives_the_rate_back() {
        let (l, _) = limiter();
        let p = policies(
            1,
            vec![
                (LimitScope::Key, 10, Limits { rpm: Some(5), ..Default::default() }, None),
                (LimitScope::Team, 1, Limits { max_concurrent: Some(1), ..Default::default() }, None),
            ],
        );
        let first = l.admit(&p, &ask(b"{}")).await.unwrap().unwrap();
        assert_eq!(first.headers.requests.unwrap().remaining, 4);
        // The team's one slot is busy: refused, and the key's rate is not charged for it.
        let d = l.admit(&p, &ask(b"{}")).await.err().unwrap();
        assert!(d.message().contains("concurrent"), "{}", d.message());
        drop(first);
        let second = l.admit(&p, &ask(b"{}")).await.unwrap().unwrap();
        assert_eq!(second.headers.requests.unwrap().remaining, 3);
    }

    #[tokio::test]
    async fn settling_frees_the_slot_and_corrects_the_token_estimate() {
        let (l, _) = limiter();
        let limits = Limits { tpm: Some(1000), max_concurrent: Some(1), ..Default::default() };
        let p = policies(1, vec![(LimitScope::Key, 10, limits, None)]);
        let t = l.admit(&p, &ask(b"{}")).await.unwrap().unwrap();
        assert_eq!(t.headers.tokens.unwrap().remaining, 900);
        // Really 150 + 350 = 500 tokens: 400 more than estimated.
        t.settle(&record(150, 350));
        let next = l.admit(&p, &ask(b"{}")).await.unwrap().unwrap();
        assert_eq!(next.headers.tokens.unwrap().remaining, 400);
    }

    #[tokio::test]
    async fn budgets_reserve_the_worst_case_and_settle_the_real_cost() {
        let (l, clock) = limiter();
        let budget = Budget { max_micros: Some(1000), ..Default::default() };
        let p = policies(1, vec![(LimitScope::Team, 1, Limits { budget: Some(budget), ..Default::default() }, None)]);
        // Worst case: 100 prompt × 1 + 400 completion × 2 = 900 micro-units.
        let body = br#"{"model":"m","max_tokens":400}"#;
        let a = l.admit(&p, &ask(body)).await.unwrap().unwrap();
        let d = l.admit(&p, &ask(body)).await.err().unwrap();
        assert!(d.is_quota());
        // Resets at the end of March (the clock says 23:59 on the 31st).
        assert_eq!(d.retry_after_secs(), 60);
        a.settle(&record(100, 50)); // 200
        // 800 left: the same worst case no longer fits, a smaller one (100 + 2 × 300 = 700) does.
        assert!(l.admit(&p, &ask(body)).await.is_err());
        let b = l.admit(&p, &ask(br#"{"max_tokens":300}"#)).await.unwrap().unwrap();
        drop(b); // never settled: its reservation comes back
        // `max_completion_tokens` counts too: 100 + 2 × 350 = 800, exactly what is left.
        let c = l.admit(&p, &ask(br#"{"max_completion_tokens":350}"#)).await.unwrap().unwrap();
        c.settle(&record(100, 350)); // 800: spent 1000 of 1000
        assert!(l.admit(&p, &ask(br#"{"max_tokens":1}"#)).await.is_err());
        // A new month, a new budget.
        clock.advance(60);
        assert!(l.admit(&p, &ask(body)).await.is_ok());
        assert_eq!(l.stats().denied_budget, 3);
    }

    #[tokio::test]
    async fn a_provider_cap_refuses_past_its_rate_and_concurrency_with_the_time_until_room() {
        let (l, clock) = limiter();
        let caps = switchyard_shared::snapshot::TargetCaps {
            rpm: Some(2),
            tpm: None,
            max_concurrency: Some(1),
            team_share_pct: None,
        };
        let policy = TargetPolicy::of(&caps, None).unwrap();
        let first = l.admit_target(7, 1, &policy, 10).await.unwrap();
        // One in flight: the second waits for a slot.
        let busy = l.admit_target(7, 1, &policy, 10).await.err().unwrap();
        assert!(matches!(busy, Denied::Rate { scope: Subject::Provider, what: "concurrent", .. }), "{busy:?}");
        drop(first);
        let second = l.admit_target(7, 1, &policy, 10).await.unwrap();
        drop(second);
        // Two a minute: the third is refused until one unit is back (30 s).
        let d = l.admit_target(7, 1, &policy, 10).await.err().unwrap();
        assert_eq!(d.retry_after(), Duration::from_secs(30));
        // Another provider has its own caps.
        assert!(l.admit_target(8, 1, &policy, 10).await.is_ok());
        clock.advance(30);
        assert!(l.admit_target(7, 1, &policy, 10).await.is_ok());
        assert!(Policy::of_caps(&Default::default()).is_none());
    }

    #[tokio::test]
    async fn a_team_share_caps_each_team_at_its_part_of_the_credential() {
        let (l, _clock) = limiter();
        let caps = switchyard_shared::snapshot::TargetCaps {
            rpm: Some(4),
            tpm: None,
            max_concurrency: None,
            team_share_pct: Some(50),
        };
        let policy = TargetPolicy::of(&caps, None).unwrap();
        assert!(l.admit_target(7, 1, &policy, 10).await.is_ok());
        assert!(l.admit_target(7, 1, &policy, 10).await.is_ok());
        // Team 1 has its two of the four; its third is refused on its share, which leaves the credential's rate alone.
        let d = l.admit_target(7, 1, &policy, 10).await.err().unwrap();
        assert!(matches!(d, Denied::Rate { scope: Subject::ProviderTeam, what: "requests", .. }), "{d:?}");
        assert!(l.admit_target(7, 2, &policy, 10).await.is_ok());
        assert!(l.admit_target(7, 2, &policy, 10).await.is_ok());
        let d = l.admit_target(7, 3, &policy, 10).await.err().unwrap();
        assert!(matches!(d, Denied::Rate { scope: Subject::Provider, .. }), "the credential itself is full: {d:?}");
        // 100% is no share at all; a share never rounds to nothing.
        let whole = switchyard_shared::snapshot::TargetCaps { team_share_pct: Some(100), ..caps };
        assert!(Policy::of_caps(&whole).unwrap().team_share.is_none());
        let tiny = switchyard_shared::snapshot::TargetCaps { team_share_pct: Some(1), ..caps };
        assert_eq!(Policy::of_caps(&tiny).unwrap().team_share.unwrap().rpm.map(|r| r.limit), Some(1));
    }

    #[tokio::test]
    async fn an_upstream_models_own_caps_replace_the_credentials_for_the_dimensions_they_set() {
        let (l, _clock) = limiter();
        let caps = TargetCaps { rpm: Some(3), tpm: None, max_concurrency: Some(5), team_share_pct: None };
        let big = ModelCaps { upstream_model: "gpt-4o-mini".into(), rpm: Some(5), ..Default::default() };
        let mini = TargetPolicy::of(&caps, Some(&big)).unwrap();
        let other = TargetPolicy::of(&caps, None).unwrap();
        assert_eq!((mini.scope(), other.scope()), ("model+provider", "provider"));
        // gpt-4o-mini has 5 requests a minute of its own; the credential's 3 are left to the other models.
        let mut held = Vec::new();
        for _ in 0..5 {
            held.push(l.admit_target(7, 1, &mini, 10).await.unwrap());
        }
        let d = l.admit_target(7, 1, &mini, 10).await.err().unwrap();
        assert!(matches!(d, Denied::Rate { scope: Subject::ProviderModel, what: "requests", .. }), "{d:?}");
        // Concurrency is not set for the model: its requests in flight count against the credential's 5.
        assert_eq!(
            l.target_use(7, &mini),
            TargetUse { requests: Some((5, 5)), tokens: None, concurrency: Some((5, 5)) }
        );
        assert!(l.admit_target(7, 1, &other, 10).await.is_err(), "the credential's 5 slots are taken");
        drop(held);
        for _ in 0..3 {
            assert!(l.admit_target(7, 1, &other, 10).await.is_ok());
        }
        assert!(l.admit_target(7, 1, &other, 10).await.is_err());
        assert_eq!(
            l.target_use(7, &other),
            TargetUse { requests: Some((3, 3)), tokens: None, concurrency: Some((0, 5)) }
        );
        let none = ModelCaps { upstream_model: "x".into(), ..Default::default() };
        assert!(TargetPolicy::of(&TargetCaps::default(), Some(&none)).is_none());
    }

    #[tokio::test]
    async fn spend_from_the_snapshot_counts_and_replaces_reported_records() {
        let (l, _) = limiter();
        let budget = Budget { max_micros: Some(10_000), ..Default::default() };
        let limits = Limits { budget: Some(budget), ..Default::default() };
        let body = br#"{"max_tokens":0}"#; // worst case = 100 micro-units
        let p1 = policies(1, vec![(LimitScope::Key, 10, limits.clone(), None)]);
        let t = l.admit(&p1, &ask(body)).await.unwrap().unwrap();
        let r = record(100, 0);
        t.settle(&r);
        // The control plane now counts 9_850, including this node's record: 150 left.
        let march = "2026-03-01T00:00:00Z".parse().unwrap();
        let mut s = Snapshot::empty(Utc::now());
        s.version = 2;
        s.limits = vec![LimitEntry {
            scope: LimitScope::Key,
            id: 10,
            limits: limits.clone(),
            spend: Some(Spend { period_start: march, micros: 9_850, tokens: 0 }),
        }];
        s.usage_watermarks = vec![UsageWatermark { node_id: "node-a".into(), last_record_id: r.id }];
        let p2 = Policies::compile(&s);
        let t = l.admit(&p2, &ask(body)).await.unwrap().unwrap();
        assert!(l.admit(&p2, &ask(body)).await.err().unwrap().is_quota());
        drop(t);
        // Without the watermark the node would have counted its record twice (9_950) and refused.
        assert!(l.admit(&p2, &ask(body)).await.is_ok());
    }

    // ---- fleet mode, against the Redis on 127.0.0.1:6379 -----------------------------------------------------

    fn fleet_limiter(url: &str, prefix: &str, node: &str) -> Limiter {
        let settings = LimitSettings {
            redis_url: Some(url.to_owned()),
            redis_prefix: prefix.to_owned(),
            redis_timeout: Duration::from_millis(500),
            ..Default::default()
        };
        Limiter::new(settings, node.into()).unwrap()
    }

    fn prefix() -> String {
        format!("switchyard-test:{}:", Uuid::new_v4().simple())
    }

    #[tokio::test]
    async fn two_nodes_share_one_rate_and_one_concurrency_limit_through_redis() {
        let prefix = prefix();
        let a = fleet_limiter("redis://127.0.0.1:6379", &prefix, "a");
        let b = fleet_limiter("redis://127.0.0.1:6379", &prefix, "b");
        assert!(a.connect(Duration::from_secs(5)).await && b.connect(Duration::from_secs(5)).await);
        let p = policies(1, vec![(LimitScope::Key, 10, Limits { rpm: Some(10), ..Default::default() }, None)]);
        let mut admitted = 0;
        for i in 0..30 {
            let node = if i % 2 == 0 { &a } else { &b };
            if node.admit(&p, &ask(b"{}")).await.is_ok() {
                admitted += 1;
            }
        }
        // One unit comes back every 6 s; the loop takes milliseconds.
        assert_eq!(admitted, 10);
        assert_eq!(a.stats().redis_fallbacks + b.stats().redis_fallbacks, 0);

        let p =
            policies(1, vec![(LimitScope::Team, 1, Limits { max_concurrent: Some(3), ..Default::default() }, None)]);
        let mut held = Vec::new();
        for i in 0..10 {
            let node = if i % 2 == 0 { &a } else { &b };
            if let Ok(Some(t)) = node.admit(&p, &ask(b"{}")).await {
                held.push(t);
            }
        }
        assert_eq!(held.len(), 3);
        // Freed slots go back to Redis on the next tick and can be taken by the other node.
        held.clear();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut again = Vec::new();
        while again.len() < 3 && tokio::time::Instant::now() < deadline {
            match b.admit(&p, &ask(b"{}")).await {
                Ok(Some(t)) => again.push(t),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        assert_eq!(again.len(), 3);
    }

    #[tokio::test]
    async fn an_unreachable_redis_fails_open_to_per_node_limits_without_waiting() {
        let a = fleet_limiter("redis://127.0.0.1:1", &prefix(), "a");
        assert!(!a.connect(Duration::from_millis(300)).await);
        let p = policies(1, vec![(LimitScope::Key, 10, Limits { rpm: Some(3), ..Default::default() }, None)]);
        let started = Instant::now();
        let results: Vec<bool> = {
            let mut v = Vec::new();
            for _ in 0..5 {
                v.push(a.admit(&p, &ask(b"{}")).await.is_ok());
            }
            v
        };
        assert!(started.elapsed() < Duration::from_millis(200), "{:?}", started.elapsed());
        // The node's own bucket still applies.
        assert_eq!(results, [true, true, true, false, false]);
        assert_eq!(a.stats().redis_fallbacks, 5);
        assert!(a.stats().redis_errors >= 1);
    }

    #[tokio::test]
    async fn fail_closed_refuses_limited_requests_while_redis_is_unreachable() {
        let settings = LimitSettings {
            redis_url: Some("redis://127.0.0.1:1".into()),
            redis_prefix: prefix(),
            fail_open: false,
            ..Default::default()
        };
        let a = Limiter::new(settings, "a".into()).unwrap();
        let p = policies(1, vec![(LimitScope::Key, 10, Limits { rpm: Some(3), ..Default::default() }, None)]);
        assert!(matches!(a.admit(&p, &ask(b"{}")).await, Err(Denied::Unavailable)));
        // Scopes without limits are not affected.
        assert!(a.admit(&Policies::default(), &ask(b"{}")).await.unwrap().is_none());
    }
}
