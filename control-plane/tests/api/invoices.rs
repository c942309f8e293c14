//! Draft invoices from the rollups: a synthetic month across two teams, two models and a mid-month price change
//! gives line items equal to hand-computed amounts; the CSV export sums to the total; a team admin reads only her
//! own team's invoice; the month reconciles with the raw records.

use chrono::{DateTime, TimeZone as _, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_control_plane::domain::invoices::Invoice;
use switchyard_shared::UsageBatch;

use crate::console_helpers::ConsoleSession;
use crate::helpers::{Backend, TestApp, expect_json, spawn_app, usage_record};

fn at(month: u32, day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, hour, 0, 0).unwrap()
}

async fn add_price(app: &TestApp, model_id: i64, body: Value) -> i64 {
    let v: Value =
        expect_json(app.api_post(&format!("/models/{model_id}/prices"), &body).await, StatusCode::CREATED).await;
    v["id"].as_i64().unwrap()
}

async fn get_as(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.client.get(app.url(&format!("/api/v1{path}"))).bearer_auth(token).send().await.unwrap()
}

/// (model, price version, requests, prompt, cached, completion, amount) of a line.
type Line<'a> = (&'a str, Option<i64>, i64, i64, i64, i64, i64);

fn lines(inv: &Invoice) -> Vec<Line<'_>> {
    inv.lines
        .iter()
        .map(|l| {
            let t = (l.requests, l.prompt_tokens, l.cached_input_tokens, l.completion_tokens, l.amount_micros);
            (l.model.as_str(), l.price_version_id, t.0, t.1, t.2, t.3, t.4)
        })
        .collect()
}

