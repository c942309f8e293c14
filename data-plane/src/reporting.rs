//! Reporting usage to the control plane off the request path. The request path appends its record to the
//! durable spool ([`crate::spool`]) itself, with one `write` of one line, before the client gets the end of its
//! response (see [`UsageSink::record`]): a completed `write(2)` is in the kernel, so killing the process can no
//! longer lose the usage of a response that was delivered. The reporter task then has three parts joined in one
//! task:
//!
//! - the sender reads the spool from its acknowledged offset in order, batches by count or age, posts each batch
//!   until the control plane acknowledges it, then advances the offset (reclaiming the file's space);
//! - the appender is the fallback: a record whose direct write failed (disk full, I/O error) is queued in memory
//!   and the appender retries it every second, bounded by the queue's capacity;
//! - the syncer flushes the spool to stable storage once a second while it changes (what a power loss can take).
//!
//! A control plane outage therefore fills the spool on disk, not memory, and a restarted node replays it.
//! Batches are idempotent (records carry unique ids), so re-sending after a lost acknowledgement or a crash
//! never double-counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use switchyard_shared::protocol::USAGE_PATH;
use switchyard_shared::{UsageAck, UsageRecord};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::config::{Secret, Settings};
use crate::metrics::Metrics;
use crate::spool::{Spool, SpoolError};

/// How often the appender retries records whose write failed.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Records waiting in memory before new ones are refused (and counted as dropped).
const QUEUE_CAPACITY: usize = 100_000;

// Records are nearly every message; boxing them would add an allocation per request to save queue memory.
#[allow(clippy::large_enum_variant)]
enum Command {
    Record(UsageRecord),
    Flush(oneshot::Sender<()>),
}

/// The request path's handle on the reporter.
pub struct UsageSink {
    tx: mpsc::Sender<Command>,
    /// False only with governance off: records are discarded.
    enabled: bool,
    metrics: Arc<Metrics>,
    spool: Arc<Spool>,
    signals: Arc<Signals>,
    /// Records appended since the sender was last told a full batch is waiting.
    since_urgent: AtomicUsize,
    batch_max: usize,
}

impl UsageSink {
    /// Counts the request in the metrics and appends its record to the spool with one `write` on the calling
    /// thread (a few microseconds: the page cache, no fsync), so that once this returns the record survives the
    /// process being killed. Callers record before the client gets the end of its response. At the spool's
    /// bound the record is dropped and counted; if the write fails (disk full), the record is queued in memory
    /// for the appender to retry and the failure counted: never an error or a wait for the request.
    pub fn record(&self, record: UsageRecord) {
        self.metrics.observe(&record);
        if !self.enabled {
            return;
        }
        match self.spool.append_one(&record) {
            Ok(true) => {
                self.metrics.usage_spooled.inc();
                self.signals.appended.notify_one();
                if self.since_urgent.fetch_add(1, Ordering::Relaxed) + 1 >= self.batch_max {
                    self.since_urgent.store(0, Ordering::Relaxed);
                    self.signals.urgent.notify_one();
                }
            }
            Ok(false) => {
                self.metrics.usage_dropped.inc();
                tracing::error!(
                    dropped_total = self.metrics.usage_dropped.get(),
                    limit_bytes = self.spool.limit(),
                    "usage spool full; record dropped"
                );
            }
            Err(e) => {
                self.metrics.usage_spool_write_failures.inc();
                tracing::debug!(error = %e, "could not append to the usage spool; queued in memory");
                if self.tx.try_send(Command::Record(record)).is_err() {
                    self.metrics.usage_dropped.inc();
                    tracing::error!(
                        dropped_total = self.metrics.usage_dropped.get(),
                        "usage spool failing and memory queue full; record dropped"
                    );
                }
            }
        }
    }

    /// Resolves once every record queued before the call has been acknowledged by the control plane (or the
    /// reporter has stopped). Records refused by a full spool count as done.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Records waiting in the queue (not counting the batch being sent).
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The spool's unacknowledged bytes and its bound, for the scrape-time gauges.
    pub fn spool_usage(&self) -> (u64, u64) {
        (self.spool.pending_bytes(), self.spool.limit())
    }
}

