//! The finance bench (issue 7): a month of usage for many teams in a fresh Postgres database, then the three
//! finance reads through a running control plane's admin API — every team's draft invoice for the month, the
//! month's reconciliation, and the raw usage CSV export of the whole month (rows per second, and the control
//! plane's memory while it streams).
//!
//! Seeding is server-side SQL through `psql` (generate_series, no round trip per row): teams, keys, records spread
//! evenly over the month across 3 models with a mid-month price change, and the usage rollups ingest would have
//! maintained (one INSERT ... SELECT ... GROUP BY), then VACUUM ANALYZE, as autovacuum would have left a month
//! of real data. The provider, models and price versions go through the API.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use chrono::{DateTime, Datelike as _, NaiveDate, TimeZone as _, Utc};
use http_body_util::{BodyExt as _, Empty};
use hyper::header::{AUTHORIZATION, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpStream;

use crate::client::{get_json, post_json};
use crate::procstat;

pub struct FinanceConfig {
    pub cp: SocketAddr,
    pub operator_token: String,
    /// The control plane's Postgres database, for seeding with `psql`.
    pub database_url: String,
    pub cp_pid: Option<u32>,
    pub teams: u64,
    pub keys_per_team: u64,
    pub records: u64,
    /// `yyyy-mm`; the previous calendar month by default.
    pub month: Option<String>,
    /// Concurrent invoice requests in the second invoice pass (the first is sequential).
    pub concurrency: usize,
}

const MODELS: [&str; 3] = ["fin-small", "fin-large", "fin-reasoning"];

#[derive(Deserialize)]
struct Created {
    id: i64,
}

#[derive(Deserialize)]
struct Team {
    id: i64,
}

#[derive(Deserialize)]
struct Invoice {
    total_micros: i64,
    lines: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Reconciliation {
    teams: u64,
    invoice_total_micros: i64,
    usage_records: i64,
    records_cost_micros: i64,
    difference_micros: i64,
}

/// (price version id, input, cached input, output) micro-units per million tokens.
type Version = (i64, i64, i64, i64);

fn month_bounds(month: &str) -> anyhow::Result<(DateTime<Utc>, DateTime<Utc>)> {
    let first = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").context("--month is yyyy-mm")?;
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    }
    .context("month out of range")?;
    let at = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| Utc.from_utc_datetime(&t)).context("midnight");
    Ok((at(first)?, at(next)?))
}

fn previous_month() -> String {
    let today = Utc::now().date_naive();
    let (y, m) = if today.month() == 1 { (today.year() - 1, 12) } else { (today.year(), today.month() - 1) };
    format!("{y:04}-{m:02}")
}

