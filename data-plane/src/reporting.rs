//! Reporting usage to the control plane off the request path: the request path drops a record into a bounded
//! queue and moves on; one task batches records (by count or age), sends each batch until the control plane
//! acknowledges it, and flushes on demand and at shutdown. Batches are idempotent (records carry unique ids),
//! so re-sending after a lost acknowledgement never double-counts.

use std::sync::Arc;
use std::time::Duration;

use switchyard_shared::protocol::USAGE_PATH;
use switchyard_shared::{UsageAck, UsageBatch, UsageRecord};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::config::{Secret, Settings};
use crate::metrics::Metrics;

/// How often a busy reporter looks at its queue.
const DRAIN_TICK: Duration = Duration::from_millis(5);

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
}

impl UsageSink {
    /// Counts the request in the metrics and queues its record for the control plane.
    pub fn record(&self, record: UsageRecord) {
        self.metrics.observe(&record);
        if !self.enabled {
            return;
        }
        if self.tx.try_send(Command::Record(record)).is_err() {
            self.metrics.usage_dropped.inc();
            tracing::error!(
                dropped_total = self.metrics.usage_dropped.get(),
                "usage queue full or reporter stopped; record dropped"
            );
        }
    }

    /// Resolves once every record queued before the call has been acknowledged by the control plane (or the
    /// reporter has stopped).
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
}

pub struct Reporter {
    rx: mpsc::Receiver<Command>,
    client: reqwest::Client,
    url: String,
    token: Secret,
    node_id: String,
    interval: Duration,
    batch_max: usize,
    metrics: Arc<Metrics>,
}

pub fn channel(
    client: reqwest::Client,
    settings: &Settings,
    node_id: String,
    metrics: Arc<Metrics>,
) -> (UsageSink, Reporter) {
    let (token, interval, batch_max, enabled) =
        (settings.node_token.clone(), settings.report_interval, settings.report_batch_max, settings.governance);
    let control_plane_url = &settings.control_plane_url;
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let url = format!("{}{USAGE_PATH}", control_plane_url.trim_end_matches('/'));
    (
        UsageSink { tx, enabled, metrics: metrics.clone() },
        Reporter { rx, client, url, token, node_id, interval, batch_max: batch_max.max(1), metrics },
    )
}

impl Reporter {
    /// Runs until `stop` fires and everything queued by then is sent, or the sink is dropped.
    ///
    /// While records flow, the queue is drained on a short tick rather than by waking this task for every
    /// record (that cross-thread wake-up was about a tenth of a node's CPU); when idle it parks on the queue,
    /// so one wake-up starts each busy period.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut pending: Vec<UsageRecord> = Vec::new();
        let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
        let mut oldest: Option<Instant> = None;
        let mut stopping = false;
        loop {
            let mut closed = false;
            if !stopping && pending.is_empty() && self.rx.is_empty() {
                tokio::select! {
                    cmd = self.rx.recv() => match cmd {
                        Some(c) => self.take(c, &mut pending, &mut waiters, &mut oldest),
                        None => closed = true,
                    },
                    _ = stop.changed() => stopping = true,
                }
            } else if !stopping {
                tokio::select! {
                    _ = tokio::time::sleep(DRAIN_TICK) => {}
                    _ = stop.changed() => stopping = true,
                }
            }
            loop {
                match self.rx.try_recv() {
                    Ok(c) => self.take(c, &mut pending, &mut waiters, &mut oldest),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            let due = oldest.is_some_and(|t| t.elapsed() >= self.interval);
            if !pending.is_empty()
                && (due || pending.len() >= self.batch_max || !waiters.is_empty() || stopping || closed)
            {
                while !pending.is_empty() {
                    let rest = pending.split_off(pending.len().min(self.batch_max));
                    let batch = std::mem::replace(&mut pending, rest);
                    self.send_until_acked(batch).await;
                }
                oldest = None;
            }
            if pending.is_empty() {
                for w in waiters.drain(..) {
                    let _ = w.send(());
                }
            }
            if closed || (stopping && pending.is_empty() && self.rx.is_empty()) {
                return;
            }
        }
    }

    fn take(
        &self,
        c: Command,
        pending: &mut Vec<UsageRecord>,
        waiters: &mut Vec<oneshot::Sender<()>>,
        oldest: &mut Option<Instant>,
    ) {
        match c {
            Command::Record(r) => {
                pending.push(r);
                oldest.get_or_insert_with(Instant::now);
            }
            Command::Flush(w) => waiters.push(w),
        }
    }

    /// Retries with backoff until the control plane acknowledges the batch. At shutdown the server bounds this
    /// by aborting the task after its grace period (spooling to disk is the durable answer to that case).
    async fn send_until_acked(&self, records: Vec<UsageRecord>) {
        let count = records.len();
        let batch = UsageBatch { node_id: self.node_id.clone(), records };
        let body = match serde_json::to_vec(&batch) {
            Ok(b) => bytes::Bytes::from(b),
            Err(e) => {
                tracing::error!(error = %e, "could not encode a usage batch");
                return;
            }
        };
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
                    tokio::time::sleep(backoff).await;
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