pub struct Reporter {
    rx: mpsc::Receiver<Command>,
    spool: Arc<Spool>,
    sender: Sender,
    metrics: Arc<Metrics>,
    signals: Arc<Signals>,
}

struct Sender {
    client: reqwest::Client,
    url: String,
    token: Secret,
    node_id: String,
    interval: Duration,
    batch_max: usize,
    metrics: Arc<Metrics>,
    spool: Arc<Spool>,
}

/// Wakes the sender: `appended` when there is something new, `urgent` when it should not wait for the batch age.
#[derive(Default)]
struct Signals {
    appended: Notify,
    urgent: Notify,
}

/// Opens the node's spool (replaying what a previous run left) and returns the request path's handle and the
/// task to run.
pub fn channel(
    client: reqwest::Client,
    settings: &Settings,
    node_id: String,
    metrics: Arc<Metrics>,
) -> Result<(UsageSink, Reporter), SpoolError> {
    let spool = Arc::new(Spool::open(&settings.state_dir, &node_id, settings.usage_spool_max_bytes)?);
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let url = format!("{}{USAGE_PATH}", settings.control_plane_url.trim_end_matches('/'));
    let batch_max = settings.report_batch_max.max(1);
    let signals = Arc::new(Signals::default());
    let sender = Sender {
        client,
        url,
        token: settings.node_token.clone(),
        node_id,
        interval: settings.report_interval,
        batch_max,
        metrics: metrics.clone(),
        spool: spool.clone(),
    };
    Ok((
        UsageSink {
            tx,
            enabled: settings.governance,
            metrics: metrics.clone(),
            spool: spool.clone(),
            signals: signals.clone(),
            since_urgent: AtomicUsize::new(0),
            batch_max,
        },
        Reporter { rx, spool, sender, metrics, signals },
    ))
}

impl Reporter {
    /// Runs until `stop` fires and everything queued by then is appended and sent, or the sink is dropped.
    /// Aborting it (the server does after its shutdown grace) loses nothing appended: the next start replays it.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let Reporter { rx, spool, sender, metrics, signals } = self;
        let (acked_tx, acked_rx) = watch::channel(spool.acked());
        let (done_tx, done_rx) = watch::channel(false);
        let syncer = sync_loop(spool.clone(), done_rx.clone());
        let appender = append_loop(rx, spool, metrics, signals.clone(), acked_rx, stop.clone(), done_tx);
        tokio::join!(appender, sender.run(signals, done_rx, acked_tx, stop), syncer);
    }
}

/// Takes flush requests and the records whose direct write failed, appends the latter (retrying every second
/// while the spool fails, holding at most the queue's capacity in memory) until stopped; then reports itself done
/// to the sender.
async fn append_loop(
    mut rx: mpsc::Receiver<Command>,
    spool: Arc<Spool>,
    metrics: Arc<Metrics>,
    signals: Arc<Signals>,
    acked: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
    done: watch::Sender<bool>,
) {
    let mut records: Vec<UsageRecord> = Vec::new();
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    let mut stopping = false;
    loop {
        let mut closed = false;
        if !stopping && rx.is_empty() {
            let retry = !records.is_empty();
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(c) => take(c, &mut records, &mut waiters),
                    None => closed = true,
                },
                _ = tokio::time::sleep(RETRY_EVERY), if retry => {}
                _ = stop.changed() => stopping = true,
            }
        }
        loop {
            match rx.try_recv() {
                Ok(c) => take(c, &mut records, &mut waiters),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if !records.is_empty() {
            let dropped = match spool.append(&records) {
                Ok(out) => {
                    metrics.usage_spooled.inc_by(out.written as u64);
                    records.clear();
                    signals.appended.notify_one();
                    out.dropped
                }
                Err(e) => {
                    tracing::error!(error = %e, held = records.len(), "could not append to the usage spool; retrying");
                    // Held in memory for the next try, the oldest kept; what is past the bound is dropped.
                    let excess = records.len().saturating_sub(QUEUE_CAPACITY);
                    records.truncate(QUEUE_CAPACITY);
                    if stopping || closed { records.len() } else { excess }
                }
            };
            if dropped > 0 {
                metrics.usage_dropped.inc_by(dropped as u64);
                tracing::error!(
                    dropped,
                    dropped_total = metrics.usage_dropped.get(),
                    limit_bytes = spool.limit(),
                    "usage spool full or failing; records dropped"
                );
            }
        }
        if !waiters.is_empty() || stopping || closed {
            signals.urgent.notify_one();
        }
        for w in waiters.drain(..) {
            let target = spool.end();
            let mut acked = acked.clone();
            tokio::spawn(async move {
                if acked.wait_for(|a| *a >= target).await.is_ok() {
                    let _ = w.send(());
                }
            });
        }
        if closed || stopping {
            done.send_replace(true);
            return;
        }
    }
}

