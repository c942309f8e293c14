//! The raw usage CSV export: a month of records across two teams parses back to exactly the month's records
//! (keys by prefix only, hostile text defused), its cost column sums to each team's invoice total and to the
//! reconciliation figure; the paged reader gives the same bytes with pages of two rows (ties on `started_at`
//! included); a team admin exports her own team only.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeZone as _, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_control_plane::domain::invoices::Invoice;
use switchyard_control_plane::domain::usage_export::{CSV_HEADER, Export, ExportRange};
use switchyard_shared::UsageBatch;

use crate::console_helpers::ConsoleSession;
use crate::helpers::{Backend, TestApp, expect_json, spawn_app, usage_record};

fn at(month: u32, day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, hour, 0, 0).unwrap()
}

async fn get_as(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.client.get(app.url(&format!("/api/v1{path}"))).bearer_auth(token).send().await.unwrap()
}

/// RFC 4180 parsing (quoted fields, doubled quotes, line breaks inside quotes).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(field.is_empty() && row.is_empty() && !quoted, "the file does not end with a line break");
    rows
}

struct Csv {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Csv {
    fn parse(text: &str) -> Self {
        let mut rows = parse_csv(text);
        let header = rows.remove(0);
        assert_eq!(header.join(","), CSV_HEADER);
        assert!(rows.iter().all(|r| r.len() == header.len()), "{text}");
        Self { header, rows }
    }

    fn col(&self, name: &str) -> Vec<&str> {
        let i = self.header.iter().position(|h| h == name).unwrap();
        self.rows.iter().map(|r| r[i].as_str()).collect()
    }

