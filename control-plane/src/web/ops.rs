//! Operational endpoints, unauthenticated and cheap: `/healthz` (the process serves HTTP: liveness),
//! `/readyz` (the database answers and the server is not stopping: readiness), `/metrics` (Prometheus text).
//! None of them reveals a secret; `/metrics` carries node ids and versions only.

use std::fmt::Write as _;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use chrono::Utc;

use super::AppState;
use crate::domain::fleet_status;
use crate::domain::limits::{ALERT_EXHAUSTED, ALERT_SOFT};
use crate::domain::snapshot::error_chain;

/// A node not heard from for this long counts as `stale` rather than `current` or `lagging`.
const STALE_AFTER_SECS: i64 = 120;
const PING_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// 200 once the database answers within two seconds and the server is not shutting down; 503 otherwise, so a
/// load balancer stops sending admin and node traffic to a replica that cannot serve it.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let published = state.feed.latest().version;
    let problem = if *state.stopping.borrow() {
        Some("stopping".to_owned())
    } else {
        match tokio::time::timeout(PING_TIMEOUT, state.store.db.ping()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("database: {}", error_chain(&e))),
            Err(_) => Some("database: no answer within 2 s".to_owned()),
        }
    };
    match problem {
        None => HttpResponse::Ok()
            .content_type("application/json")
            .body(format!(r#"{{"status":"ready","published_version":{published}}}"#)),
        Some(reason) => {
            tracing::warn!(reason, "not ready");
            HttpResponse::ServiceUnavailable()
                .content_type("application/json")
                .body(r#"{"status":"not_ready"}"#.to_owned())
        }
    }
}

/// Prometheus text exposition of the fleet as this replica's database sees it. A database error answers 503
/// (the scrape fails and `up` turns 0) rather than stale figures.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let status = match fleet_status::read(&state.store).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "metrics: cannot read the fleet status");
            return HttpResponse::ServiceUnavailable().content_type("text/plain").body("database unavailable\n");
        }
    };
    let published = state.feed.latest();
    let now = Utc::now();
    let mut out = String::with_capacity(2048);
    gauge(&mut out, "cp_config_version", "Configuration version committed in the database", status.config_version);
    gauge(&mut out, "cp_published_version", "Snapshot version this replica serves to nodes", published.version);
    gauge(&mut out, "cp_snapshot_bytes", "Size of the published snapshot body", published.body.len());

    let (mut current, mut lagging, mut stale) = (0u64, 0u64, 0u64);
    header(&mut out, "cp_node_lag_versions", "Configuration versions a node is behind (0 = current)", "gauge");
    for n in &status.nodes {
        let lag = status.config_version.saturating_sub(n.applied_version);
        let _ = writeln!(out, "switchyard_cp_node_lag_versions{{node=\"{}\"}} {lag}", escape(&n.node_id));
    }
    header(&mut out, "cp_node_last_seen_seconds", "Seconds since a node last polled for a snapshot", "gauge");
    for n in &status.nodes {
        let age = (now - n.last_seen_at).num_seconds().max(0);
        let _ = writeln!(out, "switchyard_cp_node_last_seen_seconds{{node=\"{}\"}} {age}", escape(&n.node_id));
        match (age > STALE_AFTER_SECS, n.lagging) {
            (true, _) => stale += 1,
            (false, true) => lagging += 1,
            (false, false) => current += 1,
        }
    }
    header(
        &mut out,
        "cp_nodes",
        "Known nodes: current, lagging (alive, older snapshot), stale (silent > 120 s)",
        "gauge",
    );
    for (state, n) in [("current", current), ("lagging", lagging), ("stale", stale)] {
        let _ = writeln!(out, "switchyard_cp_nodes{{state=\"{state}\"}} {n}");
    }
    header(&mut out, "cp_budget_alerts_total", "Budget alerts raised, by kind (soft_threshold, exhausted)", "counter");
    for kind in [ALERT_SOFT, ALERT_EXHAUSTED] {
        let n = status.budget_alerts.iter().find(|(k, _)| k == kind).map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "switchyard_cp_budget_alerts_total{{kind=\"{kind}\"}} {n}");
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(out)
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP switchyard_{name} {help}\n# TYPE switchyard_{name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, help, "gauge");
    let _ = writeln!(out, "switchyard_{name} {value}");
}

/// Label values are node ids (visible ASCII); quotes and backslashes are escaped anyway.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"")
}
