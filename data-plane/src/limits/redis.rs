//! Fleet-wide limits through Redis, without a round trip per request: nodes lease capacity in slices and spend it
//! locally.
//!
//! - Rates: one GCRA per team/key and kind lives in Redis (its TAT, on Redis's own clock so node clocks may
//!   differ). A node leases a slice of units with one atomic Lua call and admits from it until it runs out; a
//!   lease not used within [`LEASE_TTL`] is dropped, which bounds how late leased units can be spent.
//!   Token-count corrections after responses are summed locally and sent in one call per tick.
//! - Concurrency: a hash per team/key counts slots per node instance, each with an expiry the owner refreshes,
//!   so a node that dies frees its slots when they expire. A node leases slots as requests need them, reuses
//!   them while they are busy, and hands idle ones back every tick.
//!
//! - Cool-downs: a key per upstream target with a TTL, set after the provider answered 429; every node reads it
//!   at most once per target per [`super::cooldown::RECHECK`].
//!
//! Every call has a timeout. After a failure Redis is left alone for [`BACKOFF`], so an outage costs a request
//! nothing: the limiter falls back at once (fail-open to per-node limits, or fail-closed, by configuration).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::gcra::Rate;

/// Leased rate units not spent within this long are dropped.
pub const LEASE_TTL: Duration = Duration::from_secs(2);
/// A node instance's concurrency slots are freed this long after its last heartbeat.
pub const SLOT_TTL: Duration = Duration::from_secs(10);
/// After a Redis failure, how long requests skip Redis before it is tried again.
pub const BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("redis is backing off after a failure")]
    Backoff,
    #[error("redis did not answer in time")]
    Timeout,
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// What a rate lease answered. `remaining` and `reset` describe the fleet-wide bucket after the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLease {
    pub granted: u64,
    pub remaining: u64,
    pub reset: Duration,
    pub retry_after: Duration,
}

/// Health of the Redis link, shared with the background connect task.
#[derive(Debug)]
pub struct Health {
    epoch: Instant,
    down_until_ms: AtomicU64,
    healthy: AtomicBool,
    /// Redis calls that failed or timed out (including connection attempts).
    pub errors: AtomicU64,
}

impl Health {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// False while backing off after a failure.
    pub fn available(&self) -> bool {
        self.now_ms() >= self.down_until_ms.load(Ordering::Relaxed)
    }

    fn failed(&self, e: &FleetError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let backoff = u64::try_from(BACKOFF.as_millis()).unwrap_or(1000);
        self.down_until_ms.store(self.now_ms() + backoff, Ordering::Relaxed);
        if self.healthy.swap(false, Ordering::Relaxed) {
            tracing::error!(error = %e, "redis unavailable: fleet-wide limits fall back (see SWITCHYARD_LIMITS_FAIL_OPEN)");
        }
    }

    fn succeeded(&self) {
        if !self.healthy.swap(true, Ordering::Relaxed) {
            tracing::info!("redis reachable again: fleet-wide limits resume");
        }
    }
}

pub struct Fleet {
    client: redis::Client,
    conn: Arc<ArcSwapOption<ConnectionManager>>,
    connecting: Arc<AtomicBool>,
    prefix: String,
    /// Node id plus a per-process suffix: a restarted node must not inherit the slots of its previous life.
    instance: String,
    timeout: Duration,
    pub health: Arc<Health>,
    lease: Script,
    adjust: Script,
    acquire: Script,
    release: Script,
    heartbeat: Script,
    cool_set: Script,
    cool_get: Script,
}

// Time comes from Redis (`TIME`), in milliseconds with a fraction, so every node agrees on it.
const NOW_MS: &str = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000\n";

/// KEYS[1] = TAT; ARGV = emission interval (ms), tolerance (ms), units needed, units wanted.
/// Returns {granted, remaining, reset_ms, retry_after_ms}; grants nothing unless `needed` fits.
const LEASE_LUA: &str = r"
local T = tonumber(ARGV[1]) local tau = tonumber(ARGV[2])
local need = tonumber(ARGV[3]) local want = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local fit = math.floor((tau - (tat - now)) / T + 1e-9)
if fit < need then
  return {0, math.max(fit, 0), math.ceil(tat - now), math.ceil(tat - now + need * T - tau)}
end
local n = math.min(want, fit)
tat = tat + n * T
redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1000)
return {n, math.floor((tau - (tat - now)) / T + 1e-9), math.ceil(tat - now), 0}
";