    fn sum(&self, name: &str) -> i64 {
        self.col(name).iter().map(|v| v.parse::<i64>().unwrap()).sum()
    }
}

async fn export(app: &TestApp, query: &str) -> (String, Csv) {
    let res = app.api_get(&format!("/usage/export.csv?{query}")).await;
    assert_eq!(res.status(), StatusCode::OK, "{query}");
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert!(res.headers()["content-disposition"].to_str().unwrap().starts_with("attachment; filename=\"usage-"));
    let text = res.text().await.unwrap();
    let csv = Csv::parse(&text);
    (text, csv)
}

async fn raw_export_adds_up_to_invoices_and_reconciliation(backend: Backend) {
    let app = spawn_app(backend).await;
    let op = ConsoleSession::operator(&app).await;
    let a = op.create_team("Team A").await;
    let b = op.create_team("=HYPERLINK(\"x\"), B").await;
    let key_a = app.issue_key(a, &json!({ "name": "a-key" })).await;
    let key_b = app.issue_key(b, &json!({ "name": "b-key" })).await;
    let provider = app.create_provider("up", "http://127.0.0.1:9/v1", None).await;
    let alpha = app.create_simple_model("alpha", provider.id, "alpha-up", 1, 1).await;
    for (from, input, output) in
        [("2026-09-01T00:00:00Z", 1_000_000, 2_000_000), ("2026-10-16T00:00:00Z", 3_000_000, 6_000_000)]
    {
        let body = json!({ "effective_from": from, "input_per_mtok": input, "output_per_mtok": output });
        let res = app.api_post(&format!("/models/{}/prices", alpha.id), &body).await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }

    let tie = at(10, 7, 12);
    let mut hostile = usage_record(b, key_b.id, "alpha", at(10, 9, 9), 10, 10, 1);
    hostile.request_id = "=cmd|' /C calc'!A0".into();
    hostile.error_code = Some("upstream, \"bad\"\nline".into());
    hostile.status = 502;
    let october = [
        usage_record(a, key_a.id, "alpha", at(10, 1, 0), 1_000, 100, 1), // 1000 + 200 = 1200
        usage_record(a, key_a.id, "alpha", tie, 333, 7, 1),              // 333 + 14 = 347
        usage_record(a, key_a.id, "alpha", tie, 1, 0, 1),                // 1
        usage_record(b, key_b.id, "alpha", tie, 2_000, 1_000, 1),        // 2000 + 2000 = 4000
        hostile,                                                         // 10 + 20 = 30
        usage_record(a, key_a.id, "alpha", at(10, 20, 9), 1_000, 100, 1), // 3000 + 600 = 3600
        usage_record(b, key_b.id, "alpha", at(10, 31, 23), 100, 50, 1),  // 300 + 300 = 600
    ];
    let others = [
        usage_record(a, key_a.id, "alpha", at(9, 30, 23), 1_000, 0, 1),
        usage_record(a, key_a.id, "alpha", at(11, 1, 0), 1_000, 0, 1),
    ];
    let (first, second) = october.split_at(3);
    app.post_usage(&UsageBatch { node_id: "n1".into(), records: first.to_vec() }).await;
    let rest: Vec<_> = second.iter().chain(&others).cloned().collect();
    app.post_usage(&UsageBatch { node_id: "n2".into(), records: rest }).await;

    // Every October record once, nothing else; ordered by start.
    let (text, all) = export(&app, "month=2026-10").await;
    let ids: BTreeSet<&str> = all.col("id").into_iter().collect();
    let expected: BTreeSet<String> = october.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(ids, expected.iter().map(String::as_str).collect(), "{text}");
    assert_eq!(all.rows.len(), 7);
    let started = all.col("started_at");
    assert!(started.windows(2).all(|w| w[0] <= w[1]), "{started:?}");
    assert_eq!(started[0], "2026-10-01T00:00:00.000000Z");

    // The cost column sums to every invoice total and to the reconciliation.
    let inv_a: Invoice = expect_json(app.api_get(&format!("/teams/{a}/invoices/2026-10")).await, StatusCode::OK).await;
    let inv_b: Invoice = expect_json(app.api_get(&format!("/teams/{b}/invoices/2026-10")).await, StatusCode::OK).await;
    assert_eq!((inv_a.total_micros, inv_b.total_micros), (5_148, 4_630));
    let rec: Value = expect_json(app.api_get("/reconciliation?month=2026-10").await, StatusCode::OK).await;
    assert_eq!((rec["usage_records"].as_i64(), rec["records_cost_micros"].as_i64()), (Some(7), Some(9_778)));
    assert_eq!(all.sum("cost_micros"), 9_778);
    let decimals: Vec<&str> = all.col("cost");
    assert!(decimals.contains(&"0.003600") && decimals.contains(&"0.000001"), "{decimals:?}");
    for (team, invoice) in [(a, &inv_a), (b, &inv_b)] {
        let (_, one) = export(&app, &format!("month=2026-10&team_id={team}")).await;
        assert!(one.col("team_id").iter().all(|t| *t == team.to_string()));
        assert_eq!(one.sum("cost_micros"), invoice.total_micros, "team {team}");
        let requests: i64 = invoice.lines.iter().map(|l| l.requests).sum();
        assert_eq!(one.rows.len() as i64, requests);
    }

    // Keys by id and visible prefix, never the secret; hostile text stays text.
    assert!(!text.contains(&key_a.key) && !text.contains(&key_b.key));
    assert!(all.col("key_prefix").iter().all(|p| [key_a.prefix.as_str(), key_b.prefix.as_str()].contains(p)));
    assert!(all.col("team_name").contains(&"'=HYPERLINK(\"x\"), B"));
    assert!(all.col("request_id").contains(&"'=cmd|' /C calc'!A0"));
    assert!(all.col("error_code").contains(&"upstream, \"bad\"\nline"));
    assert!(all.col("price_version_id").iter().all(|v| !v.is_empty()));

    // `from`/`to` for the same instants gives the same file; the paged reader too, two rows a page (the three
    // records that start at the same instant straddle a page boundary).
    let (same, _) = export(&app, "from=2026-10-01T00:00:00Z&to=2026-11-01T00:00:00Z").await;
    assert_eq!(same, text);
    let range = ExportRange::month(app.settings.reporting_timezone, "2026-10", None).unwrap();
    let mut paged = Export::begin(&app.db_pool, range, 2).await.unwrap();
    let mut chunks = Vec::new();
    while let Some(chunk) = paged.next_chunk().await.unwrap() {
        chunks.push(chunk);
    }
    assert_eq!((chunks.len(), paged.rows()), (4, 7));
    assert_eq!(chunks.concat(), text);
    // An empty period is just the header.
    let (empty, none) = export(&app, "month=2027-01").await;
    assert_eq!((empty, none.rows.len()), (format!("{CSV_HEADER}\n"), 0));

    for bad in ["", "month=2026-13", "from=2026-10-02T00:00:00Z&to=2026-10-01T00:00:00Z", "month=2026-10&from=x"] {
        let res = app.api_get(&format!("/usage/export.csv?{bad}")).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
    }

    // A team admin exports her own team, not another, and not every team; a member exports nothing.
    let ann = op.add_user(&app, a, "ann@example.com", "admin").await;
    let ann_token = ann.submit("/console/account/tokens", &[("name", "ann")]).await.secret();
    let own = get_as(&app, &ann_token, &format!("/usage/export.csv?month=2026-10&team_id={a}")).await;
    assert_eq!(own.status(), StatusCode::OK);
    assert_eq!(Csv::parse(&own.text().await.unwrap()).rows.len(), 4);
    let other = get_as(&app, &ann_token, &format!("/usage/export.csv?month=2026-10&team_id={b}")).await;
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    let every = get_as(&app, &ann_token, "/usage/export.csv?month=2026-10").await;
    assert_eq!(every.status(), StatusCode::BAD_REQUEST);
    let mia = op.add_user(&app, a, "mia@example.com", "member").await;
    let mia_token = mia.submit("/console/account/tokens", &[("name", "mia")]).await.secret();
    let member = get_as(&app, &mia_token, &format!("/usage/export.csv?month=2026-10&team_id={a}")).await;
    assert_eq!(member.status(), StatusCode::FORBIDDEN);
}

backend_tests!(raw_export_adds_up_to_invoices_and_reconciliation);
