//! Snapshot scale: snapshots of 100k and 1M keys built from the real `switchyard-shared` types.
//!
//! 1. In this process: time each step of applying one — decode, validate, compile — and the whole
//!    `SnapshotStore::apply` (which adds the SHA-256 check, writing the file with fsync, and the swap).
//! 2. In a child process that does nothing else: the resident bytes per key of the compiled `Catalog` (RSS
//!    across `Catalog::compile` only, so no freed decode garbage is counted).
//! 3. Through a real data-plane node fed by [`crate::fakecp`]: idle RSS, time from publish to served, the node's
//!    RSS per key after the apply, and p99 of requests while snapshots of that size are swapped in under load.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use chrono::Utc;
use rand::RngCore as _;
use switchyard_data_plane::catalog::{Catalog, DecodedKeys};
use switchyard_data_plane::health::{BreakerPolicy, Registry};
use switchyard_data_plane::snapshot::SnapshotStore;
use switchyard_shared::protocol;
use switchyard_shared::secret::API_KEY_PREFIX;
use switchyard_shared::snapshot::{KeyEntry, ModelEntry, ProviderEntry, ProviderKind, TargetEntry, TeamEntry};
use switchyard_shared::{ApiKey, KeyHash, Price, Snapshot};

use crate::fakecp::{FakeControlPlane, Published};
use crate::hist::Quantiles;
use crate::load::{self, LoadSpec};
use crate::procstat::{self, Watched};
use crate::report::{Check, fmt_delta, fmt_lat, fmt_opt, mib};
use crate::seed::MODEL;

/// A snapshot with `keys` keys over `keys / 100` teams. Every 10th key is limited to one model and every 20th
/// expires, so the optional fields cost what they cost in a real deployment. `known` is key 1.
pub fn generate(keys: usize, version: u64, known: &KeyHash, mock_url: &str) -> Snapshot {
    let teams = (keys / 100).max(1);
    let mut rng = rand::rng();
    let now = Utc::now();
    let key_entries = (0..keys)
        .map(|i| {
            let hash = if i == 0 {
                *known
            } else {
                let mut h = [0u8; 32];
                rng.fill_bytes(&mut h);
                KeyHash(h)
            };
            KeyEntry {
                id: i as i64 + 1,
                hash,
                team_id: (i % teams) as i64 + 1,
                name: format!("key-{i}"),
                allowed_models: (i % 10 == 9).then(|| vec![MODEL.to_owned()]),
                expires_at: (i % 20 == 19).then(|| now + chrono::Duration::days(365)),
            }
        })
        .collect();
    Snapshot {
        version,
        teams: (0..teams).map(|t| TeamEntry { id: t as i64 + 1, name: format!("team-{t}") }).collect(),
        keys: key_entries,
        providers: vec![ProviderEntry {
            timeouts: Default::default(),
            caps: Default::default(),
            model_caps: Vec::new(),
            id: 1,
            name: "bench-mock".into(),
            kind: ProviderKind::OpenaiCompatible,
            base_url: mock_url.to_owned(),
            credential: Some("mock-upstream-credential".into()),
        }],
        models: vec![ModelEntry {
            name: MODEL.into(),
            price: Price { input_per_mtok: 500_000, output_per_mtok: 1_500_000 },
            targets: vec![TargetEntry { provider_id: 1, upstream_model: "mock-model".into(), weight: 1, priority: 0 }],
            allowed_teams: None,
        }],
        ..Snapshot::empty(now)
    }
}

