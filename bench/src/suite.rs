//! The scenario matrix of issue 4, run interleaved: for each scenario, direct-to-mock (the ceiling), the governed
//! node and the ungoverned node back to back, so all three see the same machine state. Renders the results as
//! markdown tables with added latency (gateway − direct at the same concurrency) and checks the issue's targets.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::hist::Quantiles;
use crate::load::{self, LoadReport, LoadSpec};
use crate::procstat::{self, Watched};
use crate::report::{Check, fmt_delta, fmt_lat, fmt_opt, mib};

pub struct SuiteConfig {
    pub mock: SocketAddr,
    pub governed: SocketAddr,
    pub ungoverned: SocketAddr,
    pub key: String,
    pub mock_pid: u32,
    pub governed_pid: u32,
    pub ungoverned_pid: u32,
    pub control_plane_pid: Option<u32>,
    /// A byte relay in front of the mock (address, pid): the floor any proxy pays on this machine.
    pub relay: Option<(SocketAddr, u32)>,
    pub quick: bool,
    /// Scenario names to run (all when empty).
    pub only: Vec<String>,
    /// Scenario names not to run.
    pub except: Vec<String>,
    /// Concurrency of the open-streams memory check.
    pub open_streams: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Target {
    Direct,
    /// The byte relay of [`crate::relay`]: what one more hop costs with no work done in it.
    Relay,
    Governed,
    Ungoverned,
}

impl Target {
    pub const ALL: [Target; 4] = [Target::Direct, Target::Relay, Target::Governed, Target::Ungoverned];

    fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct (mock)",
            Target::Relay => "byte relay (floor)",
            Target::Governed => "governed",
            Target::Ungoverned => "ungoverned",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// Small non-streaming chat.
    Chat,
    /// 20 chunks 5 ms apart.
    Stream,
    /// Upstream answers after 200 ms.
    Slow,
    /// Long streams held open to measure memory per open stream.
    Open,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Scenario {
    pub name: String,
    pub kind: Kind,
    pub concurrency: usize,
    #[serde(skip)]
    pub warmup: Duration,
    #[serde(skip)]
    pub duration: Duration,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Run {
    pub scenario: Scenario,
    pub target: Target,
    pub report: LoadReport,
}

const PROMPT: &str = r#""messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Hello! Say something short."}]"#;

pub fn body(kind: Kind, quick: bool) -> Bytes {
    let shape = match kind {
        Kind::Chat => r#""mock":{"chunks":16}"#.to_owned(),
        Kind::Stream => r#""stream":true,"mock":{"chunks":20,"chunk_delay_ms":5}"#.to_owned(),
        Kind::Slow => r#""mock":{"chunks":16,"latency_ms":200}"#.to_owned(),
        Kind::Open => {
            let delay = if quick { 200 } else { 500 };
            format!(r#""stream":true,"mock":{{"chunks":20,"chunk_delay_ms":{delay}}}"#)
        }
    };
    Bytes::from(format!(r#"{{"model":"bench-chat",{PROMPT},{shape}}}"#))
}

pub fn scenarios(quick: bool, open_streams: usize) -> Vec<Scenario> {
    let (warmup, duration) = if quick { (1, 2) } else { (2, 10) };
    let s = |kind, concurrency: usize, name: &str| Scenario {
        name: name.to_owned(),
        kind,
        concurrency,
        warmup: Duration::from_secs(warmup),
        duration: Duration::from_secs(duration),
    };
    let mut open = s(Kind::Open, open_streams, "open-streams");
    // Long enough for every stream to open before the window, which spans about one stream's life.
    (open.warmup, open.duration) = if quick {
        (Duration::from_secs(2), Duration::from_secs(3))
    } else {
        (Duration::from_secs(5), Duration::from_secs(10))
    };
    // Open streams last, and best on fresh processes (bench/run restarts them for it): the RSS growth per stream
    // is only readable before the allocator holds what earlier scenarios grew to, and thousands of pooled idle
    // connections left behind by it slow every later scenario down.
    vec![
        s(Kind::Chat, 1, "chat-c1"),
        s(Kind::Chat, 32, "chat-c32"),
        s(Kind::Chat, 256, "chat-c256"),
        // Not in the issue's list: streams at a concurrency this box can carry without saturating, so the
        // gateway's own TTFT and gap overhead is not buried under queueing.
        s(Kind::Stream, 8, "stream-c8"),
        s(Kind::Stream, 256, "stream-c256"),
        s(Kind::Stream, 2000, "stream-c2000"),
        s(Kind::Slow, 1000, "slow200-c1000"),
        open,
    ]
}

pub async fn run(cfg: &SuiteConfig) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for scenario in scenarios(cfg.quick, cfg.open_streams) {
        if (!cfg.only.is_empty() && !cfg.only.contains(&scenario.name)) || cfg.except.contains(&scenario.name) {
            continue;
        }
        for target in Target::ALL {
            let Some(spec) = spec(cfg, &scenario, target) else { continue };
            let report = load::run(spec).await?;
            eprintln!(
                "{:<14} {:<14} c={:<5} {:>9.0} rps  p50 {:>10}  p99 {:>10}  errors {}",
                scenario.name,
                target.name(),
                scenario.concurrency,
                report.rps,
                fmt_opt(report.latency.map(|q| q.p50), fmt_lat),
                fmt_opt(report.latency.map(|q| q.p99), fmt_lat),
                report.errors.total()
            );
            runs.push(Run { scenario: scenario.clone(), target, report });
            // Let closed connections and the usage reporter settle before the next run.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(runs)
}

/// The run of `scenario` against `target`; `None` when that target is not part of it (the relay is left out of
/// the open-streams check, and needs a relay).
fn spec(cfg: &SuiteConfig, scenario: &Scenario, target: Target) -> Option<LoadSpec> {
    let (addr, proxy_pid, authorization) = match target {
        Target::Direct => (cfg.mock, None, None),
        Target::Relay => match cfg.relay {
            Some((addr, pid)) if scenario.kind != Kind::Open => (addr, Some(pid), None),
            _ => return None,
        },
        Target::Governed => (cfg.governed, Some(cfg.governed_pid), Some(format!("Bearer {}", cfg.key))),
        Target::Ungoverned => (cfg.ungoverned, Some(cfg.ungoverned_pid), None),
    };
    let mut watch = Vec::new();
    if let Some(pid) = proxy_pid {
        watch.push(Watched { role: "proxy".into(), pid });
    }
    watch.push(Watched { role: "mock".into(), pid: cfg.mock_pid });
    if let Some(pid) = cfg.control_plane_pid {
        watch.push(Watched { role: "control-plane".into(), pid });
    }
    watch.push(Watched { role: "loadgen".into(), pid: std::process::id() });
    let stream = matches!(scenario.kind, Kind::Stream | Kind::Open);
    Some(LoadSpec {
        addr,
        path: "/v1/chat/completions".into(),
        authorization,
        body: body(scenario.kind, cfg.quick),
        stream,
        concurrency: scenario.concurrency,
        warmup: scenario.warmup,
        duration: scenario.duration,
        request_timeout: Duration::from_secs(30),
        watch,
    })
}

fn find<'a>(runs: &'a [Run], name: &str, target: Target) -> Option<&'a LoadReport> {
    runs.iter().find(|r| r.scenario.name == name && r.target == target).map(|r| &r.report)
}

fn proc<'a>(r: &'a LoadReport, role: &str) -> Option<&'a load::ProcReport> {
    r.procs.iter().find(|p| p.role == role)
}

/// The CPU per request of the process doing the serving: the proxy, or the mock when going direct.
fn server_cpu(r: &LoadReport, target: Target) -> Option<f64> {
    proc(r, if target == Target::Direct { "mock" } else { "proxy" })?.cpu_us_per_req
}

fn server_peak(r: &LoadReport, target: Target) -> Option<u64> {
    Some(proc(r, if target == Target::Direct { "mock" } else { "proxy" })?.peak_rss)
}

/// Markdown tables of every run, then the targets with met / not met.
pub fn render(runs: &[Run], idle_rss: Option<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### Request/response (non-streaming)\n");
    let _ = writeln!(
        out,
        "Δ = gateway − direct at the same concurrency. CPU µs/req is CPU time (user+system) over the measured window \
         divided by successful requests; \"server\" is the process answering the load generator (the mock when \
         direct, the node otherwise).\n"
    );
    let _ = writeln!(
        out,
        "| scenario | target | conc | RPS | p50 | p99 | p99.9 | Δp50 | Δp99 | errors | server CPU µs/req | mock CPU µs/req | \
         control-plane CPU µs/req | load-generator CPU µs/req | server peak RSS |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for run in runs.iter().filter(|r| matches!(r.scenario.kind, Kind::Chat | Kind::Slow)) {
        let r = &run.report;
        let direct = find(runs, &run.scenario.name, Target::Direct).and_then(|d| d.latency);
        let delta = |f: fn(&Quantiles) -> f64| match (run.target, r.latency, direct) {
            (Target::Direct, _, _) => "—".to_owned(),
            (_, Some(a), Some(b)) => fmt_delta(f(&a) - f(&b)),
            _ => "n/a".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            run.scenario.name,
            run.target.name(),
            run.scenario.concurrency,
            r.rps,
            fmt_opt(r.latency.map(|q| q.p50), fmt_lat),
            fmt_opt(r.latency.map(|q| q.p99), fmt_lat),
            fmt_opt(r.latency.map(|q| q.p999), fmt_lat),
            delta(|q| q.p50),
            delta(|q| q.p99),
            r.errors.total(),
            fmt_opt(server_cpu(r, run.target), |v| format!("{v:.1}")),
            fmt_opt(proc(r, "mock").and_then(|p| p.cpu_us_per_req), |v| format!("{v:.1}")),
            fmt_opt(proc(r, "control-plane").and_then(|p| p.cpu_us_per_req), |v| format!("{v:.1}")),
            fmt_opt(proc(r, "loadgen").and_then(|p| p.cpu_us_per_req), |v| format!("{v:.1}")),
            fmt_opt(server_peak(r, run.target), mib),
        );
    }

    let _ = writeln!(out, "\n### Streaming (20 chunks, 5 ms apart)\n");
    let _ = writeln!(
        out,
        "TTFT = time from sending the request to the first body chunk; gap = time between consecutive chunks.\n"
    );
    let _ = writeln!(
        out,
        "| scenario | target | conc | streams/s | TTFT p50 | TTFT p99 | TTFT p99.9 | ΔTTFT p50 | ΔTTFT p99 | gap p50 | \
         gap p99 | Δgap p99 | total p99 | errors | server CPU µs/stream | server peak RSS |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for run in runs.iter().filter(|r| r.scenario.kind == Kind::Stream) {
        let r = &run.report;
        let direct = find(runs, &run.scenario.name, Target::Direct);
        let delta = |mine: Option<Quantiles>, theirs: Option<Quantiles>, f: fn(&Quantiles) -> f64| match (
            run.target, mine, theirs,
        ) {
            (Target::Direct, _, _) => "—".to_owned(),
            (_, Some(a), Some(b)) => fmt_delta(f(&a) - f(&b)),
            _ => "n/a".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            run.scenario.name,
            run.target.name(),
            run.scenario.concurrency,
            r.rps,
            fmt_opt(r.ttft.map(|q| q.p50), fmt_lat),
            fmt_opt(r.ttft.map(|q| q.p99), fmt_lat),
            fmt_opt(r.ttft.map(|q| q.p999), fmt_lat),
            delta(r.ttft, direct.and_then(|d| d.ttft), |q| q.p50),
            delta(r.ttft, direct.and_then(|d| d.ttft), |q| q.p99),
            fmt_opt(r.gap.map(|q| q.p50), fmt_lat),
            fmt_opt(r.gap.map(|q| q.p99), fmt_lat),
            delta(r.gap, direct.and_then(|d| d.gap), |q| q.p99),
            fmt_opt(r.latency.map(|q| q.p99), fmt_lat),
            r.errors.total(),
            fmt_opt(server_cpu(r, run.target), |v| format!("{v:.1}")),
            fmt_opt(server_peak(r, run.target), mib),
        );
    }

    let open: Vec<&Run> = runs.iter().filter(|r| r.scenario.kind == Kind::Open).collect();
    if !open.is_empty() {
        let _ = writeln!(out, "\n### Open streams (memory per open stream)\n");
        let _ = writeln!(
            out,
            "Long streams (20 chunks, 500 ms apart; 200 ms with --quick) held open at once. Per stream = (RSS when \
             the most streams were open − RSS before the run) ÷ streams open then.\n"
        );
        let _ = writeln!(
            out,
            "| target | streams wanted | most open at once | server RSS before | server RSS with streams open | \
             per open stream | server peak RSS | TTFT p99 | errors |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for run in open {
            let r = &run.report;
            let p = proc(r, if run.target == Target::Direct { "mock" } else { "proxy" });
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                run.target.name(),
                run.scenario.concurrency,
                r.max_open_streams,
                fmt_opt(p.map(|p| p.rss_before), mib),
                fmt_opt(p.and_then(|p| p.rss_streams_open), mib),
                fmt_opt(per_stream(r, run.target), |b| format!("{:.1} KiB", b / 1024.0)),
                fmt_opt(p.map(|p| p.peak_rss), mib),
                fmt_opt(r.ttft.map(|q| q.p99), fmt_lat),
                r.errors.total(),
            );
        }
    }

    let _ = writeln!(out, "\n### Targets (issue 4)\n");
    out.push_str(&Check::table(&checks(runs, idle_rss)));
    if let (Some(r1), Some(d1), Some(r32)) = (
        find(runs, "chat-c1", Target::Relay),
        find(runs, "chat-c1", Target::Direct),
        find(runs, "chat-c32", Target::Relay),
    ) && let (Some(rl), Some(dl)) = (r1.latency, d1.latency)
    {
        let _ = writeln!(
            out,
            "\nThe floor on this machine: a byte relay that parses nothing adds {} at p50 and {} at p99 (c=1), \
             and uses {} of CPU per request at c=32.",
            fmt_delta(rl.p50 - dl.p50),
            fmt_delta(rl.p99 - dl.p99),
            fmt_opt(proc(r32, "proxy").and_then(|p| p.cpu_us_per_req), |v| format!("{v:.1} µs")),
        );
    }
    out
}

fn per_stream(r: &LoadReport, target: Target) -> Option<f64> {
    let p = proc(r, if target == Target::Direct { "mock" } else { "proxy" })?;
    let open = p.rss_streams_open?;
    (r.max_open_streams > 0).then(|| open.saturating_sub(p.rss_before) as f64 / r.max_open_streams as f64)
}

fn checks(runs: &[Run], idle_rss: Option<u64>) -> Vec<Check> {
    let mut out = Vec::new();
    let g32 = find(runs, "chat-c32", Target::Governed);
    let d32 = find(runs, "chat-c32", Target::Direct);
    let u32_ = find(runs, "chat-c32", Target::Ungoverned);
    if let (Some(g), Some(d)) = (g32, d32)
        && let (Some(gc), Some(dc)) = (server_cpu(g, Target::Governed), server_cpu(d, Target::Direct))
    {
        out.push(Check::at_most(
            "CPU per governed request ÷ mock CPU per request (c=32)",
            "≤ 2.5×",
            gc / dc,
            2.5,
            format!("{:.2}× ({gc:.1} µs vs {dc:.1} µs)", gc / dc),
        ));
    }
    if let (Some(g), Some(d)) = (g32, d32) {
        out.push(Check::at_least(
            "Governed RPS ÷ direct RPS (c=32)",
            "≥ 0.45",
            g.rps / d.rps,
            0.45,
            format!("{:.2} ({:.0} vs {:.0})", g.rps / d.rps, g.rps, d.rps),
        ));
    }
    if let (Some(g), Some(u)) = (g32, u32_) {
        let cost = 1.0 - g.rps / u.rps;
        out.push(Check::at_most(
            "Governance throughput cost vs off (c=32)",
            "≤ 10 %",
            cost * 100.0,
            10.0,
            format!("{:.1} % ({:.0} vs {:.0} RPS)", cost * 100.0, g.rps, u.rps),
        ));
    }
    for name in ["chat-c1", "chat-c32"] {
        if let (Some(g), Some(u)) = (find(runs, name, Target::Governed), find(runs, name, Target::Ungoverned))
            && let (Some(gl), Some(ul)) = (g.latency, u.latency)
        {
            out.push(Check::at_most(
                &format!("Governance p99 cost vs off ({name})"),
                "≤ 15 µs",
                gl.p99 - ul.p99,
                15.0,
                fmt_delta(gl.p99 - ul.p99),
            ));
        }
    }
    if let (Some(g), Some(d)) = (find(runs, "chat-c1", Target::Governed), find(runs, "chat-c1", Target::Direct))
        && let (Some(gl), Some(dl)) = (g.latency, d.latency)
    {
        out.push(Check::at_most(
            "Added latency p50 (c=1)",
            "≤ 40 µs",
            gl.p50 - dl.p50,
            40.0,
            fmt_delta(gl.p50 - dl.p50),
        ));
        out.push(Check::at_most(
            "Added latency p99 (c=1)",
            "≤ 80 µs",
            gl.p99 - dl.p99,
            80.0,
            fmt_delta(gl.p99 - dl.p99),
        ));
    }
    for name in ["stream-c8", "stream-c256", "stream-c2000"] {
        if let (Some(g), Some(d)) = (find(runs, name, Target::Governed), find(runs, name, Target::Direct)) {
            if let (Some(gt), Some(dt)) = (g.ttft, d.ttft) {
                out.push(Check::at_most(
                    &format!("Added TTFT p99 ({name})"),
                    "≤ 150 µs",
                    gt.p99 - dt.p99,
                    150.0,
                    fmt_delta(gt.p99 - dt.p99),
                ));
            }
            if let (Some(gg), Some(dg)) = (g.gap, d.gap) {
                out.push(Check::at_most(
                    &format!("Added inter-chunk gap p99 ({name})"),
                    "a few µs (≤ 10 µs)",
                    gg.p99 - dg.p99,
                    10.0,
                    fmt_delta(gg.p99 - dg.p99),
                ));
            }
        }
    }
    if let Some(run) = runs.iter().find(|r| r.scenario.kind == Kind::Open && r.target == Target::Governed)
        && let Some(b) = per_stream(&run.report, Target::Governed)
    {
        let all = run.report.max_open_streams as usize >= run.scenario.concurrency;
        out.push(Check::at_most(
            &format!("RSS per open stream, governed ({} streams open)", run.report.max_open_streams),
            "≤ 16 KiB at 10,000 streams",
            b / 1024.0,
            16.0,
            format!("{:.1} KiB{}", b / 1024.0, if all { "" } else { " (not all streams opened)" }),
        ));
    }
    if let Some(idle) = idle_rss {
        out.push(Check::at_most(
            "Idle RSS of a governed node (small snapshot, before load)",
            "≤ 30 MB",
            idle as f64 / 1e6,
            30.0,
            format!("{:.1} MB", idle as f64 / 1e6),
        ));
    }
    out
}

/// The governed node's resident set before any load: the issue's idle-RSS figure.
pub fn idle_rss(pid: u32) -> Option<u64> {
    procstat::memory(pid).ok().map(|m| m.rss)
}
