//! Price versions: records are costed with the version in force when their request started, keep that version,
//! and a mid-month price change splits the rollups by version.

use chrono::{DateTime, TimeZone as _, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_shared::UsageBatch;

use crate::helpers::{Backend, expect_error, expect_json, spawn_app, usage_record};

fn t(month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, 12, 0, 0).unwrap()
}

async fn records_are_costed_with_the_version_in_force_when_they_started(backend: Backend) {
    let app = spawn_app(backend).await;
    let provider = app.create_provider("up", "http://127.0.0.1:9/v1", None).await;
    let model = app.create_simple_model("m", provider.id, "m-up", 1_000_000, 2_000_000).await;
    let path = format!("/models/{}/prices", model.id);
    let v1: Value = expect_json(
        app.api_post(
            &path,
            &json!({ "effective_from": "2026-10-01T00:00:00Z", "input_per_mtok": 1_000_000,
                     "output_per_mtok": 2_000_000, "cached_input_per_mtok": 100_000 }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let v2: Value = expect_json(
        app.api_post(
            &path,
            &json!({ "effective_from": "2026-11-15T00:00:00Z", "input_per_mtok": 2_000_000, "output_per_mtok": 4_000_000 }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let listed: Vec<Value> = expect_json(app.api_get(&path).await, StatusCode::OK).await;
    assert_eq!(listed.iter().map(|v| v["id"].clone()).collect::<Vec<_>>(), [v1["id"].clone(), v2["id"].clone()]);

    let mut before_mid = usage_record(1, 10, "m", t(11, 10), 1_000, 100, 1);
    before_mid.cached_input_tokens = 400;
    let after_mid = usage_record(1, 10, "m", t(11, 20), 1_000, 100, 1);
    let before_any = usage_record(1, 10, "m", t(9, 1), 1_000, 100, 7);
    let records = vec![before_mid.clone(), after_mid.clone(), before_any.clone()];
    app.post_usage(&UsageBatch { node_id: "n1".into(), records }).await;

    let page = app.usage("limit=10").await;
    let costed = |id| page.data.iter().find(|r| r.record.id == id).unwrap();
    // 600 uncached × 1 + 400 cached × 0.1 + 100 out × 2
    assert_eq!(
        (costed(before_mid.id).record.cost_micros, costed(before_mid.id).price_version_id),
        (840, v1["id"].as_i64())
    );
    // 1000 × 2 + 100 × 4
    assert_eq!(
        (costed(after_mid.id).record.cost_micros, costed(after_mid.id).price_version_id),
        (2_400, v2["id"].as_i64())
    );
    // No version in force yet: the node's cost, no version.
    assert_eq!((costed(before_any.id).record.cost_micros, costed(before_any.id).price_version_id), (7, None));
    assert_eq!(page.totals.cost_micros, 840 + 2_400 + 7);

    let check: Value = expect_json(app.api_get("/usage/rollups/check").await, StatusCode::OK).await;
    assert_eq!((check["rollup_rows"].as_u64(), check["differing_rows"].as_u64()), (Some(3), Some(0)), "{check}");
}

async fn price_versions_are_validated(backend: Backend) {
    let app = spawn_app(backend).await;
    let provider = app.create_provider("up", "http://127.0.0.1:9/v1", None).await;
    let model = app.create_simple_model("m", provider.id, "m-up", 1, 1).await;
    let path = format!("/models/{}/prices", model.id);
    let body = json!({ "effective_from": "2026-10-01T00:00:00Z", "input_per_mtok": 1, "output_per_mtok": 1 });
    let negative = json!({ "effective_from": "2026-10-01T00:00:00Z", "input_per_mtok": -1, "output_per_mtok": 1 });
    expect_error(app.api_post(&path, &negative).await, StatusCode::BAD_REQUEST).await;
    expect_json::<Value>(app.api_post(&path, &body).await, StatusCode::CREATED).await;
    expect_error(app.api_post(&path, &body).await, StatusCode::CONFLICT).await;
    expect_error(app.api_post("/models/999999/prices", &body).await, StatusCode::NOT_FOUND).await;
}

backend_tests!(records_are_costed_with_the_version_in_force_when_they_started, price_versions_are_validated);
