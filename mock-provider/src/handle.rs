//! The test-facing handle to a running mock: its address, counters, fault injection and shutdown.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;
use tokio::task::JoinHandle;

use crate::state::State;
use crate::{Failure, RateLimit};

/// A running mock provider. Dropping it leaves the server running until the runtime ends; call
/// [`MockHandle::shutdown`] to stop it earlier.
pub struct MockHandle {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

/// The most recent request the mock received, whatever its path or outcome.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The raw `Authorization` header value, e.g. `Bearer sk-...`.
    pub authorization: Option<String>,
    pub headers: HeaderMap,
    /// The body parsed as JSON, or `Null` when it was empty or not JSON.
    pub body: serde_json::Value,
}

impl RecordedRequest {
    /// A header's value when it is present and valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

impl MockHandle {
    pub(crate) fn new(addr: SocketAddr, state: Arc<State>, accept: JoinHandle<()>) -> Self {
        Self { addr, state, accept }
    }

    /// The address the listener is bound to (with the real port when bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The OpenAI base URL clients should use, e.g. `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", connect_addr(self.addr))
    }

    /// The base URL of the mock's Gemini mode, e.g. `http://127.0.0.1:PORT/v1beta/openai`.
    pub fn gemini_base_url(&self) -> String {
        format!("http://{}{}", connect_addr(self.addr), crate::gemini::BASE_PATH)
    }

    /// Requests received on any path, including rejected ones.
    pub fn requests(&self) -> u64 {
        self.state.requests()
    }

    pub fn last_request(&self) -> Option<RecordedRequest> {
        let recorded = self.state.last()?;
        Some(RecordedRequest {
            method: recorded.method.to_string(),
            path: recorded.uri.path().to_owned(),
            authorization: recorded.headers.get(AUTHORIZATION).and_then(|value| value.to_str().ok()).map(str::to_owned),
            body: serde_json::from_slice(&recorded.body).unwrap_or(serde_json::Value::Null),
            headers: recorded.headers,
        })
    }

    /// TCP connections currently open.
    pub fn open_connections(&self) -> u64 {
        self.state.open_connections()
    }

    /// Streams whose client went away before the stream finished.
    pub fn cancelled_streams(&self) -> u64 {
        self.state.cancelled_streams()
    }

    /// Enforces a rate limit of the mock's own (`None` lifts it); see [`RateLimit`].
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        self.state.set_rate_limit(limit);
    }

    /// Requests answered 429 by the mock's own rate limit.
    pub fn rate_limited(&self) -> u64 {
        self.state.rate_limited()
    }

    /// Makes every subsequent request fail this way; `None` restores normal answers.
    pub fn set_failure(&self, failure: Option<Failure>) {
        self.state.set_failure(failure);
    }

    /// Waits until `condition` holds. It is re-checked whenever a connection opens or closes or a stream is
    /// cancelled; the request counter does not wake it (a request is counted before its response is sent).
    pub async fn wait_until(&self, condition: impl Fn(&Self) -> bool) {
        loop {
            let changed = self.state.changed().notified();
            tokio::pin!(changed);
            // Registered before the check so a change between the check and the await is not missed.
            changed.as_mut().enable();
            if condition(self) {
                return;
            }
            changed.await;
        }
    }

    /// Stops accepting and closes every open connection. The listener closes as soon as the runtime next polls
    /// the accept task; use [`MockHandle::shutdown_and_wait`] when the caller needs it closed on return.
    pub fn shutdown(self) {
        self.accept.abort();
    }

    /// Like [`MockHandle::shutdown`], returning once the listener is closed.
    pub async fn shutdown_and_wait(self) {
        self.accept.abort();
        // The accept task never finishes on its own, so this only reports the cancellation.
        let _cancelled = self.accept.await;
    }
}

/// Clients cannot connect to an unspecified address, so a wildcard bind is reached over loopback.
fn connect_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port()),
        _ => addr,
    }
}