fn psql(database_url: &str, sql: &str) -> anyhow::Result<String> {
    let mut child = Command::new("psql")
        .args([database_url, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running psql (the finance bench seeds Postgres with it)")?;
    child.stdin.take().context("psql stdin")?.write_all(sql.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("psql failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Provider, models and two price versions per model (the second from mid-month) through the API.
async fn seed_catalog(
    cfg: &FinanceConfig,
    start: DateTime<Utc>,
    mid: DateTime<Utc>,
) -> anyhow::Result<(i64, Vec<[Version; 2]>)> {
    let token = cfg.operator_token.as_str();
    let provider: Created = post_json(
        cfg.cp,
        "/api/v1/providers",
        token,
        &json!({"name": "finance-upstream", "kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1",
                "api_key": "finance-upstream-credential"}),
    )
    .await?;
    let mut versions = Vec::new();
    for (i, name) in MODELS.iter().enumerate() {
        let base = 250_000 * (i as i64 + 1);
        let model: Created = post_json(
            cfg.cp,
            "/api/v1/models",
            token,
            &json!({"name": name, "input_price_per_mtok": base, "output_price_per_mtok": 4 * base,
                    "targets": [{"provider_id": provider.id, "upstream_model": format!("{name}-up")}]}),
        )
        .await?;
        let mut pair = Vec::new();
        for (from, factor) in [(start, 1), (mid, 2)] {
            let (input, cached, output) = (factor * base, factor * base / 10, factor * 4 * base);
            let v: Created = post_json(
                cfg.cp,
                &format!("/api/v1/models/{}/prices", model.id),
                token,
                &json!({"effective_from": from, "input_per_mtok": input, "cached_input_per_mtok": cached,
                        "output_per_mtok": output}),
            )
            .await?;
            pair.push((v.id, input, cached, output));
        }
        versions.push([pair[0], pair[1]]);
    }
    Ok((provider.id, versions))
}

fn seed_sql(
    cfg: &FinanceConfig,
    provider_id: i64,
    versions: &[[Version; 2]],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    mid: DateTime<Utc>,
) -> String {
    let (teams, keys) = (cfg.teams, cfg.teams * cfg.keys_per_team);
    let span_us = (end - start).num_microseconds().unwrap_or(1);
    let step_us = (span_us / cfg.records.max(1) as i64).max(1);
    let arr = |f: &dyn Fn(&[Version; 2]) -> String| versions.iter().map(f).collect::<Vec<_>>().join(",");
    let v1 = arr(&|v| v[0].0.to_string());
    let v2 = arr(&|v| v[1].0.to_string());
    let col = |half: usize, field: usize| {
        arr(&|v| {
            let p = v[half];
            [p.1, p.2, p.3][field].to_string()
        })
    };
    let models = MODELS.iter().map(|m| format!("'{m}'")).collect::<Vec<_>>().join(",");
    let mut sql = String::new();
    let _ = write!(
        sql,
        "
INSERT INTO teams (name, slug, created_at)
  SELECT 'Finance team ' || t, 'finance-team-' || t, now() FROM generate_series(1, {teams}) t;
CREATE TEMP TABLE bench_teams AS
  SELECT row_number() OVER (ORDER BY id) - 1 AS idx, id FROM teams WHERE slug LIKE 'finance-team-%';
INSERT INTO api_keys (team_id, name, prefix, hash, created_at)
  SELECT bt.id, 'finance-key-' || k, 'sk-sy-' || substr(md5(k::text), 1, 6),
         md5(k::text) || md5((k + 100000000)::text), now()
  FROM generate_series(0, {keys} - 1) k JOIN bench_teams bt ON bt.idx = k % {teams};
CREATE TEMP TABLE bench_keys AS
  SELECT row_number() OVER (ORDER BY id) - 1 AS idx, id, team_id FROM api_keys WHERE name LIKE 'finance-key-%';
CREATE UNIQUE INDEX ON bench_keys (idx);
ANALYZE bench_keys;
INSERT INTO usage_records (id, request_id, node_id, team_id, key_id, model, provider_id, upstream_model,
    started_at, duration_us, ttft_us, status, error_code, stream, prompt_tokens, completion_tokens,
    cached_input_tokens, cache_write_tokens, reasoning_tokens, usage_source, cost_micros, price_version_id,
    received_at)
  SELECT lpad(to_hex(g), 32, '0')::uuid, 'req_' || g, 'bench-node-' || (g % 4), bk.team_id, bk.id,
         (ARRAY[{models}])[m], {provider_id}, (ARRAY[{models}])[m] || '-up', ts, 20000 + g % 5000,
         CASE WHEN g % 2 = 0 THEN 3000 + g % 1000 END,
         CASE WHEN g % 100 = 0 THEN 502 ELSE 200 END, CASE WHEN g % 100 = 0 THEN 'upstream_error' END,
         g % 2 = 0, prompt, completion, cached, 0, 0, 'upstream',
         CASE WHEN late
           THEN ((prompt - cached) * (ARRAY[{i2}]::bigint[])[m] + cached * (ARRAY[{c2}]::bigint[])[m] + completion * (ARRAY[{o2}]::bigint[])[m]
                 + 999999) / 1000000
           ELSE ((prompt - cached) * (ARRAY[{i1}]::bigint[])[m] + cached * (ARRAY[{c1}]::bigint[])[m] + completion * (ARRAY[{o1}]::bigint[])[m]
                 + 999999) / 1000000
         END,
         CASE WHEN late THEN (ARRAY[{v2}])[m] ELSE (ARRAY[{v1}])[m] END,
         ts + interval '1 second'
  FROM (
    SELECT g, ts, ts >= '{mid}'::timestamptz AS late, (g / 7) % 3 + 1 AS m, 100 + g % 900 AS prompt,
           CASE WHEN g % 5 = 0 THEN (100 + g % 900) / 2 ELSE 0 END AS cached, 20 + g % 300 AS completion
    FROM (SELECT g, '{start}'::timestamptz + ((g - 1) * {step_us}) * interval '1 microsecond' AS ts
          FROM generate_series(1::bigint, {records}) g) s0
  ) s
  JOIN bench_keys bk ON bk.idx = s.g % {keys};
INSERT INTO usage_rollups (team_id, key_id, model, price_version_id, day, shard, requests, errors, prompt_tokens,
    cached_input_tokens, cache_write_tokens, completion_tokens, reasoning_tokens, cost_micros)
  SELECT team_id, key_id, model, COALESCE(price_version_id, 0), (started_at AT TIME ZONE 'UTC')::date, 0, count(*),
         count(*) FILTER (WHERE status >= 400), sum(prompt_tokens), sum(cached_input_tokens),
         sum(cache_write_tokens), sum(completion_tokens), sum(reasoning_tokens), sum(cost_micros)
  FROM usage_records GROUP BY 1, 2, 3, 4, 5;
VACUUM ANALYZE usage_records;
VACUUM ANALYZE usage_rollups;
VACUUM ANALYZE teams;
VACUUM ANALYZE api_keys;
SELECT count(*) FROM usage_rollups;
",
        records = cfg.records,
        start = start.to_rfc3339(),
        mid = mid.to_rfc3339(),
        i1 = col(0, 0),
        c1 = col(0, 1),
        o1 = col(0, 2),
        i2 = col(1, 0),
        c2 = col(1, 1),
        o2 = col(1, 2),
    );
    sql
}

struct Export {
    rows: u64,
    bytes: u64,
    cost_micros: i64,
    elapsed: Duration,
}

/// Streams the export, counting rows and summing the `cost_micros` column (the second to last).
async fn export(cp: SocketAddr, token: &str, path: &str) -> anyhow::Result<Export> {
    let stream = TcpStream::connect(cp).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    let req = Request::builder()
        .uri(path)
        .header(HOST, cp.to_string())
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())?;
    let started = Instant::now();
    let res = sender.send_request(req).await?;
    ensure!(res.status() == StatusCode::OK, "GET {path} answered {}", res.status());
    let mut body = res.into_body();
    let (mut rows, mut bytes, mut cost, mut carry, mut header) = (0u64, 0u64, 0i64, Vec::<u8>::new(), true);
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        bytes += data.len() as u64;
        carry.extend_from_slice(&data);
        let mut consumed = 0;
        while let Some(nl) = carry[consumed..].iter().position(|&b| b == b'\n') {
            let line = &carry[consumed..consumed + nl];
            consumed += nl + 1;
            if std::mem::take(&mut header) {
                continue;
            }
            rows += 1;
            let mut fields = line.rsplitn(3, |&b| b == b',');
            let (_, micros) = (fields.next(), fields.next().context("short row")?);
            cost += std::str::from_utf8(micros)?.parse::<i64>()?;
        }
        carry.drain(..consumed);
    }
    let elapsed = started.elapsed();
    ensure!(carry.is_empty(), "the export ended mid-row");
    conn.abort();
    Ok(Export { rows, bytes, cost_micros: cost, elapsed })
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

pub async fn run(cfg: &FinanceConfig) -> anyhow::Result<String> {
    let month = cfg.month.clone().unwrap_or_else(previous_month);
    let (start, end) = month_bounds(&month)?;
    let mid = start + (end - start) / 2;
    let token = cfg.operator_token.as_str();

    eprintln!("finance: seeding {} teams, {} records for {month}", cfg.teams, cfg.records);
    let seed_started = Instant::now();
    let (provider_id, versions) = seed_catalog(cfg, start, mid).await?;
    let sql = seed_sql(cfg, provider_id, &versions, start, end, mid);
    let url = cfg.database_url.clone();
    let rollups = tokio::task::spawn_blocking(move || psql(&url, &sql)).await??;
    let seed_secs = seed_started.elapsed().as_secs_f64();

    // (a) Every team's draft invoice, sequentially, then with `concurrency` requests in flight.
    let teams: Vec<Team> = get_json(cfg.cp, "/api/v1/teams", token).await?;
    let team_ids: Arc<Vec<i64>> = Arc::new(teams.iter().map(|t| t.id).collect());
    eprintln!("finance: invoices for {} teams", team_ids.len());
    let mut invoice_runs = Vec::new();
    let mut invoice_total = 0i64;
    let mut lines = 0usize;
    for concurrency in [1, cfg.concurrency.max(1)] {
        let next = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (next, ids, token, month) = (next.clone(), team_ids.clone(), token.to_owned(), month.clone());
            let cp = cfg.cp;
            tasks.push(tokio::spawn(async move {
                let (mut total, mut lines) = (0i64, 0usize);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(id) = ids.get(i) else { break };
                    let inv: Invoice = get_json(cp, &format!("/api/v1/teams/{id}/invoices/{month}"), &token).await?;
                    total += inv.total_micros;
                    lines += inv.lines.len();
                }
                anyhow::Ok((total, lines))
            }));
        }
        let (mut total, mut n) = (0, 0);
        for t in tasks {
            let (a, b) = t.await??;
            total += a;
            n += b;
        }
        invoice_runs.push((concurrency, started.elapsed()));
        (invoice_total, lines) = (total, n);
    }

    // (b) The month's reconciliation.
    eprintln!("finance: reconciliation");
    let started = Instant::now();
    let rec: Reconciliation = get_json(cfg.cp, &format!("/api/v1/reconciliation?month={month}"), token).await?;
    let rec_elapsed = started.elapsed();

    // (c) The raw export of the whole month, all teams, with the control plane's memory sampled meanwhile.
    eprintln!("finance: raw CSV export");
    let idle = cfg.cp_pid.and_then(|p| procstat::memory(p).ok());
    let peak_reset = cfg.cp_pid.is_some_and(procstat::reset_peak);
    let cpu_before = cfg.cp_pid.and_then(|p| procstat::cpu_time(p).ok());
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = cfg.cp_pid.map(|pid| {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak = 0u64;
            while sampling.load(Ordering::Relaxed) {
                if let Ok(m) = procstat::memory(pid) {
                    peak = peak.max(m.rss);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak
        })
    });
    let exported = export(cfg.cp, token, &format!("/api/v1/usage/export.csv?month={month}")).await?;
    sampling.store(false, Ordering::Relaxed);
    let sampled_peak = match sampler {
        Some(s) => Some(s.await?),
        None => None,
    };
    let after = cfg.cp_pid.and_then(|p| procstat::memory(p).ok());
    let cpu = cfg.cp_pid.and_then(|p| Some(procstat::cpu_time(p).ok()?.saturating_sub(cpu_before?)));

    let rows_per_sec = exported.rows as f64 / exported.elapsed.as_secs_f64();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} teams ({} keys each), {} usage records in {month} (3 models, a price change mid-month), \
{rollups} rollup rows; seeded in {seed_secs:.1} s (SQL + VACUUM ANALYZE).\n",
        team_ids.len(),
        cfg.keys_per_team,
        cfg.records
    );
    let _ = writeln!(out, "| measurement | result | target |");
    let _ = writeln!(out, "|---|---:|---|");
    for (c, elapsed) in &invoice_runs {
        let _ = writeln!(
            out,
            "| draft invoices for all {} teams, {c} request(s) in flight | {:.2} s ({:.1} ms each) | < 10 s |",
            team_ids.len(),
            elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * 1000.0 / team_ids.len().max(1) as f64
        );
    }
    let _ = writeln!(
        out,
        "| reconciliation of the month ({} records) | {:.2} s | |",
        rec.usage_records,
        rec_elapsed.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| raw CSV export, all teams, whole month | {} rows, {:.0} MiB in {:.1} s: **{:.0} rows/s** | ≥ 200,000 rows/s |",
        exported.rows,
        mib(exported.bytes),
        exported.elapsed.as_secs_f64(),
        rows_per_sec
    );
    if let (Some(idle), Some(after)) = (idle, after) {
        let peak = if peak_reset { after.hwm } else { sampled_peak.unwrap_or(0) };
        let _ = writeln!(
            out,
            "| control-plane RSS during the export: before / peak / after | {:.1} / {:.1} / {:.1} MiB | constant |",
            mib(idle.rss),
            mib(peak.max(sampled_peak.unwrap_or(0))),
            mib(after.rss)
        );
    }
    if let Some(cpu) = cpu {
        let _ = writeln!(
            out,
            "| control-plane CPU per exported row | {:.2} µs | |",
            cpu.as_secs_f64() * 1e6 / exported.rows.max(1) as f64
        );
    }
    let _ = writeln!(out);
    let ok = rec.difference_micros == 0
        && rec.invoice_total_micros == invoice_total
        && exported.cost_micros == rec.records_cost_micros
        && exported.rows as i64 == rec.usage_records;
    let _ = writeln!(
        out,
        "Checks: {} invoice lines over {} teams total {} micro-units; reconciliation: invoices {} = records {} \
(difference {}); the export's {} rows sum to {} — {}.",
        lines,
        rec.teams,
        invoice_total,
        rec.invoice_total_micros,
        rec.records_cost_micros,
        rec.difference_micros,
        exported.rows,
        exported.cost_micros,
        if ok { "all agree" } else { "MISMATCH" }
    );
    ensure!(ok, "finance figures do not agree:\n{out}");
    Ok(out)
}
