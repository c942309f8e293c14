//! The node's report on its upstream targets (`POST /node/v1/status`, see `switchyard_shared::protocol`): per
//! target (provider + upstream model) the caps in force and how much of them is in use, attempts held back at a
//! cap, the cool-down after an upstream 429, and the limits the provider advertises in its `x-ratelimit-limit-*`
//! headers. Sent every status interval, and at once when a 429 starts a cool-down here.
//!
//! The control plane answers with every cool-down of the fleet still running, which the node applies to its own
//! targets: a cool-down started by one node reaches the others within one status interval, with or without
//! Redis. This runs in the background, never on the request path.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use switchyard_shared::protocol::{self, CapUse, Cooldown, NodeStatus, StatusAck, TargetStatus};
use tokio::sync::watch;

use crate::catalog::Catalog;
use crate::config::{Secret, Settings};
use crate::limits::Limiter;
use crate::snapshot::SnapshotStore;

/// Per-target figures the request path records for the report (lock-free; 0 stands for "none").
#[derive(Debug, Default)]
pub struct TargetStats {
    throttled: AtomicU64,
    last_throttled_ms: AtomicI64,
    learned_requests: AtomicU64,
    learned_tokens: AtomicU64,
}

impl TargetStats {
    /// An attempt held back because the target was at a cap.
    pub fn throttled(&self, now: DateTime<Utc>) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
        self.last_throttled_ms.store(now.timestamp_millis(), Ordering::Relaxed);
    }

    /// The provider advertised `limit` for `kind` (`requests` or `tokens`).
    pub fn learned(&self, kind: &str, limit: u64) {
        let slot = if kind == "tokens" { &self.learned_tokens } else { &self.learned_requests };
        slot.store(limit, Ordering::Relaxed);
    }
}

/// The report as of now: each target of the catalog once.
pub fn build(node_id: &str, catalog: &Catalog, limiter: &Limiter) -> NodeStatus {
    let (now, mono) = (Utc::now(), Instant::now());
    let at = |left: Duration| now + chrono::Duration::from_std(left).unwrap_or_default();
    let mut seen = HashSet::new();
    let mut status = NodeStatus { node_id: node_id.to_owned(), at: now, targets: Vec::new(), cooldowns: Vec::new() };
    for target in catalog.targets() {
        let (provider_id, model) = (target.upstream.id, &*target.upstream_model);
        if !seen.insert((provider_id, model)) {
            continue;
        }
        let stats = &target.health.limits;
        let cap_use = |u: Option<(u64, u64)>| u.map(|(used, cap)| CapUse { used, cap });
        let usage = target.caps.as_ref().map(|p| limiter.target_use(provider_id, p)).unwrap_or_default();
        let known = |a: &AtomicU64| Some(a.load(Ordering::Relaxed)).filter(|&n| n > 0);
        let last_ms = stats.last_throttled_ms.load(Ordering::Relaxed);
        status.targets.push(TargetStatus {
            provider_id,
            upstream_model: model.to_owned(),
            requests: cap_use(usage.requests),
            tokens: cap_use(usage.tokens),
            concurrency: cap_use(usage.concurrency),
            cap_scope: target.caps.as_ref().map(|p| p.scope().to_owned()),
            throttled: stats.throttled.load(Ordering::Relaxed),
            last_throttled_at: (last_ms > 0).then(|| DateTime::from_timestamp_millis(last_ms)).flatten(),
            cooling_until: target.health.cool.left(mono).map(at),
            learned_requests: known(&stats.learned_requests),
            learned_tokens: known(&stats.learned_tokens),
        });
        if let Some(left) = target.health.cool.own_left(mono) {
            status.cooldowns.push(Cooldown { provider_id, upstream_model: model.to_owned(), until: at(left) });
        }
    }
    status
}

/// Applies the fleet's cool-downs to this node's targets (a cool-down only ever grows).
pub fn apply(catalog: &Catalog, ack: &StatusAck) {
    let (now, mono) = (Utc::now(), Instant::now());
    for c in &ack.cooldowns {
        let Ok(left) = (c.until - now).to_std() else { continue };
        let left = left.min(crate::limits::cooldown::MAX_COOLDOWN);
        for t in catalog.targets() {
            if t.upstream.id == c.provider_id && *t.upstream_model == *c.upstream_model {
                t.health.cool.extend(mono + left);
            }
        }
    }
}

