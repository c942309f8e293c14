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

    // Issuing freezes exactly the hand-computed lines, and the month still reconciles.
    let issued: Invoice =
        expect_json(app.api_post(&format!("/teams/{a}/invoices/2026-10/issue"), &json!({})).await, StatusCode::CREATED)
            .await;
    assert_eq!(lines(&issued), lines(&inv_a));
    assert_eq!((issued.total_micros, issued.number.as_deref()), (7_288, Some("INV-000001")));
    let rec: Value = expect_json(app.api_get("/reconciliation?month=2026-10").await, StatusCode::OK).await;
    assert_eq!(
        (&rec["issued_micros"], &rec["unbilled_micros"], &rec["difference_micros"]),
        (&json!(7_288), &json!(8_600), &json!(0))
    );
}

/// The rows of an invoice CSV: every row but the `total` row sums to the `total` row's amount.
fn csv_sums_to_total(csv: &str) -> (i64, i64) {
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    let header = &rows[0];
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (kind, amount) = (col("kind"), col("amount_micros"));
    assert!(rows.iter().all(|r| r.len() == header.len()), "{csv}");
    let (total, items): (Vec<_>, Vec<_>) = rows[1..].iter().partition(|r| r[kind] == "total");
    assert_eq!(total.len(), 1, "{csv}");
    (items.iter().map(|r| r[amount].parse::<i64>().unwrap()).sum(), total[0][amount].parse().unwrap())
}

/// A priced model `alpha` (1 µ per input token, 2 per output token) and two teams.
async fn priced_app(backend: Backend) -> (TestApp, ConsoleSession, i64, i64) {
    let app = spawn_app(backend).await;
    let op = ConsoleSession::operator(&app).await;
    let a = op.create_team("Team A").await;
    let b = op.create_team("Team B").await;
    let provider = app.create_provider("up", "http://127.0.0.1:9/v1", None).await;
    let alpha = app.create_simple_model("alpha", provider.id, "alpha-up", 1, 1).await;
    add_price(
        &app,
        alpha.id,
        json!({ "effective_from": "2026-01-01T00:00:00Z", "input_per_mtok": 1_000_000, "output_per_mtok": 2_000_000 }),
    )
    .await;
    (app, op, a, b)
}

trait SecondReplica {
    async fn second_replica_for_invoices(&self) -> TestApp;
}

impl SecondReplica for TestApp {
    /// Another control plane on the same database and secrets.
    async fn second_replica_for_invoices(&self) -> TestApp {
        crate::helpers::spawn_app_with(self.database.clone(), |s: &mut switchyard_control_plane::Settings| {
            s.encryption_key = self.settings.encryption_key.clone();
            s.node_token = self.settings.node_token.clone();
            s.bootstrap_operator_token = self.settings.bootstrap_operator_token.clone();
        })
        .await
    }
}

