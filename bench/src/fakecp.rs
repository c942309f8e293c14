//! A stand-in control plane for the snapshot bench: it speaks the node protocol (snapshot long-poll and usage
//! ingest) from memory, so a real data-plane node can be handed a snapshot of a million keys at a moment the
//! bench chooses, without seeding a database with them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use switchyard_shared::protocol::{self, SNAPSHOT_PATH, USAGE_PATH};
use switchyard_shared::{UsageAck, UsageBatch};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A snapshot ready to serve: version, body and its digest.
pub struct Published {
    pub version: u64,
    pub body: Bytes,
    pub digest: String,
}

impl Published {
    pub fn new(version: u64, body: Bytes) -> Self {
        let digest = protocol::body_digest(&body);
        Self { version, body, digest }
    }
}

struct State {
    current: watch::Sender<Option<Arc<Published>>>,
    /// The highest version a node has reported as applied in a poll (nodes report only what is on disk).
    applied: watch::Sender<u64>,
    usage_records: AtomicU64,
}

pub struct FakeControlPlane {
    pub addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl FakeControlPlane {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            current: watch::channel(None).0,
            applied: watch::channel(0).0,
            usage_records: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, state.clone()));
        Ok(Self { addr, state, accept })
    }

    /// Nodes waiting on a poll get this snapshot at once.
    pub fn publish(&self, p: Published) {
        self.state.current.send_replace(Some(Arc::new(p)));
    }

    /// Resolves once a node has reported version `v` (or newer) as applied, i.e. persisted.
    pub async fn wait_applied(&self, v: u64, timeout: Duration) -> anyhow::Result<()> {
        let mut rx = self.state.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|a| *a >= v))
            .await
            .map_err(|_| anyhow::anyhow!("no node reported version {v} as applied within {timeout:?}"))??;
        Ok(())
    }

    pub fn usage_records(&self) -> u64 {
        self.state.usage_records.load(Ordering::Relaxed)
    }
}

impl Drop for FakeControlPlane {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = state.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| handle(state.clone(), req));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

fn reply(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    res
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    if req.method() == Method::GET && path == SNAPSHOT_PATH {
        let query: HashMap<String, String> = req
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect();
        let applied: u64 = query.get("applied").and_then(|v| v.parse().ok()).unwrap_or(0);
        state.applied.send_if_modified(|a| {
            let newer = applied > *a;
            *a = (*a).max(applied);
            newer
        });
        let wait = Duration::from_secs(query.get("wait_secs").and_then(|v| v.parse().ok()).unwrap_or(0).min(60));
        let mut rx = state.current.subscribe();
        let newer = tokio::time::timeout(wait, rx.wait_for(|p| p.as_ref().is_some_and(|p| p.version > applied)))
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|p| p.clone());
        let Some(p) = newer else { return Ok(reply(StatusCode::NO_CONTENT, Bytes::new())) };
        let mut res = reply(StatusCode::OK, p.body.clone());
        let headers = res.headers_mut();
        if let Ok(v) = p.digest.parse() {
            headers.insert(protocol::SNAPSHOT_SHA256_HEADER, v);
        }
        headers.insert(protocol::SNAPSHOT_VERSION_HEADER, p.version.into());
        headers.insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
        return Ok(res);
    }
    if req.method() == Method::POST && path == USAGE_PATH {
        let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
            return Ok(reply(StatusCode::BAD_REQUEST, Bytes::new()));
        };
        let Ok(batch) = serde_json::from_slice::<UsageBatch>(&body) else {
            return Ok(reply(StatusCode::BAD_REQUEST, Bytes::new()));
        };
        let n = batch.records.len() as u64;
        state.usage_records.fetch_add(n, Ordering::Relaxed);
        let ack = UsageAck { received: n, stored: n, duplicates: 0 };
        let body = serde_json::to_vec(&ack).unwrap_or_default();
        return Ok(reply(StatusCode::OK, Bytes::from(body)));
    }
    Ok(reply(StatusCode::NOT_FOUND, Bytes::new()))
}
