//! Response bodies: a whole buffer, or server-sent events fed frame by frame from a producer task, and how
//! streamed tokens are paced.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::Response;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::state::State;

/// Returned by a stream body to make hyper drop the connection mid-stream (`fail_after_chunks`).
#[derive(Debug)]
pub(crate) struct StreamAborted;

impl std::fmt::Display for StreamAborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mock stream aborted on request")
    }
}

impl std::error::Error for StreamAborted {}

type Item = Result<Frame<Bytes>, StreamAborted>;

/// One body type for every response so the service has a single concrete type and no boxing.
pub(crate) enum ResponseBody {
    Full(Option<Bytes>),
    Stream { frames: mpsc::Receiver<Item>, aborting: bool },
}

impl ResponseBody {
    pub(crate) fn full(bytes: Bytes) -> Self {
        Self::Full(Some(bytes))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = StreamAborted;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        match self.get_mut() {
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|bytes| Ok(Frame::data(bytes)))),
            Self::Stream { frames, aborting } => {
                if *aborting {
                    return Poll::Ready(Some(Err(StreamAborted)));
                }
                match frames.poll_recv(cx) {
                    // hyper flushes its write buffer after a pending body, but drops it on a body error. Pending
                    // once (self-woken) first means the chunks sent before the abort reach the client.
                    Poll::Ready(Some(Err(StreamAborted))) => {
                        *aborting = true;
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                    other => other,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Self::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Self::Full(None) => SizeHint::with_exact(0),
            Self::Stream { .. } => SizeHint::default(),
        }
    }
}

/// The client went away, or the event could not be encoded; either way the producer stops.
pub(crate) struct Stop;

/// The producer side of an event stream. Every event is its own frame so that each one is flushed on its own,
/// which is what lets the gateway's streaming and time-to-first-token be measured.
pub(crate) struct SseSink {
    frames: mpsc::Sender<Item>,
    state: Arc<State>,
}

/// Enough to keep a producer a few events ahead of the socket without buffering a whole long stream.
const STREAM_BUFFER: usize = 8;

/// A `text/event-stream` response and the sink that feeds it.
pub(crate) fn event_stream(state: &Arc<State>) -> (Response<ResponseBody>, SseSink) {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let mut response = Response::new(ResponseBody::Stream { frames: rx, aborting: false });
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let sink = SseSink { frames: tx, state: Arc::clone(state) };
    (response, sink)
}

impl SseSink {
    /// Sends `data: <json>\n\n`.
    pub(crate) async fn event(&self, event: &impl Serialize) -> Result<(), Stop> {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(b"data: ");
        serde_json::to_writer(&mut buf, event).map_err(|_| Stop)?;
        buf.extend_from_slice(b"\n\n");
        self.send(Bytes::from(buf)).await
    }

    /// Sends `event: <name>\ndata: <json>\n\n`, as Anthropic's stream does.
    pub(crate) async fn named_event(&self, name: &str, event: &impl Serialize) -> Result<(), Stop> {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(b"event: ");
        buf.extend_from_slice(name.as_bytes());
        buf.extend_from_slice(b"\ndata: ");
        serde_json::to_writer(&mut buf, event).map_err(|_| Stop)?;
        buf.extend_from_slice(b"\n\n");
        self.send(Bytes::from(buf)).await
    }

    pub(crate) async fn done(&self) -> Result<(), Stop> {
        self.send(Bytes::from_static(b"data: [DONE]\n\n")).await
    }

    /// Drops the connection after the events already sent have been flushed.
    pub(crate) async fn abort(self) {
        // A closed channel means the client already left; there is nothing left to abort.
        let _ = self.frames.send(Err(StreamAborted)).await;
    }

    async fn send(&self, bytes: Bytes) -> Result<(), Stop> {
        if self.frames.send(Ok(Frame::data(bytes))).await.is_err() {
            // The receiver is the response body, dropped by hyper once the client is gone.
            self.state.stream_cancelled();
            return Err(Stop);
        }
        Ok(())
    }
}

/// How a request's tokens are produced: how many, how far apart when streamed, and where a stream is cut.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pacing {
    pub(crate) chunks: usize,
    /// Waited before each streamed token chunk.
    pub(crate) chunk_delay: Duration,
    /// Drop the connection once this many token chunks were sent (`fail_after_chunks`).
    pub(crate) fail_after: Option<usize>,
}

impl Pacing {
    pub(crate) fn cut_after(&self, sent: usize) -> bool {
        self.fail_after == Some(sent)
    }
}

/// How a stream producer ended when the client did not leave first.
pub(crate) enum End {
    Finished,
    Cut,
}

impl End {
    /// Performs the cut if one was asked for; consumes the sink so nothing can follow.
    pub(crate) async fn apply(self, sink: SseSink) {
        if let Self::Cut = self {
            sink.abort().await;
        }
    }
}
