//! The counters, injected failure and last request shared by the accept loop, the handlers and the handle.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use hyper::{HeaderMap, Method, Uri};
use tokio::sync::Notify;

use crate::{Failure, MockConfig, RateLimit};

pub(crate) struct State {
    pub(crate) config: MockConfig,
    requests: AtomicU64,
    open_connections: AtomicU64,
    cancelled_streams: AtomicU64,
    /// Encoded [`Failure`] so the per-request check is one atomic load instead of a lock.
    failure: AtomicU32,
    last: Mutex<Option<Recorded>>,
    /// The mock's own rate limit and its current window (start, requests admitted in it).
    limit: Mutex<Option<(RateLimit, Option<Window>)>>,
    rate_limited: AtomicU64,
    /// Woken on connection and stream-cancellation changes so tests can wait instead of sleeping.
    changed: Notify,
}

/// A rate-limit window: when it started and the requests admitted in it.
type Window = (Instant, u64);

/// The raw request kept as received; decoding is deferred to `last_request()` to keep it off the hot path.
#[derive(Clone)]
pub(crate) struct Recorded {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

const FAILURE_NONE: u32 = 0;
const FAILURE_HANG: u32 = 1;
const FAILURE_GARBAGE: u32 = 2;
const FAILURE_CUT_STREAMS: u32 = 3;
const FAILURE_STATUS: u32 = 1 << 16;

impl State {
    pub(crate) fn new(config: MockConfig) -> Self {
        Self {
            config,
            requests: AtomicU64::new(0),
            open_connections: AtomicU64::new(0),
            cancelled_streams: AtomicU64::new(0),
            failure: AtomicU32::new(FAILURE_NONE),
            last: Mutex::new(None),
            limit: Mutex::new(None),
            rate_limited: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    /// Counts a request and returns its 1-based number, which also names the completion id.
    pub(crate) fn next_request(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub(crate) fn record(&self, recorded: Recorded) {
        let previous = {
            let mut last = self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            last.replace(recorded)
        };
        // Freed outside the lock so concurrent requests do not wait on the deallocation.
        drop(previous);
    }

    pub(crate) fn last(&self) -> Option<Recorded> {
        self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub(crate) fn connection_opened(&self) {
        self.open_connections.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    pub(crate) fn connection_closed(&self) {
        self.open_connections.fetch_sub(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    pub(crate) fn open_connections(&self) -> u64 {
        self.open_connections.load(Ordering::Relaxed)
    }

    pub(crate) fn stream_cancelled(&self) {
        self.cancelled_streams.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    pub(crate) fn cancelled_streams(&self) -> u64 {
        self.cancelled_streams.load(Ordering::Relaxed)
    }

    pub(crate) fn changed(&self) -> &Notify {
        &self.changed
    }

    pub(crate) fn set_rate_limit(&self, limit: Option<RateLimit>) {
        *self.limit.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = limit.map(|l| (l, None));
    }

    /// Counts the request against the rate limit; `Err(time left in the window)` when it is over it.
    pub(crate) fn take_rate(&self) -> Result<(), (RateLimit, std::time::Duration)> {
        let mut guard = self.limit.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some((limit, window)) = guard.as_mut() else { return Ok(()) };
        let now = Instant::now();
        let (start, used) = match window {
            Some((start, used)) if now.duration_since(*start) < limit.window => (*start, used),
            _ => {
                *window = Some((now, 0));
                let Some((start, used)) = window.as_mut() else { return Ok(()) };
                (*start, used)
            }
        };
        if *used >= limit.requests {
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
            return Err((*limit, limit.window.saturating_sub(now.duration_since(start))));
        }
        *used += 1;
        Ok(())
    }

    pub(crate) fn rate_limited(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }

    pub(crate) fn set_failure(&self, failure: Option<Failure>) {
        let encoded = match failure {
            None => FAILURE_NONE,
            Some(Failure::Hang) => FAILURE_HANG,
            Some(Failure::Garbage) => FAILURE_GARBAGE,
            Some(Failure::CutStreams) => FAILURE_CUT_STREAMS,
            Some(Failure::Status(status)) => FAILURE_STATUS | u32::from(status),
        };
        self.failure.store(encoded, Ordering::Relaxed);
    }

    pub(crate) fn failure(&self) -> Option<Failure> {
        match self.failure.load(Ordering::Relaxed) {
            FAILURE_NONE => None,
            FAILURE_HANG => Some(Failure::Hang),
            FAILURE_GARBAGE => Some(Failure::Garbage),
            FAILURE_CUT_STREAMS => Some(Failure::CutStreams),
            // Only `Status` sets the high bit, so the low 16 bits are the status it carried.
            encoded => Some(Failure::Status((encoded & 0xffff) as u16)),
        }
    }
}
