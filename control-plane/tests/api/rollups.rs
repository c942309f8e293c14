//! Usage rollups maintained on ingest (each newly stored record counted once, per reporting day), the
//! consistency check as an admin endpoint and as the `check-rollups` command, and budget spend counters.

use chrono::{DateTime, TimeZone as _, Utc};
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _, QueryOrder as _};
use serde_json::{Value, json};
use switchyard_control_plane::entities::{budget_spend, usage_rollups};
use switchyard_shared::UsageBatch;
use switchyard_shared::period::Zone;
use switchyard_shared::snapshot::LimitScope;

use crate::helpers::{Backend, TestApp, expect_json, spawn_app, spawn_app_with, spawn_with_settings, usage_record};

fn t(day: u32, hour: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, min, 0).unwrap()
}

async fn rows(app: &TestApp) -> Vec<usage_rollups::Model> {
    usage_rollups::Entity::find()
        .order_by_asc(usage_rollups::Column::TeamId)
        .order_by_asc(usage_rollups::Column::KeyId)
        .order_by_asc(usage_rollups::Column::Model)
        .order_by_asc(usage_rollups::Column::Day)
        .all(&app.db_pool)
        .await
        .unwrap()
}

async fn check(app: &TestApp) -> Value {
    expect_json(app.api_get("/usage/rollups/check").await, reqwest::StatusCode::OK).await
}

async fn rollups_count_each_new_record_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut failed = usage_record(1, 10, "gpt-4o", t(3, 9, 0), 5, 0, 0);
    failed.status = 502;
    let mut cached = usage_record(1, 10, "gpt-4o", t(3, 18, 0), 100, 40, 900);
    (cached.cached_input_tokens, cached.cache_write_tokens, cached.reasoning_tokens) = (60, 10, 25);
    let records = vec![
        cached,
        failed,
        usage_record(1, 10, "gpt-4o", t(4, 0, 30), 10, 5, 75),
        usage_record(1, 11, "mini", t(3, 12, 0), 1, 1, 1),
        usage_record(2, 20, "gpt-4o", t(3, 12, 0), 7, 3, 40),
    ];
    // A record repeated inside one batch is stored, and counted, once.
    let mut first = records.clone();
    first.push(records[0].clone());
    let batch = UsageBatch { node_id: "n1".into(), records: first };
    assert_eq!(app.post_usage(&batch).await.stored, 5);
    // Sent again, and overlapping with new records: only the new ones add up.
    assert_eq!(app.post_usage(&batch).await.stored, 0);
    let late = usage_record(1, 10, "gpt-4o", t(3, 23, 59), 1, 2, 3);
    let overlap = UsageBatch { node_id: "n1".into(), records: vec![records[0].clone(), late] };
    assert_eq!(app.post_usage(&overlap).await.stored, 1);

    let got: Vec<_> = rows(&app)
        .await
        .into_iter()
        .map(|r| {
            let day = r.day.to_string();
            (r.team_id, r.key_id, r.model, r.price_version_id, day, r.requests, r.errors, r.prompt_tokens)
        })
        .collect();
    let want = [
        (1, 10, "gpt-4o", 0, "2026-11-03", 3, 1, 100 + 5 + 1),
        (1, 10, "gpt-4o", 0, "2026-11-04", 1, 0, 10),
        (1, 11, "mini", 0, "2026-11-03", 1, 0, 1),
        (2, 20, "gpt-4o", 0, "2026-11-03", 1, 0, 7),
    ]
    .map(|(a, b, m, p, d, r, e, pt)| (a, b, m.to_owned(), p, d.to_owned(), r, e, pt));
    assert_eq!(got, want);
    let day3 = rows(&app).await.into_iter().next().unwrap();
    assert_eq!((day3.completion_tokens, day3.cost_micros), (40 + 2, 900 + 3));
    assert_eq!((day3.cached_input_tokens, day3.cache_write_tokens, day3.reasoning_tokens), (60, 10, 25));

    let report = check(&app).await;
    assert_eq!((report["records"].as_u64(), report["rollup_rows"].as_u64()), (Some(6), Some(4)));
    assert_eq!(report["differing_rows"], 0, "{report}");
}

async fn days_follow_the_reporting_time_zone(backend: Backend) {
    let db = crate::helpers::TestDatabase::create(backend).await;
    let app = spawn_app_with(db, |s| s.reporting_timezone = Zone::parse("+05:30").unwrap()).await;
    // 20:00 UTC on the 3rd is 01:30 on the 4th at +05:30.
    let records = vec![usage_record(1, 10, "m", t(3, 20, 0), 1, 1, 1), usage_record(1, 10, "m", t(3, 18, 0), 1, 1, 1)];
    app.post_usage(&UsageBatch { node_id: "n1".into(), records }).await;
    let days: Vec<_> = rows(&app).await.into_iter().map(|r| (r.day.to_string(), r.requests)).collect();
    assert_eq!(days, [("2026-11-03".to_owned(), 1), ("2026-11-04".to_owned(), 1)]);
    assert_eq!(check(&app).await["differing_rows"], 0);
}

