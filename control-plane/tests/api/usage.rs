//! Usage ingest (idempotent, acknowledged after commit) and the usage query with its totals.

use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};
use reqwest::StatusCode;
use switchyard_shared::usage::UsageSource;
use switchyard_shared::{UsageAck, UsageBatch};

use crate::helpers::{Backend, expect_error, spawn_app, usage_record};

fn at(secs_ago: i64) -> DateTime<Utc> {
    // Whole microseconds: what both databases store exactly.
    let t = Utc::now() - ChronoDuration::seconds(secs_ago);
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

async fn a_batch_is_stored_once_even_when_sent_twice(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut records = vec![
        usage_record(1, 10, "gpt-4o", at(30), 100, 50, 750),
        usage_record(1, 10, "gpt-4o", at(20), 10, 5, 75),
        usage_record(1, 11, "mini", at(10), 1, 1, 1),
    ];
    records[2].usage_source = UsageSource::Estimated;
    records[2].ttft_us = None;
    records[2].status = 502;
    records[2].error_code = Some("upstream_error".to_owned());
    let batch = UsageBatch { node_id: "test-node".to_owned(), records: records.clone() };
    let first = app.post_usage(&batch).await;
    assert_eq!(first, UsageAck { received: 3, stored: 3, duplicates: 0 });
    let again = app.post_usage(&batch).await;
    assert_eq!(again, UsageAck { received: 3, stored: 0, duplicates: 3 });

    let mut overlap = batch.clone();
    overlap.records = vec![records[0].clone(), usage_record(2, 20, "gpt-4o", at(5), 7, 3, 40)];
    let partial = app.post_usage(&overlap).await;
    assert_eq!((partial.stored, partial.duplicates), (1, 1));

    let page = app.usage("").await;
    assert_eq!(page.data.len(), 4);
    assert_eq!(page.totals.requests, 4);
    assert_eq!(page.totals.prompt_tokens, 100 + 10 + 1 + 7);
    assert_eq!(page.totals.completion_tokens, 50 + 5 + 1 + 3);
    assert_eq!(page.totals.cost_micros, 750 + 75 + 1 + 40);
    // Newest first, and every field comes back as sent.
    let ids: Vec<_> = page.data.iter().map(|r| r.record.id).collect();
    assert_eq!(ids[1..], [records[2].id, records[1].id, records[0].id]);
    assert_eq!(page.data[1].record, records[2]);
    assert_eq!(page.data[3].record, records[0]);
}

async fn usage_is_filtered_paged_and_totalled_over_the_filter(backend: Backend) {
    let app = spawn_app(backend).await;
    let records: Vec<_> = (0..5)
        .map(|i| usage_record(1, 10 + (i % 2), "gpt-4o", at(100 - i * 10), 10, 1, 100))
        .chain([usage_record(2, 30, "mini", at(1), 1_000, 1_000, 9_999)])
        .collect();
    app.post_usage(&UsageBatch { node_id: "n".to_owned(), records: records.clone() }).await;

    let team1 = app.usage("team_id=1&limit=2").await;
    assert_eq!(team1.data.len(), 2);
    assert_eq!(team1.totals.requests, 5, "totals cover the filter, not the page");
    assert_eq!(team1.totals.cost_micros, 500);
    assert_eq!(team1.data[0].record.id, records[4].id);
    assert_eq!(team1.data[1].record.id, records[3].id);

    let next = app.usage(&format!("team_id=1&limit=2&before_id={}", team1.data[1].record.id)).await;
    let next_ids: Vec<_> = next.data.iter().map(|r| r.record.id).collect();
    assert_eq!(next_ids, [records[2].id, records[1].id]);
    assert_eq!(next.totals.requests, 5);

    assert_eq!(app.usage("key_id=11").await.totals.requests, 2);
    assert_eq!(app.usage("model=mini").await.data[0].record.team_id, 2);
    let window =
        app.usage(&format!("from={}&to={}", rfc3339(records[1].started_at), rfc3339(records[3].started_at))).await;
    assert_eq!(window.totals.requests, 2, "from is inclusive, to exclusive");

    for bad in ["limit=0", "limit=1001", "team_id=abc", "from=yesterday"] {
        let res = app.api_get(&format!("/usage?{bad}")).await;
        expect_error(res, StatusCode::BAD_REQUEST).await;
    }
    let unknown_anchor = app.api_get(&format!("/usage?before_id={}", uuid::Uuid::new_v4())).await;
    expect_error(unknown_anchor, StatusCode::BAD_REQUEST).await;
}

async fn large_batches_are_stored_in_chunks(backend: Backend) {
    let app = spawn_app(backend).await;
    let records: Vec<_> = (0..1_000).map(|i| usage_record(1, 10, "gpt-4o", at(2_000 - i), 1, 2, 3)).collect();
    let batch = UsageBatch { node_id: "n".to_owned(), records };
    assert_eq!(app.post_usage(&batch).await.stored, 1_000);
    assert_eq!(app.post_usage(&batch).await.duplicates, 1_000);
    let page = app.usage("limit=1000").await;
    assert_eq!(page.data.len(), 1_000);
    assert_eq!(page.totals.cost_micros, 3_000);
}

backend_tests!(
    a_batch_is_stored_once_even_when_sent_twice,
    usage_is_filtered_paged_and_totalled_over_the_filter,
    large_batches_are_stored_in_chunks,
);
