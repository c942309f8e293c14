//! The load generator: N virtual users, each on its own keep-alive HTTP/1.1 connection (hyper's client
//! connection, polled in the same task as its requests so no cross-task wake-up sits in the measured path),
//! sending the next request as soon as the previous one ends (closed loop) for a warm-up and then a measured
//! window. Per request it records latency; for streams, time to the first body chunk (TTFT) and the gaps between
//! chunks. Around the window it samples the CPU time and peak RSS of the processes it is told to watch.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::hist::{Histogram, Quantiles};
use crate::procstat::{self, CpuWindow, Memory, Watched};

/// Connections opened at once while ramping up, so a burst of thousands does not overflow listen backlogs.
const CONNECT_PARALLELISM: usize = 128;

/// One run: one target, one request shape, one concurrency.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub addr: SocketAddr,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Bytes,
    pub stream: bool,
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub request_timeout: Duration,
    /// Processes whose CPU and memory are reported.
    pub watch: Vec<Watched>,
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Errors {
    pub connect: u64,
    pub status: u64,
    pub io: u64,
    pub timeout: u64,
    /// A stream that ended without `data: [DONE]`.
    pub truncated: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.connect + self.status + self.io + self.timeout + self.truncated
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProcReport {
    pub role: String,
    pub pid: u32,
    /// CPU (user + system) used during the measured window, microseconds.
    pub cpu_us: Option<u64>,
    /// Of which per successful request.
    pub cpu_us_per_req: Option<f64>,
    /// Resident before the run started.
    pub rss_before: u64,
    /// Peak resident during the run (reset at its start when the kernel lets us).
    pub peak_rss: u64,
    pub peak_is_per_run: bool,
    /// Resident when the most streams were open at once (sampled while streaming).
    pub rss_streams_open: Option<u64>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LoadReport {
    pub ok: u64,
    pub errors: Errors,
    pub window_secs: f64,
    pub rps: f64,
    pub latency: Option<Quantiles>,
    pub ttft: Option<Quantiles>,
    pub gap: Option<Quantiles>,
    /// Most streams that had begun and not ended at one moment, with the RSS sample taken then.
    pub max_open_streams: u64,
    pub procs: Vec<ProcReport>,
}

struct Shared {
    start: Instant,
    end: Instant,
    ok: AtomicU64,
    connect: AtomicU64,
    status: AtomicU64,
    io: AtomicU64,
    timeout: AtomicU64,
    truncated: AtomicU64,
    open_streams: AtomicU64,
    latency: Histogram,
    ttft: Histogram,
    gap: Histogram,
}

impl Shared {
    fn in_window(&self, t: Instant) -> bool {
        t >= self.start && t < self.end
    }

    fn count(&self, counter: &AtomicU64, at: Instant) {
        if self.in_window(at) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

enum Failure {
    Status,
    Io,
    Truncated,
}

/// Runs one load spec to completion (warm-up + window + at most one request timeout of drain).
pub async fn run(spec: LoadSpec) -> anyhow::Result<LoadReport> {
    let spec = Arc::new(spec);
    let mem_before: Vec<Memory> = spec.watch.iter().map(|p| procstat::memory(p.pid).unwrap_or_default()).collect();
    let peak_reset: Vec<bool> = spec.watch.iter().map(|p| procstat::reset_peak(p.pid)).collect();
    let t0 = Instant::now();
    let shared = Arc::new(Shared {
        start: t0 + spec.warmup,
        end: t0 + spec.warmup + spec.duration,
        ok: AtomicU64::new(0),
        connect: AtomicU64::new(0),
        status: AtomicU64::new(0),
        io: AtomicU64::new(0),
        timeout: AtomicU64::new(0),
        truncated: AtomicU64::new(0),
        open_streams: AtomicU64::new(0),
        latency: Histogram::new(),
        ttft: Histogram::new(),
        gap: Histogram::new(),
    });

    let gate = Arc::new(Semaphore::new(CONNECT_PARALLELISM));
    let mut users = JoinSet::new();
    for _ in 0..spec.concurrency {
        users.spawn(virtual_user(spec.clone(), shared.clone(), gate.clone()));
    }

    // While users run: CPU at the window's edges, and memory whenever more streams are open than ever before.
    let mut open_sample: (u64, Vec<Option<u64>>) = (0, vec![None; spec.watch.len()]);
    let mut cpu_start = None;
    let cpu;
    let tick = Duration::from_millis(50);
    loop {
        let now = Instant::now();
        if cpu_start.is_none() && now >= shared.start {
            cpu_start = Some(CpuWindow::begin(&spec.watch));
        }
        if now >= shared.end {
            cpu = cpu_start.take().map(|w| w.end(&spec.watch));
            break;
        }
        let open = shared.open_streams.load(Ordering::Relaxed);
        let all_open = open as usize == spec.concurrency;
        if spec.stream && open > open_sample.0 && (all_open || open * 20 >= open_sample.0 * 21) {
            let rss = spec.watch.iter().map(|p| procstat::memory(p.pid).ok().map(|m| m.rss)).collect();
            open_sample = (open, rss);
        }
        let next = [shared.start, shared.end].into_iter().filter(|t| *t > now).min().unwrap_or(now);
        tokio::time::sleep(tick.min(next.saturating_duration_since(now))).await;
    }
    // Users finish their current request (not counted: it ends after the window); stragglers are cut.
    let drain = tokio::time::timeout(spec.request_timeout + Duration::from_secs(1), async {
        while users.join_next().await.is_some() {}
    })
    .await;
    if drain.is_err() {
        users.abort_all();
        while users.join_next().await.is_some() {}
    }

    let ok = shared.ok.load(Ordering::Relaxed);
    let cpu = cpu.unwrap_or_else(|| vec![None; spec.watch.len()]);
    let procs = spec
        .watch
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let cpu_us = cpu[i].map(|d| d.as_micros() as u64);
            let after = procstat::memory(p.pid).unwrap_or_default();
            ProcReport {
                role: p.role.clone(),
                pid: p.pid,
                cpu_us,
                cpu_us_per_req: cpu_us.filter(|_| ok > 0).map(|c| c as f64 / ok as f64),
                rss_before: mem_before[i].rss,
                peak_rss: after.hwm,
                peak_is_per_run: peak_reset[i],
                rss_streams_open: open_sample.1[i],
            }
        })
        .collect();
    Ok(LoadReport {
        ok,
        errors: Errors {
            connect: shared.connect.load(Ordering::Relaxed),
            status: shared.status.load(Ordering::Relaxed),
            io: shared.io.load(Ordering::Relaxed),
            timeout: shared.timeout.load(Ordering::Relaxed),
            truncated: shared.truncated.load(Ordering::Relaxed),
        },
        window_secs: spec.duration.as_secs_f64(),
        rps: ok as f64 / spec.duration.as_secs_f64(),
        latency: shared.latency.summary(),
        ttft: shared.ttft.summary(),
        gap: shared.gap.summary(),
        max_open_streams: open_sample.0,
        procs,
    })
}

async fn connect(
    addr: SocketAddr,
) -> anyhow::Result<(SendRequest<Full<Bytes>>, http1::Connection<TokioIo<TcpStream>, Full<Bytes>>)> {
    let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(http1::handshake(TokioIo::new(stream)).await?)
}

/// One virtual user: connect, send requests back to back until the window ends; reconnect if the connection
/// breaks.
async fn virtual_user(spec: Arc<LoadSpec>, shared: Arc<Shared>, gate: Arc<Semaphore>) {
    while Instant::now() < shared.end {
        let connected = {
            let _permit = gate.acquire().await;
            connect(spec.addr).await
        };
        let (sender, conn) = match connected {
            Ok(c) => c,
            Err(_) => {
                shared.count(&shared.connect, Instant::now());
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let mut conn = pin!(conn);
        let mut work = pin!(requests(&spec, &shared, sender));
        let done = tokio::select! {
            done = &mut work => done,
            // The connection ended: the request loop now fails fast (and counts a request that was in flight).
            _ = &mut conn => work.await,
        };
        if done {
            return;
        }
    }
}

/// Sends requests until the window ends (`true`) or the connection is unusable (`false`).
async fn requests(spec: &LoadSpec, shared: &Shared, mut sender: SendRequest<Full<Bytes>>) -> bool {
    loop {
        if Instant::now() >= shared.end {
            return true;
        }
        if sender.ready().await.is_err() {
            return false;
        }
        let started = Instant::now();
        let outcome = tokio::time::timeout(spec.request_timeout, exchange(spec, shared, &mut sender, started)).await;
        let ended = Instant::now();
        match outcome {
            Ok(Ok(())) => {
                if shared.in_window(ended) {
                    shared.ok.fetch_add(1, Ordering::Relaxed);
                    shared.latency.record(ended - started);
                }
            }
            Ok(Err(Failure::Status)) => shared.count(&shared.status, ended),
            Ok(Err(Failure::Truncated)) => shared.count(&shared.truncated, ended),
            Ok(Err(Failure::Io)) => {
                shared.count(&shared.io, ended);
                return false;
            }
            Err(_) => {
                shared.count(&shared.timeout, ended);
                return false;
            }
        }
    }
}

/// Decrements the open-stream gauge however the stream ends.
struct OpenStream<'a>(&'a AtomicU64);

impl Drop for OpenStream<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn exchange(
    spec: &LoadSpec,
    shared: &Shared,
    sender: &mut SendRequest<Full<Bytes>>,
    started: Instant,
) -> Result<(), Failure> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(spec.path.as_str())
        .header(HOST, "127.0.0.1")
        .header(CONTENT_TYPE, "application/json");
    if let Some(a) = &spec.authorization {
        req = req.header(AUTHORIZATION, a.as_str());
    }
    let req = req.body(Full::new(spec.body.clone())).map_err(|_| Failure::Io)?;
    let res = sender.send_request(req).await.map_err(|_| Failure::Io)?;
    let status = res.status();
    let mut body = res.into_body();
    if !status.is_success() {
        let _ = body.collect().await;
        return Err(Failure::Status);
    }
    if !spec.stream {
        body.collect().await.map_err(|_| Failure::Io)?;
        return Ok(());
    }
    let mut open: Option<OpenStream<'_>> = None;
    let mut last = started;
    let mut tail = [0u8; 14];
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| Failure::Io)?.into_data() else { continue };
        if data.is_empty() {
            continue;
        }
        let now = Instant::now();
        if open.is_none() {
            shared.open_streams.fetch_add(1, Ordering::Relaxed);
            open = Some(OpenStream(&shared.open_streams));
            if shared.in_window(now) {
                shared.ttft.record(now - started);
            }
        } else if shared.in_window(now) {
            shared.gap.record(now - last);
        }
        last = now;
        keep_tail(&mut tail, &data);
    }
    if &tail == b"data: [DONE]\n\n" { Ok(()) } else { Err(Failure::Truncated) }
}

/// Keeps the last `tail.len()` bytes seen across chunks.
fn keep_tail(tail: &mut [u8], data: &[u8]) {
    let n = tail.len();
    if data.len() >= n {
        tail.copy_from_slice(&data[data.len() - n..]);
    } else {
        tail.copy_within(data.len().., 0);
        tail[n - data.len()..].copy_from_slice(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_spans_chunks() {
        let mut t = [0u8; 14];
        for piece in [&b"data: {}\n\ndata: [DO"[..], b"NE]", b"\n", b"\n"] {
            keep_tail(&mut t, piece);
        }
        assert_eq!(&t, b"data: [DONE]\n\n");
    }
}