/// KEYS[1] = TAT; ARGV = emission interval (ms), signed unit correction.
const ADJUST_LUA: &str = r"
local T = tonumber(ARGV[1]) local delta = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
tat = math.max(now, tat + delta * T)
redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1000)
return 1
";

/// KEYS[1] = slots per instance, KEYS[2] = expiry per instance; ARGV = instance, max, wanted, ttl (ms).
/// Drops expired instances, then grants up to `wanted` slots that keep the total within `max`.
const ACQUIRE_LUA: &str = r"
local exp = redis.call('HGETALL', KEYS[2])
for i = 1, #exp, 2 do
  if tonumber(exp[i + 1]) < now then
    redis.call('HDEL', KEYS[1], exp[i]) redis.call('HDEL', KEYS[2], exp[i])
  end
end
local total = 0
for _, c in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tonumber(c) end
local n = math.min(tonumber(ARGV[3]), tonumber(ARGV[2]) - total)
if n < 1 then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], n)
redis.call('HSET', KEYS[2], ARGV[1], math.floor(now + tonumber(ARGV[4])))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]) * 6) redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]) * 6)
return n
";

/// KEYS as for acquire; ARGV = instance, slots handed back.
const RELEASE_LUA: &str = r"
local left = redis.call('HINCRBY', KEYS[1], ARGV[1], -tonumber(ARGV[2]))
if left <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) redis.call('HDEL', KEYS[2], ARGV[1]) end
return left
";

/// KEYS as for acquire; ARGV = instance, ttl (ms). Keeps this instance's slots alive.
const HEARTBEAT_LUA: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[1], math.floor(now + tonumber(ARGV[2])))
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 6) redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) * 6)
end
return 1
";

/// KEYS[1] = cool-down; ARGV = length (ms). Lengthens the cool-down, never shortens it.
const COOL_SET_LUA: &str = r"
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
return 1
";

/// KEYS[1] = cool-down. Milliseconds left, or a negative number when none.
const COOL_GET_LUA: &str = r"
return redis.call('PTTL', KEYS[1])
";

fn script(body: &str) -> Script {
    Script::new(&format!("{NOW_MS}{body}"))
}

