//! Node settings: defaults, then environment (`SWITCHYARD_*`, with `*_FILE` for secrets). Tests build the
//! struct directly instead of touching the process environment.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::health::BreakerPolicy;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not valid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("could not read {name} from {path}: {source}")]
    File { name: &'static str, path: String, source: std::io::Error },
}

pub use switchyard_shared::secret::Secret;

/// Every environment variable the node binary reads, `*_FILE` variants included. The deploy files are checked
/// against this list (control-plane/tests/api/deploy.rs), and a unit test below keeps it in step with the code.
pub const ENV_VARS: &[&str] = &[
    "SWITCHYARD_LISTEN",
    "SWITCHYARD_CONTROL_PLANE_URL",
    "SWITCHYARD_NODE_TOKEN",
    "SWITCHYARD_NODE_TOKEN_FILE",
    "SWITCHYARD_NODE_ID",
    "SWITCHYARD_STATE_DIR",
    "SWITCHYARD_MAX_BODY_BYTES",
    "SWITCHYARD_POLL_WAIT_SECS",
    "SWITCHYARD_REPORT_INTERVAL_MS",
    "SWITCHYARD_REPORT_BATCH_MAX",
    "SWITCHYARD_STATUS_INTERVAL_MS",
    "SWITCHYARD_USAGE_SPOOL_MAX_BYTES",
    "SWITCHYARD_UPSTREAM_CONNECT_TIMEOUT_MS",
    "SWITCHYARD_UPSTREAM_FIRST_BYTE_TIMEOUT_MS",
    "SWITCHYARD_UPSTREAM_IDLE_TIMEOUT_MS",
    "SWITCHYARD_UPSTREAM_TOTAL_TIMEOUT_MS",
    "SWITCHYARD_CLIENT_BODY_TIMEOUT_MS",
    "SWITCHYARD_BREAKER_MIN_REQUESTS",
    "SWITCHYARD_BREAKER_ERROR_RATE",
    "SWITCHYARD_BREAKER_COOLDOWN_MS",
    "SWITCHYARD_SHUTDOWN_USAGE_GRACE_MS",
    "SWITCHYARD_GOVERNANCE",
    "SWITCHYARD_WORKERS",
    "SWITCHYARD_REDIS_URL",
    "SWITCHYARD_REDIS_PREFIX",
    "SWITCHYARD_REDIS_TIMEOUT_MS",
    "SWITCHYARD_LIMITS_FAIL_OPEN",
    "SWITCHYARD_LIMITS_DEFAULT_MAX_TOKENS",
    "SWITCHYARD_LOG_FORMAT",
    "RUST_LOG",
];

#[derive(Debug, Clone)]
pub struct Settings {
    /// Where clients connect (`SWITCHYARD_LISTEN`, default `127.0.0.1:8080`; port 0 picks a free port).
    pub listen: SocketAddr,
    /// Base URL of the control plane, e.g. `http://127.0.0.1:8081` (`SWITCHYARD_CONTROL_PLANE_URL`).
    pub control_plane_url: String,
    /// Shared secret nodes present to the control plane (`SWITCHYARD_NODE_TOKEN` or `_FILE`).
    pub node_token: Secret,
    /// Stable name of this node (`SWITCHYARD_NODE_ID`; default: kept in `state_dir/node-id`).
    pub node_id: Option<String>,
    /// Where the last snapshot is kept for restarts (`SWITCHYARD_STATE_DIR`, default `.switchyard/node`).
    pub state_dir: PathBuf,
    /// Largest request body accepted (`SWITCHYARD_MAX_BODY_BYTES`, default 8 MiB).
    pub max_body_bytes: usize,
    /// How long a snapshot long-poll may be held by the control plane (`SWITCHYARD_POLL_WAIT_SECS`, default 25).
    pub poll_wait: Duration,
    /// Longest a usage record waits before it is sent (`SWITCHYARD_REPORT_INTERVAL_MS`, default 200).
    pub report_interval: Duration,
    /// Most records in one usage batch (`SWITCHYARD_REPORT_BATCH_MAX`, default 1000).
    pub report_batch_max: usize,
    /// How often the node reports its upstream targets' rate-limit state to the control plane and picks up the
    /// fleet's cool-downs (`SWITCHYARD_STATUS_INTERVAL_MS`, default 1000; a new cool-down is reported at once).
    pub status_interval: Duration,
    /// Bound of the durable usage spool in `state_dir`: unacknowledged bytes kept for the control plane
    /// (`SWITCHYARD_USAGE_SPOOL_MAX_BYTES`, default 256 MiB, about half a million records). Records that do not
    /// fit are dropped and counted; requests are still served.
    pub usage_spool_max_bytes: u64,
    /// Time to connect to an upstream (`SWITCHYARD_UPSTREAM_CONNECT_TIMEOUT_MS`, default 5000).
    pub upstream_connect_timeout: Duration,
    /// Time to the upstream's response headers (`SWITCHYARD_UPSTREAM_FIRST_BYTE_TIMEOUT_MS`, default 120000).
    pub upstream_first_byte_timeout: Duration,
    /// Longest silence between two chunks of an upstream stream (`SWITCHYARD_UPSTREAM_IDLE_TIMEOUT_MS`,
    /// default 60000).
    pub upstream_idle_timeout: Duration,
    /// Longest a whole request may take, streams included (`SWITCHYARD_UPSTREAM_TOTAL_TIMEOUT_MS`, default 600000).
    pub upstream_total_timeout: Duration,
    /// Time a client has to send its request body (`SWITCHYARD_CLIENT_BODY_TIMEOUT_MS`, default 30000).
    pub client_body_timeout: Duration,
    /// When an upstream target is ejected and for how long (`SWITCHYARD_BREAKER_MIN_REQUESTS` default 10,
    /// `SWITCHYARD_BREAKER_ERROR_RATE` default 0.5, `SWITCHYARD_BREAKER_COOLDOWN_MS` default 5000, over a 10 s window).
    pub breaker: BreakerPolicy,
    /// At shutdown, how long to keep trying to report queued usage (`SWITCHYARD_SHUTDOWN_USAGE_GRACE_MS`,
    /// default 10000).
    pub shutdown_usage_grace: Duration,
    /// Auth, limits and metering (`SWITCHYARD_GOVERNANCE`, default `on`). `off` exists only to measure what
    /// governance costs: any caller may use any model and nothing is metered. Never run it in production.
    pub governance: bool,
    /// HTTP worker threads (`SWITCHYARD_WORKERS`, default: number of cores).
    pub workers: usize,
    /// Rate, concurrency and budget enforcement: Redis, fail-open (`SWITCHYARD_REDIS_*`, `SWITCHYARD_LIMITS_*`).
    pub limits: crate::limits::LimitSettings,
}

