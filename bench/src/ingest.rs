//! Usage ingest: many "nodes" POST `UsageBatch`es of 1,000 records each to `/node/v1/usage` of a control plane
//! (on Postgres, as in production), each node one batch at a time over its own keep-alive connection, as the
//! real reporter does. Batches are serialised before the clock starts. Reports records/s from first send to
//! last acknowledgement, batch latency, the control plane's CPU per record, and confirms the stored count through
//! the admin API (`GET /api/v1/usage` totals), plus that a re-sent batch stores nothing.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use chrono::Utc;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use switchyard_shared::protocol::USAGE_PATH;
use switchyard_shared::usage::UsageSource;
use switchyard_shared::{UsageAck, UsageBatch, UsageRecord};
use tokio::net::TcpStream;
use uuid::Uuid;

use crate::client;
use crate::hist::{Histogram, Quantiles};
use crate::procstat::{CpuWindow, Watched};
use crate::report::{Check, fmt_lat, fmt_opt};

pub struct IngestConfig {
    pub cp: SocketAddr,
    pub node_token: String,
    pub operator_token: String,
    /// One measured run per entry: this many concurrent nodes.
    pub nodes: Vec<usize>,
    /// Records per run (split evenly over the nodes, in batches).
    pub records: usize,
    pub batch: usize,
    pub cp_pid: Option<u32>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct IngestRun {
    pub nodes: usize,
    pub records: u64,
    pub secs: f64,
    pub records_per_sec: f64,
    pub batch_latency: Option<Quantiles>,
    pub cp_cpu_us_per_record: Option<f64>,
    pub counted_in_db: i64,
    pub duplicates_on_resend: u64,
}

fn record(node: &str, i: usize) -> UsageRecord {
    UsageRecord {
        id: Uuid::now_v7(),
        request_id: format!("req_{}", Uuid::now_v7().simple()),
        node_id: node.to_owned(),
        team_id: (i % 50) as i64 + 1,
        key_id: (i % 500) as i64 + 1,
        model: "bench-chat".into(),
        provider_id: Some(1),
        upstream_model: Some("mock-model".into()),
        started_at: Utc::now(),
        duration_us: 1_250,
        ttft_us: Some(900),
        status: 200,
        error_code: None,
        stream: i.is_multiple_of(2),
        prompt_tokens: 21,
        completion_tokens: 16,
        cached_input_tokens: 0,
        cache_write_tokens: 0,
        reasoning_tokens: 0,
        usage_source: UsageSource::Upstream,
        cost_micros: 35,
    }
}

#[derive(serde::Deserialize)]
struct Totals {
    requests: i64,
}

#[derive(serde::Deserialize)]
struct UsagePage {
    totals: Totals,
}

async fn stored_count(cfg: &IngestConfig) -> anyhow::Result<i64> {
    let page: UsagePage = client::get_json(cfg.cp, "/api/v1/usage?limit=1", &cfg.operator_token).await?;
    Ok(page.totals.requests)
}

/// One node: sends its batches in order over one connection, each after the previous was acknowledged.
async fn node(cp: SocketAddr, token: Arc<str>, batches: Vec<Bytes>, latency: Arc<Histogram>) -> anyhow::Result<u64> {
    let stream = TcpStream::connect(cp).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    let mut stored = 0;
    for body in batches {
        sender.ready().await?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(USAGE_PATH)
            .header(HOST, cp.to_string())
            .header(CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(Full::new(body))?;
        let t = Instant::now();
        let res = sender.send_request(req).await?;
        let status = res.status();
        let bytes = res.into_body().collect().await?.to_bytes();
        latency.record(t.elapsed());
        if !status.is_success() {
            bail!("usage batch answered {status}: {}", String::from_utf8_lossy(&bytes));
        }
        let ack: UsageAck = serde_json::from_slice(&bytes)?;
        stored += ack.stored;
    }
    drop(sender);
    conn.abort();
    Ok(stored)
}

pub async fn run(cfg: &IngestConfig) -> anyhow::Result<String> {
    let token: Arc<str> = cfg.node_token.as_str().into();
    let mut runs = Vec::new();
    for &nodes in &cfg.nodes {
        let per_node = (cfg.records / nodes / cfg.batch).max(1);
        let mut all: Vec<Vec<Bytes>> = Vec::with_capacity(nodes);
        for n in 0..nodes {
            let name = format!("bench-ingest-{nodes}-{n}");
            let mut batches = Vec::with_capacity(per_node);
            for _ in 0..per_node {
                let records = (0..cfg.batch).map(|i| record(&name, i)).collect();
                batches.push(Bytes::from(serde_json::to_vec(&UsageBatch { node_id: name.clone(), records })?));
            }
            all.push(batches);
        }
        let resend = all.first().and_then(|b| b.first()).cloned().context("no batch")?;
        let total = (nodes * per_node * cfg.batch) as u64;
        let before = stored_count(cfg).await?;
        let watch: Vec<Watched> = cfg.cp_pid.iter().map(|&pid| Watched { role: "control-plane".into(), pid }).collect();
        let latency = Arc::new(Histogram::new());
        let cpu = CpuWindow::begin(&watch);
        let t = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for batches in all {
            tasks.spawn(node(cfg.cp, token.clone(), batches, latency.clone()));
        }
        let mut stored = 0;
        while let Some(r) = tasks.join_next().await {
            stored += r??;
        }
        let secs = t.elapsed().as_secs_f64();
        let cpu = cpu.end(&watch);
        if stored != total {
            bail!("the control plane stored {stored} of {total} new records");
        }
        let after = stored_count(cfg).await?;
        // A batch sent again (a lost acknowledgement) must store nothing.
        let dup = node(cfg.cp, token.clone(), vec![resend], Arc::new(Histogram::new())).await?;
        let run = IngestRun {
            nodes,
            records: total,
            secs,
            records_per_sec: total as f64 / secs,
            batch_latency: latency.summary(),
            cp_cpu_us_per_record: cpu.first().copied().flatten().map(|d| d.as_micros() as f64 / total as f64),
            counted_in_db: after - before,
            duplicates_on_resend: cfg.batch as u64 - dup,
        };
        eprintln!(
            "ingest {nodes} nodes: {} records in {secs:.2} s = {:.0} records/s (db counted {})",
            run.records, run.records_per_sec, run.counted_in_db
        );
        runs.push(run);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(render(&runs, cfg.batch))
}

fn render(runs: &[IngestRun], batch: usize) -> String {
    let mut out = String::from("### Usage ingest (control plane on Postgres)\n\n");
    let _ = writeln!(
        out,
        "Each node sends batches of {batch} records one after another (the next once the previous is acknowledged). \
         Records/s = records acknowledged ÷ time from the first send to the last acknowledgement.\n"
    );
    out.push_str(
        "| nodes | records | time | records/s | batch latency p50 / p99 | control-plane CPU µs/record | counted in \
         DB | re-sent batch stored nothing |\n|---:|---:|---:|---:|---|---:|---:|---|\n",
    );
    for r in runs {
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} s | {:.0} | {} | {} | {} | {} |",
            r.nodes,
            r.records,
            r.secs,
            r.records_per_sec,
            fmt_opt(r.batch_latency, |q| format!("{} / {}", fmt_lat(q.p50), fmt_lat(q.p99))),
            fmt_opt(r.cp_cpu_us_per_record, |v| format!("{v:.1}")),
            r.counted_in_db,
            if r.duplicates_on_resend == batch as u64 { "yes" } else { "**no**" },
        );
    }
    if let Some(best) = runs.iter().map(|r| r.records_per_sec).reduce(f64::max) {
        out.push_str("\n### Ingest target (issue 4)\n\n");
        out.push_str(&Check::table(&[Check::at_least(
            "Usage ingest into Postgres (best of the runs above)",
            "≥ 250,000 records/s",
            best,
            250_000.0,
            format!("{best:.0} records/s"),
        )]));
    }
    out
}