async fn invoices_match_hand_computed_lines_and_reconcile(backend: Backend) {
    let app = spawn_app(backend).await;
    let op = ConsoleSession::operator(&app).await;
    let a = op.create_team("Team A").await;
    let b = op.create_team("Team B").await;
    let provider = app.create_provider("up", "http://127.0.0.1:9/v1", None).await;
    let alpha = app.create_simple_model("alpha", provider.id, "alpha-up", 1, 1).await;
    let beta = app.create_simple_model("beta", provider.id, "beta-up", 1, 1).await;
    let alpha_v1 = add_price(
        &app,
        alpha.id,
        json!({ "effective_from": "2026-10-01T00:00:00Z", "input_per_mtok": 1_000_000,
                "output_per_mtok": 2_000_000, "cached_input_per_mtok": 100_000 }),
    )
    .await;
    // The mid-month change splits alpha's line.
    let alpha_v2 = add_price(
        &app,
        alpha.id,
        json!({ "effective_from": "2026-10-16T00:00:00Z", "input_per_mtok": 3_000_000, "output_per_mtok": 6_000_000 }),
    )
    .await;
    let beta_v1 = add_price(
        &app,
        beta.id,
        json!({ "effective_from": "2026-09-01T00:00:00Z", "input_per_mtok": 500_000, "output_per_mtok": 1_500_000 }),
    )
    .await;

    let mut cached = usage_record(a, 1, "alpha", at(10, 5, 9), 1_000, 100, 1);
    cached.cached_input_tokens = 400;
    let records = [
        cached,                                                      // 600 × 1 + 400 × 0.1 + 100 × 2 = 840
        usage_record(a, 1, "alpha", at(10, 10, 9), 333, 7, 1),       // 333 + 14 = 347
        usage_record(a, 1, "alpha", at(10, 20, 9), 1_000, 100, 1),   // 3000 + 600 = 3600
        usage_record(a, 2, "beta", at(10, 31, 23), 2_000, 1_000, 1), // 1000 + 1500 = 2500
        usage_record(a, 2, "beta", at(10, 12, 9), 1, 0, 1),          // 0.5 rounds up to 1
        usage_record(a, 1, "alpha", at(11, 1, 0), 1_000, 0, 1),      // November: not on October's invoice
        usage_record(b, 3, "beta", at(10, 3, 9), 10_000, 2_000, 1),  // 5000 + 3000 = 8000
        usage_record(b, 3, "alpha", at(10, 25, 9), 100, 50, 1),      // 300 + 300 = 600
    ];
    // Two nodes, so the lines sum rollup rows of several shards.
    let (first, second) = records.split_at(4);
    app.post_usage(&UsageBatch { node_id: "n1".into(), records: first.to_vec() }).await;
    app.post_usage(&UsageBatch { node_id: "n2".into(), records: second.to_vec() }).await;

    let inv_a: Invoice = expect_json(app.api_get(&format!("/teams/{a}/invoices/2026-10")).await, StatusCode::OK).await;
    assert_eq!(
        lines(&inv_a),
        [
            ("alpha", Some(alpha_v1), 2, 1_333, 400, 107, 1_187),
            ("alpha", Some(alpha_v2), 1, 1_000, 0, 100, 3_600),
            ("beta", Some(beta_v1), 2, 2_001, 0, 1_000, 2_501),
        ]
    );
    assert_eq!((inv_a.subtotal_micros, inv_a.total_micros, inv_a.month.as_str()), (7_288, 7_288, "2026-10"));
    let v1_prices = inv_a.lines[0].unit_prices.unwrap();
    assert_eq!((v1_prices.input_per_mtok, v1_prices.cached_input_per_mtok), (1_000_000, Some(100_000)));
    assert_eq!(inv_a.lines[1].unit_prices.unwrap().output_per_mtok, 6_000_000);

    let inv_b: Invoice = expect_json(app.api_get(&format!("/teams/{b}/invoices/2026-10")).await, StatusCode::OK).await;
    assert_eq!(
        lines(&inv_b),
        [("alpha", Some(alpha_v2), 1, 100, 0, 50, 600), ("beta", Some(beta_v1), 1, 10_000, 0, 2_000, 8_000)]
    );
    assert_eq!(inv_b.total_micros, 8_600);

    // The CSV has a row per line and a total row; the lines sum to the total.
    let res = app.api_get(&format!("/teams/{a}/invoices/2026-10.csv")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let csv = res.text().await.unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    let header = &rows[0];
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (model, amount, decimal) = (col("model"), col("amount_micros"), col("amount"));
    assert!(rows.iter().all(|r| r.len() == header.len()), "{csv}");
    let (total, items): (Vec<_>, Vec<_>) = rows[1..].iter().partition(|r| r[model] == "total");
    assert_eq!((items.len(), total.len()), (3, 1), "{csv}");
    let sum: i64 = items.iter().map(|r| r[amount].parse::<i64>().unwrap()).sum();
    assert_eq!((sum, total[0][amount].parse::<i64>().unwrap(), total[0][decimal]), (7_288, 7_288, "0.007288"));

    // October reconciles: 7 records, every invoice total equals their costs.
    let rec: Value = expect_json(app.api_get("/reconciliation?month=2026-10").await, StatusCode::OK).await;
    assert_eq!(
        (&rec["teams"], &rec["usage_records"], &rec["invoice_total_micros"], &rec["records_cost_micros"]),
        (&json!(2), &json!(7), &json!(15_888), &json!(15_888)),
        "{rec}"
    );
    assert_eq!(rec["difference_micros"], 0);
    let bad = app.api_get("/reconciliation?month=2026-13").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.api_get(&format!("/teams/{a}/invoices/october")).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.api_get("/teams/999999/invoices/2026-10").await.status(), StatusCode::NOT_FOUND);

    // A team admin reads her own team's invoice, not another's, and not the reconciliation; a member reads none.
    let ann = op.add_user(&app, a, "ann@example.com", "admin").await;
    let ann_token = ann.submit("/console/account/tokens", &[("name", "ann")]).await.secret();
    let own: Invoice =
        expect_json(get_as(&app, &ann_token, &format!("/teams/{a}/invoices/2026-10")).await, StatusCode::OK).await;
    assert_eq!(own.total_micros, 7_288);
    for path in [format!("/teams/{b}/invoices/2026-10"), format!("/teams/{b}/invoices/2026-10.csv")] {
        assert_eq!(get_as(&app, &ann_token, &path).await.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let rec = get_as(&app, &ann_token, "/reconciliation?month=2026-10").await;
    assert_eq!(rec.status(), StatusCode::FORBIDDEN);
    let mia = op.add_user(&app, a, "mia@example.com", "member").await;
    let mia_token = mia.submit("/console/account/tokens", &[("name", "mia")]).await.secret();
    let member = get_as(&app, &mia_token, &format!("/teams/{a}/invoices/2026-10")).await;
    assert_eq!(member.status(), StatusCode::FORBIDDEN);
}

backend_tests!(invoices_match_hand_computed_lines_and_reconcile);