/// Reports every `interval`, and at once when a cool-down starts here, until `stop` fires. Failures are logged
/// at debug level and the next report simply tries again: nothing here is needed to serve requests.
pub async fn run(
    snapshots: Arc<SnapshotStore>,
    limiter: Arc<Limiter>,
    client: reqwest::Client,
    settings: &Settings,
    node_id: String,
    mut stop: watch::Receiver<bool>,
) {
    let url = format!("{}{}", settings.control_plane_url.trim_end_matches('/'), protocol::STATUS_PATH);
    let node_token: Secret = settings.node_token.clone();
    let mut ticker = tokio::time::interval(settings.status_interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = limiter.cooled() => {}
            _ = stop.changed() => return,
        }
        let catalog = snapshots.load_full();
        if catalog.version == 0 {
            continue;
        }
        let status = build(&node_id, &catalog, &limiter);
        if status.targets.is_empty() {
            continue;
        }
        let Ok(body) = serde_json::to_vec(&status) else { continue };
        let exchange = async {
            let res = client
                .post(&url)
                .bearer_auth(node_token.expose())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body)
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)?;
            res.bytes().await
        };
        // A report in flight must not hold up the node's shutdown.
        let answer = tokio::select! {
            a = exchange => a,
            _ = stop.changed() => return,
        };
        match answer.map(|b| serde_json::from_slice::<StatusAck>(&b)) {
            Ok(Ok(ack)) => apply(&catalog, &ack),
            Ok(Err(e)) => tracing::debug!(error = %e, "unreadable status answer"),
            Err(e) => tracing::debug!(error = %e, "status report failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use switchyard_shared::Price;
    use switchyard_shared::snapshot::*;

    use super::*;
    use crate::limits::LimitSettings;

    /// One provider capped at 10 RPM with `big` capped at 100 RPM of its own; models routing to `big` and `small`
    /// (and `small` twice, to check it is reported once).
    fn catalog() -> Catalog {
        let target = |m: &str| TargetEntry { provider_id: 1, upstream_model: m.into(), weight: 1, priority: 0 };
        let model = |name: &str, targets: Vec<TargetEntry>| ModelEntry {
            name: name.into(),
            price: Price::default(),
            targets,
            allowed_teams: None,
        };
        let snapshot = Snapshot {
            version: 1,
            providers: vec![ProviderEntry {
                id: 1,
                name: "p".into(),
                kind: ProviderKind::OpenaiCompatible,
                base_url: "http://x/v1".into(),
                credential: None,
                timeouts: Default::default(),
                caps: TargetCaps { rpm: Some(10), ..Default::default() },
                model_caps: vec![ModelCaps { upstream_model: "big".into(), rpm: Some(100), ..Default::default() }],
            }],
            models: vec![model("a", vec![target("big"), target("small")]), model("b", vec![target("small")])],
            ..Snapshot::empty(Utc::now())
        };
        Catalog::compile(&snapshot, &Default::default())
    }

    #[tokio::test]
    async fn the_report_has_each_target_once_with_its_caps_in_use_and_its_own_cooldowns_only() {
        let catalog = catalog();
        let limiter = Limiter::new(LimitSettings::default(), "n".into()).unwrap();
        let big = catalog.targets().find(|t| &*t.upstream_model == "big").unwrap();
        let small = catalog.targets().find(|t| &*t.upstream_model == "small").unwrap();
        let _t = limiter.admit_target(1, 1, big.caps.as_ref().unwrap(), 10).await.unwrap();
        small.health.limits.throttled(Utc::now());
        small.health.limits.learned("requests", 500);
        limiter.cool_down(1, "big", &big.health.cool, Duration::from_secs(30)).await;
        let report = build("n", &catalog, &limiter);
        let mut targets = report.targets.clone();
        targets.sort_by(|a, b| a.upstream_model.cmp(&b.upstream_model));
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[0].requests, Some(CapUse { used: 1, cap: 100 }));
        assert_eq!(targets[0].cap_scope.as_deref(), Some("model"));
        assert!(targets[0].cooling_until.is_some());
        assert_eq!(targets[1].requests, Some(CapUse { used: 0, cap: 10 }));
        assert_eq!((targets[1].throttled, targets[1].learned_requests), (1, Some(500)));
        assert_eq!(report.cooldowns.len(), 1);

        // A cool-down learned from the fleet applies here but is not reported as this node's own.
        let until = Utc::now() + chrono::Duration::seconds(20);
        apply(
            &catalog,
            &StatusAck { cooldowns: vec![Cooldown { provider_id: 1, upstream_model: "small".into(), until }] },
        );
        let left = small.health.cool.left(Instant::now()).unwrap();
        assert!(left > Duration::from_secs(18) && left <= Duration::from_secs(20), "{left:?}");
        let report = build("n", &catalog, &limiter);
        assert_eq!(report.cooldowns.iter().map(|c| c.upstream_model.as_str()).collect::<Vec<_>>(), ["big"]);
    }
}