/// Flushes the spool to stable storage at most once a second while it grows (process death never loses written
/// bytes; this bounds what a power loss or kernel crash can take to about a second). Off the request path.
async fn sync_loop(spool: Arc<Spool>, mut done: watch::Receiver<bool>) {
    let mut synced = spool.end();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SYNC_EVERY) => {}
            _ = done.wait_for(|d| *d) => {}
        }
        let end = spool.end();
        if end != synced {
            let s = spool.clone();
            match tokio::task::spawn_blocking(move || s.sync()).await {
                Ok(Ok(())) => synced = end,
                Ok(Err(e)) => tracing::warn!(error = %e, "could not sync the usage spool"),
                Err(e) => tracing::warn!(error = %e, "usage spool sync task failed"),
            }
        }
        if *done.borrow() {
            return;
        }
    }
}

fn take(c: Command, records: &mut Vec<UsageRecord>, waiters: &mut Vec<oneshot::Sender<()>>) {
    match c {
        Command::Record(r) => records.push(r),
        Command::Flush(w) => waiters.push(w),
    }
}

/// How often appended records are synced to stable storage.
const SYNC_EVERY: Duration = Duration::from_secs(1);

impl Sender {
    /// Sends the spool in order until the appender is done and everything is acknowledged.
    async fn run(
        self,
        signals: Arc<Signals>,
        mut done: watch::Receiver<bool>,
        acked: watch::Sender<u64>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            match self.spool.read_from_acked(self.batch_max) {
                Ok(Some(chunk)) => {
                    if chunk.records > 0 {
                        self.send_until_acked(&chunk.body, chunk.records, &mut stop).await;
                    }
                    if let Err(e) = self.spool.ack(chunk.next) {
                        tracing::error!(error = %e, "could not reclaim acknowledged spool space");
                    }
                    acked.send_replace(self.spool.acked());
                    if chunk.records >= self.batch_max || *done.borrow() {
                        continue;
                    }
                }
                Ok(None) => {
                    if *done.borrow() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not read the usage spool; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            // Wait for something new, then let a batch gather for up to the report interval.
            tokio::select! {
                _ = signals.appended.notified() => {}
                _ = done.changed() => {}
            }
            if !*done.borrow() {
                tokio::select! {
                    _ = tokio::time::sleep(self.interval) => {}
                    _ = signals.urgent.notified() => {}
                    _ = done.changed() => {}
                }
            }
        }
    }

    /// Retries with backoff until the control plane acknowledges the batch. A stop signal cuts the current
    /// backoff short; at shutdown the server bounds the whole wait, and the spool keeps what was not sent.
    async fn send_until_acked(&self, records: &[u8], count: usize, stop: &mut watch::Receiver<bool>) {
        let node_id = match serde_json::to_string(&self.node_id) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "could not encode the node id");
                return;
            }
        };
        let mut body = Vec::with_capacity(records.len() + node_id.len() + 32);
        body.extend_from_slice(br#"{"node_id":"#);
        body.extend_from_slice(node_id.as_bytes());
        body.extend_from_slice(br#","records":["#);
        body.extend_from_slice(records);
        body.extend_from_slice(b"]}");
        let body = bytes::Bytes::from(body);
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.send(body.clone()).await {
                Ok(ack) => {
                    tracing::debug!(stored = ack.stored, duplicates = ack.duplicates, "usage batch acknowledged");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, records = count, "usage report failed; retrying");
                    self.metrics.usage_report_failures.inc();
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn send(&self, body: bytes::Bytes) -> Result<UsageAck, String> {
        let res = self
            .client
            .post(&self.url)
            .bearer_auth(self.token.expose())
            .header("content-type", "application/json")
            .body(body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("control plane answered {}", res.status()));
        }
        let bytes = res.bytes().await.map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    }
}