async fn patch(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.client
        .patch(app.url(&format!("/api/v1{path}")))
        .bearer_auth(&app.operator_token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn post(app: &TestApp, records: Vec<switchyard_shared::UsageRecord>) {
    app.post_usage(&UsageBatch { node_id: "n1".into(), records }).await;
}

async fn reconciliation(app: &TestApp, month: &str) -> Value {
    expect_json(app.api_get(&format!("/reconciliation?month={month}")).await, StatusCode::OK).await
}

/// The usage-month invariant: frozen(M) + Σ adjustments for M + not yet billed == costed records of M.
fn assert_invariant(rec: &Value) {
    let n = |k: &str| rec[k].as_i64().unwrap();
    assert_eq!(n("issued_micros") + n("adjusted_micros") + n("unbilled_micros"), n("records_cost_micros"), "{rec}");
    assert_eq!((n("difference_micros"), n("overbilled_micros")), (0, 0), "{rec}");
}

async fn issuing_freezes_numbers_sequentially_and_carries_late_usage(backend: Backend) {
    let (app, _op, a, b) = priced_app(backend).await;
    // October: A 1 000 in + 100 out = 1 200; B 500 in = 500.
    post(
        &app,
        vec![
            usage_record(a, 1, "alpha", at(10, 3, 9), 1_000, 100, 1),
            usage_record(b, 2, "alpha", at(10, 4, 9), 500, 0, 1),
        ],
    )
    .await;

    let issued: Value =
        expect_json(app.api_post(&format!("/teams/{a}/invoices/2026-10/issue"), &json!({})).await, StatusCode::CREATED)
            .await;
    assert_eq!(
        (&issued["status"], &issued["number"], &issued["total_micros"]),
        (&json!("issued"), &json!("INV-000001"), &json!(1_200))
    );
    assert_eq!(issued["currency"], "USD");
    assert!(issued["issued_at"].is_string() && issued["issued_by"].is_string(), "{issued}");
    // Twice is refused, with an OpenAI-shaped 409.
    let again = app.api_post(&format!("/teams/{a}/invoices/2026-10/issue"), &json!({})).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["error"]["code"], "conflict", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("INV-000001"), "{body}");
    // A month that has not ended is refused; nothing is numbered for it.
    let this_month = Utc::now().format("%Y-%m").to_string();
    let open = app.api_post(&format!("/teams/{a}/invoices/{this_month}/issue"), &json!({})).await;
    assert_eq!(open.status(), StatusCode::CONFLICT);
    // Numbers are one sequence across teams.
    let issued_b: Value =
        expect_json(app.api_post(&format!("/teams/{b}/invoices/2026-10/issue"), &json!({})).await, StatusCode::CREATED)
            .await;
    assert_eq!(issued_b["number"], "INV-000002");

    // Late October usage after issuing (300 in = 300) does not touch the issued invoice.
    post(&app, vec![usage_record(a, 1, "alpha", at(10, 20, 9), 300, 0, 1)]).await;
    let again: Value = expect_json(app.api_get(&format!("/teams/{a}/invoices/2026-10")).await, StatusCode::OK).await;
    assert_eq!(again, issued, "an issued invoice is returned exactly as stored");
    let csv = app.api_get(&format!("/teams/{a}/invoices/2026-10.csv")).await.text().await.unwrap();
    assert_eq!(csv_sums_to_total(&csv), (1_200, 1_200), "{csv}");
    assert!(csv.contains("INV-000001"), "{csv}");
    let rec = reconciliation(&app, "2026-10").await;
    assert_eq!(
        (&rec["issued_micros"], &rec["unbilled_micros"], &rec["issued_invoices"]),
        (&json!(1_700), &json!(300), &json!(2))
    );
    assert_invariant(&rec);

    // It lands on November's invoice as an adjustment line, next to November's own usage (10 out = 20).
    post(&app, vec![usage_record(a, 1, "alpha", at(11, 2, 9), 0, 10, 1)]).await;
    let nov: Invoice = expect_json(app.api_get(&format!("/teams/{a}/invoices/2026-11")).await, StatusCode::OK).await;
    assert_eq!(nov.status, "draft");
    let summary: Vec<_> = nov
        .lines
        .iter()
        .map(|l| (l.kind.as_str(), l.usage_month.as_str(), l.description.as_str(), l.requests, l.amount_micros))
        .collect();
    assert_eq!(
        summary,
        [
            ("usage", "2026-11", "alpha", 1, 20),
            ("adjustment", "2026-10", "Adjustment: late usage for 2026-10 (INV-000001): alpha", 1, 300),
        ]
    );
    assert_eq!(nov.total_micros, 320);
    let issued_nov: Invoice =
        expect_json(app.api_post(&format!("/teams/{a}/invoices/2026-11/issue"), &json!({})).await, StatusCode::CREATED)
            .await;
    assert_eq!(
        (issued_nov.number.as_deref(), issued_nov.total_micros, issued_nov.lines.len()),
        (Some("INV-000003"), 320, 2)
    );
    let rec = reconciliation(&app, "2026-10").await;
    assert_eq!((&rec["adjusted_micros"], &rec["unbilled_micros"]), (&json!(300), &json!(0)), "{rec}");
    assert_invariant(&rec);
    let csv = app.api_get(&format!("/teams/{a}/invoices/2026-11.csv")).await.text().await.unwrap();
    assert_eq!(csv_sums_to_total(&csv), (320, 320), "{csv}");

    // More late October usage: only what no invoice holds yet is carried (not the 300 already on INV-000003).
    post(&app, vec![usage_record(a, 1, "alpha", at(10, 30, 9), 0, 25, 1)]).await;
    let dec: Invoice = expect_json(app.api_get(&format!("/teams/{a}/invoices/2026-12")).await, StatusCode::OK).await;
    let adj: Vec<_> = dec
        .lines
        .iter()
        .filter(|l| l.kind == "adjustment")
        .map(|l| (l.usage_month.as_str(), l.amount_micros))
        .collect();
    assert_eq!(adj, [("2026-10", 50)]);
    let rec = reconciliation(&app, "2026-10").await;
    assert_eq!((&rec["adjusted_micros"], &rec["unbilled_micros"]), (&json!(300), &json!(50)), "{rec}");
    assert_invariant(&rec);
    assert_invariant(&reconciliation(&app, "2026-11").await);
    // Issued November did not move either.
    let nov_again: Invoice =
        expect_json(app.api_get(&format!("/teams/{a}/invoices/2026-11")).await, StatusCode::OK).await;
    assert_eq!(nov_again, issued_nov);

    // The list shows both teams with their status and number; every issue left an audit row.
    let list: Vec<Value> = expect_json(app.api_get("/invoices?month=2026-10").await, StatusCode::OK).await;
    let statuses: Vec<_> =
        list.iter().map(|s| (s["team_id"].as_i64().unwrap(), s["status"].clone(), s["number"].clone())).collect();
    assert_eq!(statuses, [(a, json!("issued"), json!("INV-000001")), (b, json!("issued"), json!("INV-000002"))]);
    let nov_list: Vec<Value> = expect_json(app.api_get("/invoices?month=2026-11").await, StatusCode::OK).await;
    assert_eq!((&nov_list[1]["status"], &nov_list[1]["total_micros"]), (&json!("draft"), &json!(0)));
    let audit = {
        use sea_orm::{ColumnTrait as _, EntityTrait as _, PaginatorTrait as _, QueryFilter as _};
        use switchyard_control_plane::entities::audit_log;
        audit_log::Entity::find()
            .filter(audit_log::Column::Action.eq("invoice.issue"))
            .count(&app.db_pool)
            .await
            .unwrap()
    };
    assert_eq!(audit, 3);
}

async fn a_discount_is_rounded_once_and_frozen_with_the_invoice(backend: Backend) {
    let (app, op, a, _b) = priced_app(backend).await;
    // 7 288 in = 7 288; 10 % off = 728.8 → 729 (half away from zero) → total 6 559.
    post(
        &app,
        vec![
            usage_record(a, 1, "alpha", at(10, 3, 9), 7_288, 0, 1),
            usage_record(a, 1, "alpha", at(11, 3, 9), 1_000, 0, 1),
        ],
    )
    .await;
    let team: Value =
        expect_json(patch(&app, &format!("/teams/{a}"), &json!({ "markup_bp": -1_000 })).await, StatusCode::OK).await;
    assert_eq!(team["markup_bp"], -1_000);
    let draft: Invoice = expect_json(app.api_get(&format!("/teams/{a}/invoices/2026-10")).await, StatusCode::OK).await;
    assert_eq!(
        (draft.subtotal_micros, draft.markup_bp, draft.markup_micros, draft.total_micros),
        (7_288, -1_000, -729, 6_559)
    );
    let issued: Invoice =
        expect_json(app.api_post(&format!("/teams/{a}/invoices/2026-10/issue"), &json!({})).await, StatusCode::CREATED)
            .await;
    assert_eq!((issued.markup_micros, issued.total_micros), (-729, 6_559));
    let csv = app.api_get(&format!("/teams/{a}/invoices/2026-10.csv")).await.text().await.unwrap();
    assert_eq!(csv_sums_to_total(&csv), (6_559, 6_559), "{csv}");
    assert!(csv.contains(",markup,") && csv.contains("Discount 10.00%"), "{csv}");

    // A new rate applies to drafts, never to the issued invoice. 2.5 % of 1 000 = 25.
    patch(&app, &format!("/teams/{a}"), &json!({ "markup_bp": 250 })).await;
    let oct: Invoice = expect_json(app.api_get(&format!("/teams/{a}/invoices/2026-10")).await, StatusCode::OK).await;
    assert_eq!(oct, issued);
    let nov: Invoice = expect_json(app.api_get(&format!("/teams/{a}/invoices/2026-11")).await, StatusCode::OK).await;
    assert_eq!((nov.markup_bp, nov.markup_micros, nov.total_micros), (250, 25, 1_025));
    // Out of range is refused; only operators set it; the console form sets it too.
    let bad = patch(&app, &format!("/teams/{a}"), &json!({ "markup_bp": -10_001 })).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    op.submit(&format!("/console/teams/{a}/markup"), &[("markup_bp", "-500")])
        .await
        .assert_redirect_to(&format!("/console/teams/{a}"));
    op.get(&format!("/console/teams/{a}"))
        .await
        .assert_status(StatusCode::OK)
        .assert_contains("discount of -500 basis points");
    let fin = finance(&app, &op).await;
    let fin_token = fin.submit("/console/account/tokens", &[("name", "fin")]).await.secret();
    let res = app
        .client
        .patch(app.url(&format!("/api/v1/teams/{a}")))
        .bearer_auth(&fin_token)
        .json(&json!({ "markup_bp": 0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

async fn finance(app: &TestApp, op: &ConsoleSession) -> ConsoleSession {
    let csrf = op.csrf().await;
    let invite = op
        .post_raw(
            "/console/invites",
            &[("csrf", &csrf), ("email", "fin@example.com"), ("platform_role", "finance"), ("team_id", "")],
        )
        .await;
    ConsoleSession::accept_invite(app, &invite.secret(), "finance passphrase").await
}

async fn finance_issues_and_team_admins_read_only_their_own(backend: Backend) {
    let (app, op, a, b) = priced_app(backend).await;
    post(
        &app,
        vec![
            usage_record(a, 1, "alpha", at(10, 3, 9), 100, 0, 1),
            usage_record(b, 2, "alpha", at(10, 4, 9), 200, 0, 1),
        ],
    )
    .await;
    let fin = finance(&app, &op).await;
    let fin_token = fin.submit("/console/account/tokens", &[("name", "fin")]).await.secret();
    let ann = op.add_user(&app, a, "ann@example.com", "admin").await;
    let ann_token = ann.submit("/console/account/tokens", &[("name", "ann")]).await.secret();
    let post_as = |token: &str, path: String| {
        app.client.post(app.url(&format!("/api/v1{path}"))).bearer_auth(token.to_owned()).json(&json!({})).send()
    };

    // The team admin lists and reads her own team only, and issues nothing.
    let own: Vec<Value> = expect_json(get_as(&app, &ann_token, "/invoices?month=2026-10").await, StatusCode::OK).await;
    assert_eq!(own.iter().map(|s| s["team_id"].as_i64().unwrap()).collect::<Vec<_>>(), [a]);
    assert_eq!(
        get_as(&app, &ann_token, &format!("/invoices?month=2026-10&team_id={b}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        post_as(&ann_token, format!("/teams/{b}/invoices/2026-10/issue")).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        post_as(&ann_token, format!("/teams/{a}/invoices/2026-10/issue")).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    // Finance lists every team and issues.
    let all: Vec<Value> = expect_json(get_as(&app, &fin_token, "/invoices?month=2026-10").await, StatusCode::OK).await;
    assert_eq!(all.len(), 2);
    let issued: Invoice = expect_json(
        post_as(&fin_token, format!("/teams/{b}/invoices/2026-10/issue")).await.unwrap(),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!((issued.number.as_deref(), issued.issued_by.as_deref()), (Some("INV-000001"), Some("fin@example.com")));

    // Console: finance sees every team, the Issue buttons and the reconciliation, and issues with the form.
    let page = fin.get("/console/invoices?month=2026-10").await;
    page.assert_status(StatusCode::OK)
        .assert_contains("Team A")
        .assert_contains("Team B")
        .assert_contains("INV-000001");
    page.assert_contains(&format!("/console/invoices/{a}/2026-10/issue"))
        .assert_contains("Reconciliation of 2026-10")
        .assert_contains(">OK<");
    assert!(!page.body.contains(&format!("/console/invoices/{b}/2026-10/issue")), "issued: no button");
    fin.submit(&format!("/console/invoices/{a}/2026-10/issue"), &[])
        .await
        .assert_redirect_to("/console/invoices?month=2026-10");
    fin.submit(&format!("/console/invoices/{a}/2026-10/issue"), &[])
        .await
        .assert_status(StatusCode::CONFLICT)
        .assert_contains("already issued");
    let printable = fin.get(&format!("/console/teams/{a}/invoices/2026-10")).await;
    printable
        .assert_status(StatusCode::OK)
        .assert_contains("Invoice INV-000002")
        .assert_contains("Bill to")
        .assert_contains("Team A");
    printable.assert_contains("Total (USD)").assert_contains("$0.0001");
    // Signed-out visitors are sent to the login page.
    ConsoleSession::new(&app)
        .get(&format!("/console/teams/{a}/invoices/2026-10"))
        .await
        .assert_redirect_to("/console/login");

    // Console: the team admin sees her team's invoices, no Issue button, no reconciliation, not team B's page.
    let page = ann.get("/console/invoices?month=2026-10").await;
    page.assert_status(StatusCode::OK).assert_contains("Team A").assert_contains(">Invoices</a>");
    assert!(
        !page.body.contains("Team B") && !page.body.contains("/issue") && !page.body.contains("Reconciliation"),
        "{}",
        page.body
    );
    ann.get(&format!("/console/teams/{a}/invoices/2026-10"))
        .await
        .assert_status(StatusCode::OK)
        .assert_contains("INV-000002");
    ann.get(&format!("/console/teams/{b}/invoices/2026-10")).await.assert_status(StatusCode::NOT_FOUND);
    ann.submit(&format!("/console/invoices/{b}/2026-11/issue"), &[]).await.assert_status(StatusCode::NOT_FOUND);
    // A plain member has no Invoices entry and no invoice pages.
    let mia = op.add_user(&app, a, "mia@example.com", "member").await;
    let overview = mia.get("/console").await;
    assert!(!overview.body.contains("/console/invoices"), "member nav: {}", overview.body);
    mia.get("/console/invoices").await.assert_status(StatusCode::FORBIDDEN);
    let team_page = mia.get(&format!("/console/teams/{a}")).await;
    assert!(!team_page.body.contains("billing-h"), "members see no billing: {}", team_page.body);
    ann.get(&format!("/console/teams/{a}")).await.assert_contains("billing-h").assert_contains("Invoice for ");
    mia.get(&format!("/console/teams/{a}/invoices/2026-10")).await.assert_status(StatusCode::FORBIDDEN);
}

/// Two replicas issue eight teams' invoices at once, each team's twice (once through each replica): every team
/// gets exactly one invoice, the other request a 409, and the numbers are 1..=8 with no gap and no repeat.
async fn concurrent_issues_on_two_replicas_number_without_gaps(backend: Backend) {
    let (app, op, a, b) = priced_app(backend).await;
    let mut team_ids = vec![a, b];
    for i in 0..6 {
        team_ids.push(op.create_team(&format!("Team {i}")).await);
    }
    post(&app, team_ids.iter().map(|t| usage_record(*t, 1, "alpha", at(10, 3, 9), 100, 0, 1)).collect()).await;
    let replica = app.second_replica_for_invoices().await;
    let calls = team_ids.iter().flat_map(|t| {
        let path = format!("/teams/{t}/invoices/2026-10/issue");
        [(&app, path.clone()), (&replica, path)]
    });
    let answers = futures_util::future::join_all(calls.map(|(app, path)| async move {
        let res = app.api_post(&path, &json!({})).await;
        (res.status(), res.json::<Value>().await.unwrap())
    }))
    .await;
    let mut numbers: Vec<String> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .map(|(_, v)| v["number"].as_str().unwrap().to_owned())
        .collect();
    let conflicts = answers.iter().filter(|(s, _)| *s == StatusCode::CONFLICT).count();
    assert_eq!((numbers.len(), conflicts), (8, 8), "{answers:?}");
    numbers.sort();
    assert_eq!(numbers, (1..=8).map(|n| format!("INV-{n:06}")).collect::<Vec<_>>());
}

backend_tests!(
    invoices_match_hand_computed_lines_and_reconcile,
    concurrent_issues_on_two_replicas_number_without_gaps,
    issuing_freezes_numbers_sequentially_and_carries_late_usage,
    a_discount_is_rounded_once_and_frozen_with_the_invoice,
    finance_issues_and_team_admins_read_only_their_own,
);