impl Settings {
    /// Defaults for everything but the control plane address and the node token.
    pub fn new(control_plane_url: impl Into<String>, node_token: Secret) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            control_plane_url: control_plane_url.into(),
            node_token,
            node_id: None,
            state_dir: PathBuf::from(".switchyard/node"),
            max_body_bytes: 8 * 1024 * 1024,
            poll_wait: Duration::from_secs(25),
            report_interval: Duration::from_millis(200),
            report_batch_max: 1000,
            status_interval: Duration::from_millis(1000),
            usage_spool_max_bytes: 256 * 1024 * 1024,
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_first_byte_timeout: Duration::from_secs(120),
            upstream_idle_timeout: Duration::from_secs(60),
            upstream_total_timeout: Duration::from_secs(600),
            client_body_timeout: Duration::from_secs(30),
            breaker: BreakerPolicy::default(),
            shutdown_usage_grace: Duration::from_secs(10),
            governance: true,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            limits: Default::default(),
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let url = var("SWITCHYARD_CONTROL_PLANE_URL").unwrap_or_else(|| "http://127.0.0.1:8081".to_owned());
        let token = secret("SWITCHYARD_NODE_TOKEN")?.ok_or(ConfigError::Missing("SWITCHYARD_NODE_TOKEN"))?;
        let mut s = Self::new(url, token);
        if let Some(v) = var("SWITCHYARD_LISTEN") {
            s.listen = parse("SWITCHYARD_LISTEN", &v)?;
        }
        s.node_id = var("SWITCHYARD_NODE_ID");
        if let Some(v) = var("SWITCHYARD_STATE_DIR") {
            s.state_dir = PathBuf::from(v);
        }
        if let Some(v) = var("SWITCHYARD_MAX_BODY_BYTES") {
            s.max_body_bytes = parse("SWITCHYARD_MAX_BODY_BYTES", &v)?;
        }
        if let Some(v) = var("SWITCHYARD_POLL_WAIT_SECS") {
            s.poll_wait = Duration::from_secs(parse("SWITCHYARD_POLL_WAIT_SECS", &v)?);
        }
        if let Some(v) = var("SWITCHYARD_REPORT_INTERVAL_MS") {
            s.report_interval = Duration::from_millis(parse("SWITCHYARD_REPORT_INTERVAL_MS", &v)?);
        }
        if let Some(v) = var("SWITCHYARD_REPORT_BATCH_MAX") {
            s.report_batch_max = parse("SWITCHYARD_REPORT_BATCH_MAX", &v)?;
        }
        if let Some(v) = var("SWITCHYARD_STATUS_INTERVAL_MS") {
            s.status_interval = Duration::from_millis(parse::<u64>("SWITCHYARD_STATUS_INTERVAL_MS", &v)?.max(10));
        }
        if let Some(v) = var("SWITCHYARD_USAGE_SPOOL_MAX_BYTES") {
            s.usage_spool_max_bytes = parse("SWITCHYARD_USAGE_SPOOL_MAX_BYTES", &v)?;
        }
        if let Some(v) = var("SWITCHYARD_UPSTREAM_CONNECT_TIMEOUT_MS") {
            s.upstream_connect_timeout = Duration::from_millis(parse("SWITCHYARD_UPSTREAM_CONNECT_TIMEOUT_MS", &v)?);
        }
        if let Some(v) = var("SWITCHYARD_UPSTREAM_FIRST_BYTE_TIMEOUT_MS") {
            s.upstream_first_byte_timeout =
                Duration::from_millis(parse("SWITCHYARD_UPSTREAM_FIRST_BYTE_TIMEOUT_MS", &v)?);
        }
        if let Some(v) = var("SWITCHYARD_UPSTREAM_IDLE_TIMEOUT_MS") {
            s.upstream_idle_timeout = Duration::from_millis(parse("SWITCHYARD_UPSTREAM_IDLE_TIMEOUT_MS", &v)?);
        }
        if let Some(v) = var("SWITCHYARD_UPSTREAM_TOTAL_TIMEOUT_MS") {
            s.upstream_total_timeout = Duration::from_millis(parse("SWITCHYARD_UPSTREAM_TOTAL_TIMEOUT_MS", &v)?);
        }
        if let Some(v) = var("SWITCHYARD_CLIENT_BODY_TIMEOUT_MS") {
            s.client_body_timeout = Duration::from_millis(parse("SWITCHYARD_CLIENT_BODY_TIMEOUT_MS", &v)?);
        }
        if let Some(v) = var("SWITCHYARD_BREAKER_MIN_REQUESTS") {
            s.breaker.min_requests = parse("SWITCHYARD_BREAKER_MIN_REQUESTS", &v)?;
        }
        if let Some(v) = var("SWITCHYARD_BREAKER_ERROR_RATE") {
            s.breaker.error_rate = parse("SWITCHYARD_BREAKER_ERROR_RATE", &v)?;
        }
        if let Some(v) = var("SWITCHYARD_BREAKER_COOLDOWN_MS") {
            s.breaker.base_cooldown = Duration::from_millis(parse("SWITCHYARD_BREAKER_COOLDOWN_MS", &v)?);
        }
        if let Some(v) = var("SWITCHYARD_SHUTDOWN_USAGE_GRACE_MS") {
            s.shutdown_usage_grace = Duration::from_millis(parse("SWITCHYARD_SHUTDOWN_USAGE_GRACE_MS", &v)?);
        }
        if let Some(v) = var("SWITCHYARD_GOVERNANCE") {
            s.governance = match v.as_str() {
                "on" => true,
                "off" => false,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "SWITCHYARD_GOVERNANCE",
                        reason: "use `on` or `off`".into(),
                    });
                }
            };
        }
        if let Some(v) = var("SWITCHYARD_WORKERS") {
            s.workers = parse("SWITCHYARD_WORKERS", &v)?;
        }
        s.limits.read_env(var)?;
        Ok(s)
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Reads `NAME`, or the file named by `NAME_FILE` (trailing newline trimmed).
fn secret(name: &'static str) -> Result<Option<Secret>, ConfigError> {
    if let Some(v) = var(name) {
        return Ok(Some(Secret::new(v)));
    }
    let file_var = format!("{name}_FILE");
    match var(&file_var) {
        Some(path) => std::fs::read_to_string(&path)
            .map(|s| Some(Secret::new(s.trim_end())))
            .map_err(|source| ConfigError::File { name, path, source }),
        None => Ok(None),
    }
}