impl Fleet {
    /// Checks the URL only; the connection is made in the background on first use, so a node starts (and
    /// serves) while Redis is down.
    pub fn new(url: &str, prefix: &str, node_id: &str, timeout: Duration) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            conn: Arc::new(ArcSwapOption::empty()),
            connecting: Arc::new(AtomicBool::new(false)),
            prefix: prefix.to_owned(),
            instance: format!("{node_id}:{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            timeout,
            health: Arc::new(Health {
                epoch: Instant::now(),
                down_until_ms: AtomicU64::new(0),
                healthy: AtomicBool::new(true),
                errors: AtomicU64::new(0),
            }),
            lease: script(LEASE_LUA),
            adjust: script(ADJUST_LUA),
            acquire: script(ACQUIRE_LUA),
            release: script(RELEASE_LUA),
            heartbeat: script(HEARTBEAT_LUA),
            cool_set: Script::new(COOL_SET_LUA),
            cool_get: Script::new(COOL_GET_LUA),
        })
    }

    pub fn key(&self, kind: &str, scope: &str, id: i64) -> String {
        format!("{}{kind}:{scope}:{id}", self.prefix)
    }

    pub fn available(&self) -> bool {
        self.health.available()
    }

    /// The connection, or an error at once while none is up (one is then made in the background): a request
    /// never waits for a connection to be established.
    fn conn(&self) -> Result<ConnectionManager, FleetError> {
        if !self.available() {
            return Err(FleetError::Backoff);
        }
        if let Some(c) = self.conn.load_full() {
            return Ok((*c).clone());
        }
        if !self.connecting.swap(true, Ordering::AcqRel) {
            let client = self.client.clone();
            let (slot, connecting, health) = (self.conn.clone(), self.connecting.clone(), self.health.clone());
            let timeout = self.timeout.max(Duration::from_millis(200));
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(self.timeout))
                .set_number_of_retries(1);
            tokio::spawn(async move {
                match tokio::time::timeout(timeout * 2, ConnectionManager::new_with_config(client, config)).await {
                    Ok(Ok(c)) => {
                        slot.store(Some(Arc::new(c)));
                        health.succeeded();
                    }
                    Ok(Err(e)) => health.failed(&FleetError::Redis(e)),
                    Err(_) => health.failed(&FleetError::Timeout),
                }
                connecting.store(false, Ordering::Release);
            });
        }
        Err(FleetError::Backoff)
    }

    /// Starts connecting (if not connected) and waits up to `within` for the connection, polling its slot.
    pub async fn connect(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.conn.load().is_some() {
                return true;
            }
            if self.available() {
                let _ = self.conn();
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Runs one script invocation within the timeout, recording the outcome in [`Health`].
    async fn run<T: redis::FromRedisValue>(&self, inv: redis::ScriptInvocation<'_>) -> Result<T, FleetError> {
        let mut conn = self.conn()?;
        let r = match tokio::time::timeout(self.timeout, inv.invoke_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(FleetError::Redis(e)),
            Err(_) => Err(FleetError::Timeout),
        };
        match &r {
            Ok(_) => self.health.succeeded(),
            Err(e) => self.health.failed(e),
        }
        r
    }

    /// Leases between `need` and `want` units of `rate` from the fleet-wide bucket at `key`, or none.
    pub async fn lease_rate(&self, key: &str, rate: Rate, need: u64, want: u64) -> Result<RateLease, FleetError> {
        let (t, tau) = rate_ms(rate);
        let mut inv = self.lease.prepare_invoke();
        inv.key(key).arg(t).arg(tau).arg(need).arg(want.max(need));
        let (granted, remaining, reset, retry): (i64, i64, i64, i64) = self.run(inv).await?;
        let ms = |v: i64| Duration::from_millis(u64::try_from(v).unwrap_or(0));
        Ok(RateLease {
            granted: u64::try_from(granted).unwrap_or(0),
            remaining: u64::try_from(remaining).unwrap_or(0),
            reset: ms(reset),
            retry_after: ms(retry),
        })
    }

    /// Charges (`delta > 0`) or refunds (`delta < 0`) units of the fleet-wide bucket at `key`.
    pub async fn adjust_rate(&self, key: &str, rate: Rate, delta: i64) -> Result<(), FleetError> {
        let (t, _) = rate_ms(rate);
        let mut inv = self.adjust.prepare_invoke();
        inv.key(key).arg(t).arg(delta);
        self.run::<i64>(inv).await.map(|_| ())
    }

    /// Leases up to `wanted` concurrency slots at `key` keeping the fleet within `max`; returns how many.
    pub async fn acquire_slots(&self, key: &str, max: u32, wanted: u32) -> Result<u32, FleetError> {
        let mut inv = self.acquire.prepare_invoke();
        inv.key(key).key(format!("{key}:exp")).arg(&self.instance).arg(max).arg(wanted).arg(ttl_ms());
        let n: i64 = self.run(inv).await?;
        Ok(u32::try_from(n).unwrap_or(0))
    }

    /// Hands `n` slots back.
    pub async fn release_slots(&self, key: &str, n: u32) -> Result<(), FleetError> {
        let mut inv = self.release.prepare_invoke();
        inv.key(key).key(format!("{key}:exp")).arg(&self.instance).arg(n);
        self.run::<i64>(inv).await.map(|_| ())
    }

    /// Keeps this instance's slots at `key` from expiring.
    pub async fn heartbeat(&self, key: &str) -> Result<(), FleetError> {
        let mut inv = self.heartbeat.prepare_invoke();
        inv.key(key).key(format!("{key}:exp")).arg(&self.instance).arg(ttl_ms());
        self.run::<i64>(inv).await.map(|_| ())
    }
}

impl Fleet {
    /// Starts (or lengthens) the fleet-wide cool-down at `key`.
    pub async fn set_cooldown(&self, key: &str, length: Duration) -> Result<(), FleetError> {
        let mut inv = self.cool_set.prepare_invoke();
        inv.key(key).arg(u64::try_from(length.as_millis()).unwrap_or(u64::MAX).max(1));
        self.run::<i64>(inv).await.map(|_| ())
    }

    /// What is left of the fleet-wide cool-down at `key`, if one runs.
    pub async fn cooldown_left(&self, key: &str) -> Result<Option<Duration>, FleetError> {
        let mut inv = self.cool_get.prepare_invoke();
        inv.key(key);
        let ms: i64 = self.run(inv).await?;
        Ok(u64::try_from(ms).ok().filter(|&ms| ms > 0).map(Duration::from_millis))
    }
}

fn ttl_ms() -> u64 {
    u64::try_from(SLOT_TTL.as_millis()).unwrap_or(10_000)
}

/// Emission interval and tolerance in milliseconds, as decimal strings Lua reads exactly enough.
fn rate_ms(rate: Rate) -> (String, String) {
    let t = rate.emission_ns() as f64 / 1e6;
    let tau = rate.tolerance_ns() as f64 / 1e6;
    (format!("{t:.6}"), format!("{tau:.6}"))
}
