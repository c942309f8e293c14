//! Limits through the admin API: operators set and view limits of teams and keys, nodes receive them in the
//! snapshot with the spend of the current budget period, and spend crossing a threshold raises an alert.

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::json;
use switchyard_shared::UsageBatch;
use switchyard_shared::snapshot::LimitScope;

use crate::helpers::{Backend, expect_error, spawn_app, usage_record};

async fn operators_set_view_and_clear_limits_of_teams_and_keys(backend: Backend) {
    let app = spawn_app(backend).await;
    let team = app.create_team("Research").await;
    let key = app.issue_key(team.id, &json!({ "name": "ci" })).await;

    // Nothing set: empty limits, no budget.
    let view = app.get_limits(&format!("/teams/{}", team.id)).await;
    assert!(view.limits.is_empty() && view.budget_status.is_none());

    let team_limits = json!({
        "rpm": 600, "tpm": 100000, "max_concurrent": 8,
        "budget": { "period": "monthly", "timezone": "Europe/Berlin", "max_micros": 50000000,
                    "soft_threshold_pct": 90,
                    "temporary_increase": { "micros": 10000000, "until": "2099-01-01T00:00:00Z" } }
    });
    let view = app.put_limits(&format!("/teams/{}", team.id), &team_limits).await;
    assert_eq!((view.scope, view.id), (LimitScope::Team, team.id));
    assert_eq!(view.limits.rpm, Some(600));
    let status = view.budget_status.expect("a budget has a status");
    assert_eq!(status.spent_micros, 0);
    // The temporary increase is in force until 2099.
    assert_eq!(status.cap_micros, Some(60_000_000));
    assert!(status.period_start < Utc::now() && Utc::now() < status.period_end);

    app.put_limits(&format!("/keys/{}", key.id), &json!({ "rpm": 5 })).await;
    assert_eq!(app.get_limits(&format!("/keys/{}", key.id)).await.limits.rpm, Some(5));

    // Both travel in the snapshot; the budget with its spend.
    let snapshot = app.latest_snapshot().await;
    let team_entry = snapshot.limits.iter().find(|e| e.scope == LimitScope::Team && e.id == team.id).unwrap();
    assert_eq!(team_entry.limits.max_concurrent, Some(8));
    assert_eq!(team_entry.spend.unwrap().period_start, status.period_start);
    let key_entry = snapshot.limits.iter().find(|e| e.scope == LimitScope::Key && e.id == key.id).unwrap();
    assert!(key_entry.spend.is_none());

    // Replacing is whole: what is left out is no longer limited.
    let view = app.put_limits(&format!("/teams/{}", team.id), &json!({ "rpm": 60 })).await;
    assert_eq!((view.limits.rpm, view.limits.tpm, view.budget_status), (Some(60), None, None));

    // Clearing removes them from the next snapshot.
    let res = app.api_delete(&format!("/keys/{}/limits", key.id)).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(app.get_limits(&format!("/keys/{}", key.id)).await.limits.is_empty());
    let snapshot = app.latest_snapshot().await;
    assert!(!snapshot.limits.iter().any(|e| e.scope == LimitScope::Key));

    // A revoked key's limits are not shipped.
    app.put_limits(&format!("/keys/{}", key.id), &json!({ "rpm": 5 })).await;
    app.revoke_key(key.id).await;
    let snapshot = app.latest_snapshot().await;
    assert!(!snapshot.limits.iter().any(|e| e.scope == LimitScope::Key));
}

async fn limits_that_cannot_work_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let team = app.create_team("Research").await;
    let owner = format!("/teams/{}/limits", team.id);
    for (body, param) in [
        (json!({ "rpm": 0 }), "rpm"),
        (json!({ "max_concurrent": 0 }), "max_concurrent"),
        (json!({ "budget": { "period": "monthly" } }), "budget"),
        (json!({ "budget": { "max_micros": 1, "timezone": "Mars/Olympus" } }), "budget.timezone"),
        (json!({ "budget": { "max_micros": 1, "soft_threshold_pct": 0 } }), "budget.soft_threshold_pct"),
    ] {
        let err = expect_error(app.api_put(&owner, &body).await, StatusCode::BAD_REQUEST).await;
        assert_eq!(err.error.param.as_deref(), Some(param), "{body}");
    }
    let err =
        expect_error(app.api_put(&owner, &json!({ "budget": { "period": "yearly" } })).await, StatusCode::BAD_REQUEST)
            .await;
    assert!(err.error.message.contains("period") || err.error.message.contains("yearly"), "{}", err.error.message);
    expect_error(app.api_put("/teams/999/limits", &json!({ "rpm": 1 })).await, StatusCode::NOT_FOUND).await;
    expect_error(app.api_get("/keys/999/limits").await, StatusCode::NOT_FOUND).await;
}

async fn spend_reaches_the_snapshot_and_thresholds_raise_alerts(backend: Backend) {
    let app = spawn_app(backend).await;
    let team = app.create_team("Research").await;
    let key = app.issue_key(team.id, &json!({ "name": "ci" })).await;
    app.put_limits(
        &format!("/teams/{}", team.id),
        &json!({ "budget": { "max_micros": 1000, "soft_threshold_pct": 50 } }),
    )
    .await;
    let before = app.latest_snapshot().await.version;

    let now = Utc::now();
    let first = usage_record(team.id, key.id, "m", now, 10, 20, 600);
    let first_id = first.id;
    app.post_usage(&UsageBatch { node_id: "test-node".into(), records: vec![first] }).await;

    // Ingest bumped the version: the new snapshot carries the spend and which records it includes.
    let snapshot = app.next_snapshot(before).await;
    let entry = snapshot.limits.iter().find(|e| e.id == team.id).unwrap();
    let spend = entry.spend.unwrap();
    assert_eq!((spend.micros, spend.tokens), (600, 30));
    let mark = snapshot.usage_watermarks.iter().find(|w| w.node_id == "test-node").unwrap();
    assert_eq!(mark.last_record_id, first_id);

    let view = app.get_limits(&format!("/teams/{}", team.id)).await;
    assert_eq!(view.budget_status.unwrap().spent_micros, 600);
    let alerts = app.alerts(&format!("team_id={}", team.id)).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!((alerts[0].kind.as_str(), alerts[0].spent_micros, alerts[0].threshold_pct), ("soft_threshold", 600, 50));

    // Crossing the cap raises the second alert once; the first is not repeated.
    let second = usage_record(team.id, key.id, "m", now, 1, 1, 500);
    app.post_usage(&UsageBatch { node_id: "test-node".into(), records: vec![second] }).await;
    let third = usage_record(team.id, key.id, "m", now, 1, 1, 5);
    app.post_usage(&UsageBatch { node_id: "test-node".into(), records: vec![third] }).await;
    let alerts = app.alerts(&format!("team_id={}", team.id)).await;
    let kinds: Vec<&str> = alerts.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(kinds, ["exhausted", "soft_threshold"]);
    assert!(app.alerts("team_id=999999").await.is_empty());

    // Usage of teams without budgets does not touch the snapshot version.
    let other = app.create_team("Other").await;
    let v = app.latest_snapshot().await.version;
    app.post_usage(&UsageBatch {
        node_id: "test-node".into(),
        records: vec![usage_record(other.id, 0, "m", now, 1, 1, 5)],
    })
    .await;
    assert_eq!(app.nodes().await.current_version, v);
}

backend_tests!(
    operators_set_view_and_clear_limits_of_teams_and_keys,
    limits_that_cannot_work_are_refused,
    spend_reaches_the_snapshot_and_thresholds_raise_alerts,
);
