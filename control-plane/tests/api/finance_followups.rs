//! Finance across deployments and time: the deployment currency (`SWITCHYARD_CURRENCY`) on draft and issued
//! invoices, their CSV and console pages (an issued invoice keeps the currency it was issued with), and, on
//! Postgres, months whose raw records the retention setting dropped: the reconciliation compares their invoices
//! with the rollups and says so, and the raw export refuses them with a clear error instead of an empty file.

use chrono::{DateTime, NaiveDate, TimeZone as _, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_control_plane::Settings;
use switchyard_control_plane::domain::invoices::{Currency, Invoice};
use switchyard_control_plane::domain::partitions::{self, Partitions, partition_name};
use switchyard_shared::UsageBatch;
use switchyard_shared::period::Zone;

use crate::console_helpers::ConsoleSession;
use crate::helpers::{Backend, TestApp, TestDatabase, expect_json, spawn_app, spawn_app_with, usage_record};
use crate::usage_partitions::{in_month, month};

fn at(month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, 9, 0, 0).unwrap()
}

async fn post(app: &TestApp, records: Vec<switchyard_shared::UsageRecord>) {
    app.post_usage(&UsageBatch { node_id: "n1".into(), records }).await;
}

async fn invoice(app: &TestApp, team: i64, month: &str) -> Invoice {
    expect_json(app.api_get(&format!("/teams/{team}/invoices/{month}")).await, StatusCode::OK).await
}

async fn a_deployment_in_eur_bills_in_eur(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let eur = Currency::parse("EUR").unwrap();
    let app = spawn_app_with(database.clone(), |s| s.currency = eur).await;
    let op = ConsoleSession::operator(&app).await;
    let (a, b) = (op.create_team("Team A").await, op.create_team("Team B").await);
    post(
        &app,
        vec![
            usage_record(a, 1, "alpha", at(10, 3), 100, 10, 12_500_000),
            usage_record(b, 2, "alpha", at(10, 4), 1, 1, 7),
        ],
    )
    .await;

    let draft = invoice(&app, a, "2026-10").await;
    assert_eq!((draft.status.as_str(), draft.currency.as_str(), draft.total_micros), ("draft", "EUR", 12_500_000));
    let csv = app.api_get(&format!("/teams/{a}/invoices/2026-10.csv")).await.text().await.unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "currency").unwrap();
    assert!(csv.lines().skip(1).all(|row| row.split(',').nth(col) == Some("EUR")), "{csv}");

    let issued: Invoice =
        expect_json(app.api_post(&format!("/teams/{a}/invoices/2026-10/issue"), &json!({})).await, StatusCode::CREATED)
            .await;
    assert_eq!((issued.status.as_str(), issued.currency.as_str()), ("issued", "EUR"));
    op.get(&format!("/console/teams/{a}/invoices/2026-10"))
        .await
        .assert_status(StatusCode::OK)
        .assert_contains("<dd>EUR</dd>")
        .assert_contains("Total (EUR)")
        .assert_contains("€12.50");
    op.get("/console/invoices?month=2026-10").await.assert_contains("€12.50").assert_contains("€0.000007");

    // The deployment moves to the default (USD): the issued invoice keeps its EUR, drafts are in USD now.
    let usd = spawn_app_with(database, |s: &mut Settings| {
        s.encryption_key = app.settings.encryption_key.clone();
        s.node_token = app.settings.node_token.clone();
        s.bootstrap_operator_token = app.settings.bootstrap_operator_token.clone();
    })
    .await;
    assert_eq!(usd.settings.currency, Currency::USD);
    assert_eq!(invoice(&usd, a, "2026-10").await, issued);
    assert_eq!(invoice(&usd, b, "2026-10").await.currency, "USD");
    let listed: Vec<Value> = expect_json(usd.api_get("/invoices?month=2026-10").await, StatusCode::OK).await;
    let currencies: Vec<&str> = listed.iter().map(|r| r["currency"].as_str().unwrap()).collect();
    assert_eq!(currencies, ["EUR", "USD"]);
}

backend_tests!(a_deployment_in_eur_bills_in_eur);

fn yyyy_mm(d: NaiveDate) -> String {
    d.format("%Y-%m").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn months_dropped_by_retention_reconcile_against_rollups_and_refuse_raw_export() {
    let app = spawn_app(Backend::Postgres).await;
    let db = &app.db_pool;
    let team = app.create_team("Team A").await.id;
    post(
        &app,
        vec![
            usage_record(team, 1, "m", in_month(-6), 5, 5, 100),
            usage_record(team, 1, "m", in_month(-6) + chrono::Duration::days(1), 5, 5, 50),
            usage_record(team, 1, "m", in_month(-1), 5, 5, 300),
            usage_record(team, 1, "m", in_month(0), 5, 5, 400),
        ],
    )
    .await;
    let old = yyyy_mm(month(-6));
    expect_json::<Value>(
        app.api_post(&format!("/teams/{team}/invoices/{old}/issue"), &json!({})).await,
        StatusCode::CREATED,
    )
    .await;
    let before: Value = expect_json(app.api_get(&format!("/reconciliation?month={old}")).await, StatusCode::OK).await;
    assert_eq!((&before["source"], &before["records_retained"]), (&json!("records"), &json!(true)));

    let done = partitions::maintain(db, &Partitions::default(), Zone::UTC, 2, Utc::now(), true).await.unwrap();
    assert_eq!(done.dropped, [partition_name(month(-6))]);
    assert_eq!(partitions::records_from(db).await.unwrap(), Some(month(-5)), "the month after the last one dropped");

    // The dropped month reconciles against its rollups, and says so.
    let after: Value = expect_json(app.api_get(&format!("/reconciliation?month={old}")).await, StatusCode::OK).await;
    let n = |k: &str| after[k].as_i64().unwrap();
    assert_eq!((&after["source"], &after["records_retained"]), (&json!("rollups"), &json!(false)), "{after}");
    assert_eq!((n("usage_records"), n("records_cost_micros"), n("issued_micros")), (2, 150, 150), "{after}");
    assert_eq!((n("difference_micros"), n("overbilled_micros")), (0, 0), "{after}");
    let console = ConsoleSession::operator(&app).await;
    console
        .get(&format!("/console/invoices?month={old}"))
        .await
        .assert_contains("records were removed by the retention setting")
        .assert_contains("2 requests, $0.00015");
    // A kept month still checks the raw records.
    let kept: Value =
        expect_json(app.api_get(&format!("/reconciliation?month={}", yyyy_mm(month(-1)))).await, StatusCode::OK).await;
    assert_eq!((&kept["source"], &kept["records_cost_micros"]), (&json!("records"), &json!(300)));

    // The raw export of a dropped month (or of a range reaching into one) is a clear error, not an empty file.
    let from = in_month(-6).to_rfc3339().replace('+', "%2B");
    let to = in_month(0).to_rfc3339().replace('+', "%2B");
    let kept_from = yyyy_mm(month(-5));
    for query in [format!("month={old}"), format!("month={}", yyyy_mm(month(-7))), format!("from={from}&to={to}")] {
        let res = app.api_get(&format!("/usage/export.csv?{query}")).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: Value = res.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        let param = if query.starts_with("month") { "month" } else { "from" };
        assert_eq!(body["error"]["param"], param, "{body}");
        assert!(
            message.starts_with(&format!("raw usage before {kept_from} was removed by the retention setting")),
            "{body}"
        );
    }
    let res = app.api_get(&format!("/usage/export.csv?month={}", yyyy_mm(month(-1)))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap().lines().count(), 2, "header and the one record");
}
