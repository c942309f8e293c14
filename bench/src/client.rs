//! One-shot HTTP/1.1 calls for the bench's control traffic (seeding, readiness, counting): a fresh connection
//! per call, JSON in and out. The load itself goes through [`crate::load`].

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// `http://127.0.0.1:8080/v1` → `127.0.0.1:8080`. Only plain-HTTP loopback URLs are expected here.
pub fn addr_of(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.strip_prefix("http://").with_context(|| format!("`{url}` is not an http:// URL"))?;
    let host = rest.split('/').next().unwrap_or(rest);
    let addr: SocketAddr = host.parse().with_context(|| format!("`{host}` is not IP:PORT"))?;
    if !addr.ip().is_loopback() {
        bail!("{addr} is not a loopback address: the bench only targets this machine");
    }
    Ok(addr)
}

pub async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Bytes>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path).header(HOST, addr.to_string());
    if let Some(token) = bearer {
        req = req.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    if body.is_some() {
        req = req.header(CONTENT_TYPE, "application/json");
    }
    let req = req.body(Full::new(body.unwrap_or_default()))?;
    let res = sender.send_request(req).await?;
    let status = res.status();
    let bytes = res.into_body().collect().await?.to_bytes();
    drop(sender);
    conn.abort();
    Ok((status, bytes))
}

/// POSTs JSON and decodes a JSON answer, failing on any non-2xx status with the body in the message.
pub async fn post_json<T: serde::de::DeserializeOwned>(
    addr: SocketAddr,
    path: &str,
    bearer: &str,
    body: &serde_json::Value,
) -> anyhow::Result<T> {
    let (status, bytes) = call(addr, Method::POST, path, Some(bearer), Some(Bytes::from(body.to_string()))).await?;
    if !status.is_success() {
        bail!("POST {path} answered {status}: {}", String::from_utf8_lossy(&bytes));
    }
    serde_json::from_slice(&bytes).with_context(|| format!("decoding the answer of POST {path}"))
}

pub async fn get_json<T: serde::de::DeserializeOwned>(addr: SocketAddr, path: &str, bearer: &str) -> anyhow::Result<T> {
    let (status, bytes) = call(addr, Method::GET, path, Some(bearer), None).await?;
    if !status.is_success() {
        bail!("GET {path} answered {status}: {}", String::from_utf8_lossy(&bytes));
    }
    serde_json::from_slice(&bytes).with_context(|| format!("decoding the answer of GET {path}"))
}

/// Waits until `GET path` answers 200 (a control plane's `/healthz`).
pub async fn wait_ok(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if let Ok((StatusCode::OK, _)) = call(addr, Method::GET, path, None, None).await {
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!("GET {path} on {addr} did not answer 200 within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(serde::Deserialize)]
struct Ready {
    snapshot_version: u64,
}

/// Waits until the node's `/readyz` answers 200 with at least `version` applied; returns how long that took.
pub async fn wait_ready(addr: SocketAddr, version: u64, timeout: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if let Ok((status, body)) = call(addr, Method::GET, "/readyz", None, None).await
            && status == StatusCode::OK
            && serde_json::from_slice::<Ready>(&body).is_ok_and(|r| r.snapshot_version >= version)
        {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!("{addr} was not ready with snapshot version {version} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