async fn the_check_reports_rollups_that_disagree_with_the_records(backend: Backend) {
    let app = spawn_app(backend).await;
    let records =
        vec![usage_record(1, 10, "m", t(3, 10, 0), 10, 5, 50), usage_record(2, 20, "m", t(3, 10, 0), 1, 1, 1)];
    app.post_usage(&UsageBatch { node_id: "n1".into(), records }).await;
    assert_eq!(run_check_command(&app).0, Some(0));

    // Damage one row and remove another.
    usage_rollups::Entity::update_many()
        .col_expr(usage_rollups::Column::Requests, sea_orm::sea_query::Expr::value(7i64))
        .filter(usage_rollups::Column::TeamId.eq(1))
        .exec(&app.db_pool)
        .await
        .unwrap();
    usage_rollups::Entity::delete_many().filter(usage_rollups::Column::TeamId.eq(2)).exec(&app.db_pool).await.unwrap();

    let report = check(&app).await;
    assert_eq!(report["differing_rows"], 2, "{report}");
    let diffs = report["differences"].as_array().unwrap();
    let team1 = diffs.iter().find(|d| d["team_id"] == 1).unwrap();
    assert_eq!((team1["expected"]["requests"].as_i64(), team1["stored"]["requests"].as_i64()), (Some(1), Some(7)));
    let team2 = diffs.iter().find(|d| d["team_id"] == 2).unwrap();
    assert!(team2["stored"].is_null() && team2["expected"]["cost_micros"] == 1, "{team2}");

    let (code, stdout) = run_check_command(&app);
    assert_eq!(code, Some(1), "{stdout}");
    let printed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed["differing_rows"], 2);
}

/// Runs `switchyard-control-plane check-rollups` against the app's database; (exit code, stdout).
fn run_check_command(app: &TestApp) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard-control-plane"))
        .arg("check-rollups")
        .env_clear()
        .env("SWITCHYARD_DATABASE_URL", app.settings.database_url.expose())
        .env("SWITCHYARD_DATA_DIR", &app.settings.data_dir)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn budget_spend_counts_new_records_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let team = app.create_team("Research").await;
    let key = app.issue_key(team.id, &json!({ "name": "ci" })).await;
    let now = Utc::now();
    // Spend before the budget exists is counted when the budget is set.
    let early = usage_record(team.id, key.id, "m", now, 10, 10, 100);
    app.post_usage(&UsageBatch { node_id: "n1".into(), records: vec![early] }).await;
    app.put_limits(&format!("/keys/{}", key.id), &json!({ "budget": { "max_micros": 1_000_000 } })).await;
    app.put_limits(&format!("/teams/{}", team.id), &json!({ "budget": { "max_tokens": 1_000_000 } })).await;

    let batch = UsageBatch {
        node_id: "n1".into(),
        records: vec![
            usage_record(team.id, key.id, "m", now, 1, 2, 30),
            usage_record(team.id, key.id, "m", now, 3, 4, 5),
        ],
    };
    app.post_usage(&batch).await;
    app.post_usage(&batch).await;
    let key_view = app.get_limits(&format!("/keys/{}", key.id)).await.budget_status.unwrap();
    assert_eq!((key_view.spent_micros, key_view.spent_tokens), (135, 30));
    let team_view = app.get_limits(&format!("/teams/{}", team.id)).await.budget_status.unwrap();
    assert_eq!((team_view.spent_micros, team_view.spent_tokens), (135, 30));
    let snapshot = app.latest_snapshot().await;
    let entry = snapshot.limits.iter().find(|e| e.scope == LimitScope::Key && e.id == key.id).unwrap();
    assert_eq!(entry.spend.unwrap().micros, 135);

    // Budgets set before the counters existed get them seeded from the records at start.
    budget_spend::Entity::delete_many().exec(&app.db_pool).await.unwrap();
    let restarted = spawn_with_settings(app.database.clone(), app.settings.clone()).await;
    let seeded = restarted.get_limits(&format!("/keys/{}", key.id)).await.budget_status.unwrap();
    assert_eq!((seeded.spent_micros, seeded.spent_tokens), (135, 30));
}

backend_tests!(
    rollups_count_each_new_record_once,
    days_follow_the_reporting_time_zone,
    the_check_reports_rollups_that_disagree_with_the_records,
    budget_spend_counts_new_records_once,
);