pub struct SnapshotConfig {
    pub sizes: Vec<usize>,
    /// The data-plane binary for the through-a-node part; skipped when absent.
    pub node_bin: Option<PathBuf>,
    pub mock_url: String,
    pub quick: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct InProcess {
    pub keys: usize,
    pub body_bytes: usize,
    pub decode_ms: f64,
    pub validate_ms: f64,
    pub compile_ms: f64,
    /// decode + validate + compile, time this thread was on a CPU (unaffected by other load on the box).
    pub apply_cpu_ms: f64,
    /// The same through `Vec<KeyEntry>` (`from_slice::<Snapshot>` + `validate` + `Catalog::compile`), the path
    /// nodes used before keys were decoded straight into the key table; measured alternately with it.
    pub via_entries_ms: f64,
    pub via_entries_cpu_ms: f64,
    pub digest_ms: f64,
    /// Dropping a catalog of this size (what the swap does to the previous one).
    pub drop_ms: f64,
    /// `SnapshotStore::apply` into an empty store.
    pub store_apply_first_ms: f64,
    /// `SnapshotStore::apply` over a store already holding this many keys.
    pub store_apply_again_ms: f64,
    /// RSS growth across `Catalog::compile` in a fresh process, per key.
    pub catalog_bytes_per_key: Option<f64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ThroughNode {
    pub keys: usize,
    pub idle_rss: u64,
    pub publish_to_served_ms: f64,
    /// Publish → the node reports the version as applied (it is on disk: persisted after the swap).
    pub publish_to_reported_ms: f64,
    pub rss_after: u64,
    pub peak_rss: u64,
    pub baseline: Option<Quantiles>,
    pub baseline_rps: f64,
    pub swapping: Option<Quantiles>,
    pub swapping_rps: f64,
    pub swaps: usize,
    pub swap_ms: Vec<f64>,
    pub errors: u64,
}

/// The upstream health registry a catalog is compiled against (the data plane's defaults).
fn health() -> Arc<Registry> {
    Arc::new(Registry::new(BreakerPolicy::default()))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Time the calling thread has been on a CPU (`/proc/thread-self/schedstat`, nanoseconds); zero if unreadable.
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

pub async fn in_process(keys: usize, catalog_rss: Option<f64>) -> anyhow::Result<InProcess> {
    let known = KeyHash::of("bench");
    let mut snapshot = generate(keys, 2, &known, "http://127.0.0.1:9/v1");
    let body = Bytes::from(serde_json::to_vec(&snapshot)?);
    snapshot.version = 3;
    let body_again = Bytes::from(serde_json::to_vec(&snapshot)?);
    drop(snapshot);
    let health = health();
    let reps = if keys <= 200_000 { 5 } else { 1 };
    let (mut decode, mut validate, mut compile, mut digest, mut dropping) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut apply_cpu, mut entries, mut entries_cpu) = (vec![], vec![], vec![]);
    for _ in 0..reps {
        let (t, cpu) = (Instant::now(), thread_cpu());
        let old: Snapshot = serde_json::from_slice(&body)?;
        old.validate()?;
        let c = Catalog::compile(&old, &health);
        entries_cpu.push(ms(thread_cpu().saturating_sub(cpu)));
        entries.push(ms(t.elapsed()));
        drop((old, c));
        let cpu = thread_cpu();
        let t = Instant::now();
        let d = protocol::body_digest(&body);
        digest.push(ms(t.elapsed()));
        std::hint::black_box(d);
        let t = Instant::now();
        let s: Snapshot<DecodedKeys> = serde_json::from_slice(&body)?;
        decode.push(ms(t.elapsed()));
        let t = Instant::now();
        s.validate()?;
        validate.push(ms(t.elapsed()));
        let t = Instant::now();
        let c = Catalog::from_decoded(s, &health);
        compile.push(ms(t.elapsed()));
        apply_cpu.push(ms(thread_cpu().saturating_sub(cpu)));
        let t = Instant::now();
        drop(c);
        dropping.push(ms(t.elapsed()));
    }
    let dir = tempfile::tempdir()?;
    let store = SnapshotStore::new(dir.path().to_path_buf(), health.clone());
    let t = Instant::now();
    store.apply(body.clone(), &protocol::body_digest(&body)).await?;
    let first = ms(t.elapsed());
    let t = Instant::now();
    store.apply(body_again.clone(), &protocol::body_digest(&body_again)).await?;
    let again = ms(t.elapsed());
    Ok(InProcess {
        keys,
        body_bytes: body.len(),
        decode_ms: median(decode),
        validate_ms: median(validate),
        compile_ms: median(compile),
        apply_cpu_ms: median(apply_cpu),
        via_entries_ms: median(entries),
        via_entries_cpu_ms: median(entries_cpu),
        digest_ms: median(digest),
        drop_ms: median(dropping),
        store_apply_first_ms: first,
        store_apply_again_ms: again,
        catalog_bytes_per_key: catalog_rss,
    })
}

/// The `catalog-rss` subcommand, run in a child process: RSS across `Catalog::compile` of a `keys` snapshot.
pub fn catalog_rss(keys: usize) -> anyhow::Result<serde_json::Value> {
    let snapshot = generate(keys, 2, &KeyHash::of("bench"), "http://127.0.0.1:9/v1");
    let pid = std::process::id();
    let before = procstat::memory(pid)?.rss;
    let catalog = Catalog::compile(&snapshot, &health());
    let after = procstat::memory(pid)?.rss;
    std::hint::black_box(&catalog);
    Ok(serde_json::json!({"keys": keys, "rss_before": before, "rss_after": after}))
}

fn catalog_rss_in_child(keys: usize) -> anyhow::Result<f64> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe).args(["catalog-rss", "--keys", &keys.to_string()]).output()?;
    if !out.status.success() {
        bail!("catalog-rss failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let before = v["rss_before"].as_u64().context("rss_before")?;
    let after = v["rss_after"].as_u64().context("rss_after")?;
    Ok(after.saturating_sub(before) as f64 / keys as f64)
}

/// Kills the node when the bench ends, however it ends.
struct NodeProcess(Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub async fn through_node(
    keys: usize,
    node_bin: &std::path::Path,
    mock_url: &str,
    quick: bool,
) -> anyhow::Result<ThroughNode> {
    let cp = FakeControlPlane::start().await?;
    let api_key = ApiKey::generate(API_KEY_PREFIX, &mut rand::rng());
    let known = api_key.hash();
    let tiny = generate(1, 1, &known, mock_url);
    cp.publish(Published::new(1, Bytes::from(serde_json::to_vec(&tiny)?)));

    let state = tempfile::tempdir()?;
    let port = free_port()?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let child = Command::new(node_bin)
        .env("SWITCHYARD_CONTROL_PLANE_URL", format!("http://{}", cp.addr))
        .env("SWITCHYARD_NODE_TOKEN", "bench-node-token")
        .env("SWITCHYARD_NODE_ID", "bench-snapshot-node")
        .env("SWITCHYARD_LISTEN", addr.to_string())
        .env("SWITCHYARD_STATE_DIR", state.path())
        .env("SWITCHYARD_POLL_WAIT_SECS", "5")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", node_bin.display()))?;
    let node = NodeProcess(child);
    let pid = node.0.id();
    crate::client::wait_ready(addr, 1, Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = procstat::memory(pid)?;

    // Versions 2 (the first big one) and 3.. (swapped in under load), serialised before anything is timed.
    let swaps = 4;
    let mut snapshot = generate(keys, 2, &known, mock_url);
    let mut bodies = Vec::new();
    for v in 2..=(2 + swaps as u64) {
        snapshot.version = v;
        bodies.push(Published::new(v, Bytes::from(serde_json::to_vec(&snapshot)?)));
    }
    drop(snapshot);
    let mut bodies = bodies.into_iter();

    procstat::reset_peak(pid);
    let first = bodies.next().context("no body")?;
    let t = Instant::now();
    cp.publish(first);
    crate::client::wait_ready(addr, 2, Duration::from_secs(120)).await?;
    let publish_to_served = t.elapsed();
    cp.wait_applied(2, Duration::from_secs(120)).await?;
    let publish_to_reported = t.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = procstat::memory(pid)?;

    let (warmup, duration) = if quick {
        (Duration::from_secs(1), Duration::from_secs(4))
    } else {
        (Duration::from_secs(2), Duration::from_secs(10))
    };
    let spec = LoadSpec {
        addr,
        path: "/v1/chat/completions".into(),
        authorization: Some(format!("Bearer {}", api_key.expose())),
        body: Bytes::from(format!(r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":"Hi"}}]}}"#)),
        stream: false,
        concurrency: 32,
        warmup,
        duration,
        request_timeout: Duration::from_secs(30),
        watch: vec![Watched { role: "proxy".into(), pid }],
    };
    let baseline = load::run(spec.clone()).await?;

    let loaded = tokio::spawn(load::run(spec));
    let mut swap_ms = Vec::new();
    let t0 = Instant::now();
    for (i, body) in bodies.enumerate() {
        let at = warmup + duration * (i as u32 + 1) / (swaps as u32 + 1);
        tokio::time::sleep(at.saturating_sub(t0.elapsed())).await;
        let v = body.version;
        let t = Instant::now();
        cp.publish(body);
        crate::client::wait_ready(addr, v, Duration::from_secs(120)).await?;
        swap_ms.push(ms(t.elapsed()));
    }
    let swapping = loaded.await??;
    let peak = procstat::memory(pid)?.hwm;
    Ok(ThroughNode {
        keys,
        idle_rss: idle.rss,
        publish_to_served_ms: ms(publish_to_served),
        publish_to_reported_ms: ms(publish_to_reported),
        rss_after: after.rss,
        peak_rss: peak.max(after.hwm),
        baseline: baseline.latency,
        baseline_rps: baseline.rps,
        swapping: swapping.latency,
        swapping_rps: swapping.rps,
        swaps: swap_ms.len(),
        swap_ms,
        errors: baseline.errors.total() + swapping.errors.total(),
    })
}

pub async fn run(cfg: &SnapshotConfig) -> anyhow::Result<String> {
    let mut inproc = Vec::new();
    for &keys in &cfg.sizes {
        let per_key = catalog_rss_in_child(keys).ok();
        let r = in_process(keys, per_key).await?;
        eprintln!(
            "snapshot {keys} keys: decode {:.1} ms, validate {:.1} ms, compile {:.1} ms (on-CPU {:.1} ms; via \
             KeyEntry {:.1} ms, on-CPU {:.1} ms), store apply {:.1} ms",
            r.decode_ms,
            r.validate_ms,
            r.compile_ms,
            r.apply_cpu_ms,
            r.via_entries_ms,
            r.via_entries_cpu_ms,
            r.store_apply_again_ms
        );
        inproc.push(r);
    }
    let mut nodes = Vec::new();
    if let Some(bin) = &cfg.node_bin {
        for &keys in &cfg.sizes {
            let r = through_node(keys, bin, &cfg.mock_url, cfg.quick).await?;
            eprintln!(
                "node with {keys} keys: served after {:.0} ms, RSS {} -> {}, p99 {} -> {} while swapping",
                r.publish_to_served_ms,
                mib(r.idle_rss),
                mib(r.rss_after),
                fmt_opt(r.baseline.map(|q| q.p99), fmt_lat),
                fmt_opt(r.swapping.map(|q| q.p99), fmt_lat)
            );
            nodes.push(r);
        }
    }
    Ok(render(&inproc, &nodes))
}

fn render(inproc: &[InProcess], nodes: &[ThroughNode]) -> String {
    let mut out = String::from("### Snapshot apply (in process)\n\n");
    out.push_str(
        "decode = `serde_json::from_slice::<Snapshot<DecodedKeys>>` (keys straight into the catalog's key table), \
         validate = `Snapshot::validate`, compile = `Catalog::from_decoded` (the rest of the catalog) \
         (medians of 5 at ≤ 200k keys, single runs above); apply = decode + validate + compile (the swap itself is \
         one pointer store); on-CPU = the same as time the thread ran (`/proc/thread-self/schedstat`), which other \
         load on the box does not inflate. Via `KeyEntry` = `from_slice::<Snapshot>` + `validate` + \
         `Catalog::compile`, the path before keys were decoded into the key table, run alternately with it. \
         `SnapshotStore::apply` adds the SHA-256 check and writing the file with fsync, and \
         over a full store also frees the previous catalog. Catalog bytes/key = RSS growth across `Catalog::compile` \
         in a fresh process.\n\n",
    );
    out.push_str(
        "| keys | JSON size | decode | validate | compile | apply (decode+validate+compile) | apply on-CPU | via \
         `KeyEntry` (on-CPU) | SHA-256 | drop old catalog | `SnapshotStore::apply` (empty store) | \
         `SnapshotStore::apply` (full store) | catalog bytes/key |\n",
    );
    out.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in inproc {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} ms | {:.1} ms | {:.1} ms | **{:.1} ms** | {:.1} ms | {:.1} ms ({:.1} ms) | {:.1} ms | \
             {:.1} ms | {:.1} ms | {:.1} ms | {} |",
            r.keys,
            mib(r.body_bytes as u64),
            r.decode_ms,
            r.validate_ms,
            r.compile_ms,
            r.decode_ms + r.validate_ms + r.compile_ms,
            r.apply_cpu_ms,
            r.via_entries_ms,
            r.via_entries_cpu_ms,
            r.digest_ms,
            r.drop_ms,
            r.store_apply_first_ms,
            r.store_apply_again_ms,
            fmt_opt(r.catalog_bytes_per_key, |b| format!("{b:.0}")),
        );
    }
    if !nodes.is_empty() {
        out.push_str("\n### Snapshot through a real node\n\n");
        out.push_str(
            "A data-plane node fed by the bench's stand-in control plane: first a 1-key snapshot (idle RSS), then \
             the big one (publish → served: `/readyz` reports it, after transfer + digest + decode + validate + \
             compile + swap; publish → on disk: the node's next poll reports it applied, after the fsynced write). \
             Node RSS/key = (RSS 1 s after it is on disk − idle RSS) ÷ keys: what the process really holds, \
             decode garbage kept by the allocator included. Then governed small chat at c=32 through the node, \
             without and with 4 swaps of a snapshot of the same size during the measured window.\n\n",
        );
        out.push_str(
            "| keys | idle RSS | publish → served | publish → on disk | RSS after | node RSS/key | peak RSS | p50 / p99 \
             / p99.9 / max without swaps | with swaps | Δp99 | RPS without / with | swap times | errors |\n",
        );
        out.push_str("|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---|---:|\n");
        for r in nodes {
            let q = |q: Option<Quantiles>| {
                fmt_opt(q, |q| {
                    format!("{} / {} / {} / {}", fmt_lat(q.p50), fmt_lat(q.p99), fmt_lat(q.p999), fmt_lat(q.max))
                })
            };
            let dp99 = match (r.baseline, r.swapping) {
                (Some(a), Some(b)) => fmt_delta(b.p99 - a.p99),
                _ => "n/a".into(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} ms | {:.0} ms | {} | {:.0} | {} | {} | {} | {} | {:.0} / {:.0} | {} | {} |",
                r.keys,
                mib(r.idle_rss),
                r.publish_to_served_ms,
                r.publish_to_reported_ms,
                mib(r.rss_after),
                r.rss_after.saturating_sub(r.idle_rss) as f64 / r.keys as f64,
                mib(r.peak_rss),
                q(r.baseline),
                q(r.swapping),
                dp99,
                r.baseline_rps,
                r.swapping_rps,
                r.swap_ms.iter().map(|m| format!("{m:.0} ms")).collect::<Vec<_>>().join(", "),
                r.errors,
            );
        }
    }
    out.push_str("\n### Snapshot targets (issue 4)\n\n");
    let mut checks = Vec::new();
    for r in inproc {
        let apply = r.decode_ms + r.validate_ms + r.compile_ms;
        let limit = if r.keys <= 100_000 { 50.0 } else { 500.0 };
        if r.keys == 100_000 || r.keys == 1_000_000 {
            checks.push(Check::at_most(
                &format!("Apply {} keys (decode + validate + compile + swap)", r.keys),
                &format!("≤ {limit:.0} ms"),
                apply,
                limit,
                format!(
                    "{apply:.1} ms, on-CPU {:.1} ms (`SnapshotStore::apply`: {:.1} ms)",
                    r.apply_cpu_ms, r.store_apply_again_ms
                ),
            ));
        }
        if let Some(b) = r.catalog_bytes_per_key {
            checks.push(Check::at_most(
                &format!("Catalog resident bytes per key ({} keys)", r.keys),
                "≤ 128",
                b,
                128.0,
                format!("{b:.0}"),
            ));
        }
    }
    for r in nodes {
        let b = r.rss_after.saturating_sub(r.idle_rss) as f64 / r.keys as f64;
        checks.push(Check::at_most(
            &format!("Node process RSS per key after apply ({} keys)", r.keys),
            "≤ 128",
            b,
            128.0,
            format!("{b:.0}"),
        ));
    }
    if let Some(r) = nodes.first() {
        checks.push(Check::at_most(
            "Idle RSS of a node (1-key snapshot)",
            "≤ 30 MB",
            r.idle_rss as f64 / 1e6,
            30.0,
            format!("{:.1} MB", r.idle_rss as f64 / 1e6),
        ));
    }
    out.push_str(&Check::table(&checks));
    out
}
