//! Prometheus metrics of a node, served at `GET /metrics`. Labels stay low-cardinality: model, team id,
//! status, provider, outcome — never keys, never request ids. Gauges that describe state (snapshot version and
//! age, usage queue depth) are read at scrape time rather than maintained on the request path.

use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use switchyard_shared::UsageRecord;

use crate::limits::LimitStats;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    ttft: HistogramVec,
    tokens: IntCounterVec,
    pub attempts: IntCounterVec,
    pub ejections: IntCounterVec,
    pub retries_denied: IntCounterVec,
    pub capped: IntCounterVec,
    pub cooldowns: IntCounterVec,
    pub advertised_limit: IntGaugeVec,
    pub inflight_streams: IntGauge,
    pub usage_report_failures: IntCounter,
    pub usage_dropped: IntCounter,
    pub usage_spooled: IntCounter,
    pub usage_spool_write_failures: IntCounter,
    usage_spool_bytes: IntGauge,
    usage_spool_limit: IntGauge,
    snapshot_version: IntGauge,
    snapshot_age: IntGauge,
    usage_queue: IntGauge,
}

const LATENCY_BUCKETS: &[f64] =
    &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("switchyard".into()), None)?;
        let m = Self {
            requests: IntCounterVec::new(
                Opts::new("requests_total", "Requests answered, by public model, team id and HTTP status"),
                &["model", "team", "status"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new("request_duration_seconds", "Time from request to last byte")
                    .buckets(LATENCY_BUCKETS.to_vec()),
                &["model"],
            )?,
            ttft: HistogramVec::new(
                HistogramOpts::new("time_to_first_token_seconds", "Time from request to the upstream's first byte")
                    .buckets(LATENCY_BUCKETS.to_vec()),
                &["model"],
            )?,
            tokens: IntCounterVec::new(
                Opts::new("tokens_total", "Tokens metered, by model, team and kind (prompt|completion)"),
                &["model", "team", "kind"],
            )?,
            attempts: IntCounterVec::new(
                Opts::new("upstream_attempts_total", "Upstream attempts by provider and outcome"),
                &["provider", "outcome"],
            )?,
            ejections: IntCounterVec::new(
                Opts::new("upstream_ejections_total", "Targets ejected by the circuit breaker"),
                &["provider", "upstream_model"],
            )?,
            retries_denied: IntCounterVec::new(
                Opts::new("retries_denied_total", "Retries not made because the model's retry budget was spent"),
                &["model"],
            )?,
            capped: IntCounterVec::new(
                Opts::new(
                    "upstream_capacity_total",
                    "Attempts on a provider with capacity caps or a cool-down: admitted under the cap, throttled by \
                     the cap, or skipped while cooling down after a 429",
                ),
                &["provider", "result"],
            )?,
            cooldowns: IntCounterVec::new(
                Opts::new("upstream_cooldowns_total", "Cool-downs started after the provider answered 429"),
                &["provider", "upstream_model"],
            )?,
            advertised_limit: IntGaugeVec::new(
                Opts::new(
                    "upstream_advertised_limit",
                    "The provider's own per-minute limit from its x-ratelimit-limit-* headers",
                ),
                &["provider", "kind"],
            )?,
            inflight_streams: IntGauge::new("inflight_streams", "Streams being relayed now")?,
            usage_report_failures: IntCounter::new(
                "usage_report_failures_total",
                "Usage batches the control plane did not acknowledge (each is retried)",
            )?,
            usage_dropped: IntCounter::new(
                "usage_records_dropped_total",
                "Usage records lost because the queue or the spool was full",
            )?,
            usage_spooled: IntCounter::new(
                "usage_spooled_records_total",
                "Usage records appended to the durable spool (each is then sent to the control plane)",
            )?,
            usage_spool_write_failures: IntCounter::new(
                "usage_spool_write_failures_total",
                "Usage records whose write to the spool failed (disk full, I/O error) and were held in memory to retry",
            )?,
            usage_spool_bytes: IntGauge::new(
                "usage_spool_bytes",
                "Bytes of usage records in the durable spool not yet acknowledged by the control plane",
            )?,
            usage_spool_limit: IntGauge::new("usage_spool_limit_bytes", "Bound of the durable usage spool")?,
            snapshot_version: IntGauge::new("snapshot_version", "Version of the snapshot being served")?,
            snapshot_age: IntGauge::new("snapshot_age_seconds", "Seconds since the served snapshot was created")?,
            usage_queue: IntGauge::new("usage_queue_depth", "Usage records waiting to be reported")?,
            registry,
        };
        m.registry.register(Box::new(m.requests.clone()))?;
        m.registry.register(Box::new(m.duration.clone()))?;
        m.registry.register(Box::new(m.ttft.clone()))?;
        m.registry.register(Box::new(m.tokens.clone()))?;
        m.registry.register(Box::new(m.attempts.clone()))?;
        m.registry.register(Box::new(m.ejections.clone()))?;
        m.registry.register(Box::new(m.retries_denied.clone()))?;
        m.registry.register(Box::new(m.capped.clone()))?;
        m.registry.register(Box::new(m.cooldowns.clone()))?;
        m.registry.register(Box::new(m.advertised_limit.clone()))?;
        m.registry.register(Box::new(m.inflight_streams.clone()))?;
        m.registry.register(Box::new(m.usage_report_failures.clone()))?;
        m.registry.register(Box::new(m.usage_dropped.clone()))?;
        m.registry.register(Box::new(m.usage_spooled.clone()))?;
        m.registry.register(Box::new(m.usage_spool_write_failures.clone()))?;
        m.registry.register(Box::new(m.usage_spool_bytes.clone()))?;
        m.registry.register(Box::new(m.usage_spool_limit.clone()))?;
        m.registry.register(Box::new(m.snapshot_version.clone()))?;
        m.registry.register(Box::new(m.snapshot_age.clone()))?;
        m.registry.register(Box::new(m.usage_queue.clone()))?;
        Ok(m)
    }

    /// Counts a finished request from its usage record.
    pub fn observe(&self, r: &UsageRecord) {
        let team = r.team_id.to_string();
        let status = status_label(r.status);
        self.requests.with_label_values(&[r.model.as_str(), &team, status]).inc();
        self.duration.with_label_values(&[r.model.as_str()]).observe(r.duration_us as f64 / 1e6);
        if let Some(t) = r.ttft_us {
            self.ttft.with_label_values(&[r.model.as_str()]).observe(t as f64 / 1e6);
        }
        if r.prompt_tokens > 0 {
            self.tokens.with_label_values(&[r.model.as_str(), &team, "prompt"]).inc_by(r.prompt_tokens);
        }
        if r.completion_tokens > 0 {
            self.tokens.with_label_values(&[r.model.as_str(), &team, "completion"]).inc_by(r.completion_tokens);
        }
    }

    /// Counts a request refused before it could be attributed to a team (no or bad key, not ready).
    pub fn refused(&self, status: u16) {
        self.requests.with_label_values(&["", "", status_label(status)]).inc();
    }

    /// Sets the spool gauges (at scrape time, like the other state gauges).
    pub fn set_spool(&self, (bytes, limit): (u64, u64)) {
        self.usage_spool_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.usage_spool_limit.set(i64::try_from(limit).unwrap_or(i64::MAX));
    }

    /// The text exposition, with the scrape-time gauges set first.
    pub fn render(
        &self,
        snapshot_version: u64,
        snapshot_age_secs: i64,
        usage_queue: usize,
        limits: LimitStats,
    ) -> Vec<u8> {
        self.snapshot_version.set(i64::try_from(snapshot_version).unwrap_or(i64::MAX));
        self.snapshot_age.set(snapshot_age_secs);
        self.usage_queue.set(i64::try_from(usage_queue).unwrap_or(i64::MAX));
        let mut out = Vec::with_capacity(8192);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "could not encode metrics");
        }
        // The limiter keeps its own atomic totals; they are written out as counters here.
        for (name, help, value) in [
            ("limit_denied_rate_total", "Requests refused by a rate or concurrency limit", limits.denied_rate),
            ("limit_denied_budget_total", "Requests refused by a budget", limits.denied_budget),
            ("limit_redis_errors_total", "Redis calls of the limiter that failed or timed out", limits.redis_errors),
            (
                "limit_redis_fallbacks_total",
                "Admissions decided without Redis because it was unreachable",
                limits.redis_fallbacks,
            ),
        ] {
            out.extend_from_slice(
                format!(
                    "# HELP switchyard_{name} {help}\n# TYPE switchyard_{name} counter\nswitchyard_{name} {value}\n"
                )
                .as_bytes(),
            );
        }
        out
    }
}

fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        408 => "408",
        413 => "413",
        429 => "429",
        499 => "499",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        s if s < 300 => "2xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}