fn parse<T: std::str::FromStr>(name: &'static str, v: &str) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    v.parse().map_err(|e: T::Err| ConfigError::Invalid { name, reason: e.to_string() })
}

#[cfg(test)]
mod env_list_tests {
    use super::ENV_VARS;

    /// Quoted `SWITCHYARD_*` names in `src`.
    fn names(src: &str) -> Vec<String> {
        src.match_indices("\"SWITCHYARD_")
            .map(|(i, _)| src[i + 1..].chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect())
            .collect()
    }

    #[test]
    fn env_vars_lists_every_variable_the_code_reads() {
        // This file without the list itself and without its tests, so the list cannot vouch for itself.
        let this = include_str!("config.rs");
        let (head, rest) = this.split_once("pub const ENV_VARS").unwrap_or_default();
        let (_, body) = rest.split_once("];").unwrap_or_default();
        let body = body.split("#[cfg(test)]").next().unwrap_or_default();
        let sources = [head, body, include_str!("limits/mod.rs"), include_str!("telemetry.rs")];
        for src in sources {
            for name in names(src) {
                assert!(ENV_VARS.contains(&name.as_str()), "{name} is read but missing from ENV_VARS");
            }
        }
        for name in ENV_VARS.iter().filter(|n| n.starts_with("SWITCHYARD_")) {
            let base = name.strip_suffix("_FILE").unwrap_or(name);
            let read = sources.iter().flat_map(|s| names(s)).any(|n| n == base);
            assert!(read, "{name} is listed but nothing reads it");
        }
    }
}
