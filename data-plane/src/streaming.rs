//! Relaying a server-sent-event stream from the upstream to the client: bytes are forwarded as they arrive,
//! cut only at event boundaries, never re-serialised. On the way the relay notes the first byte, picks the
//! usage out of the upstream's usage chunk, and writes the usage record when the stream ends — normally,
//! by upstream failure, or because the client went away (the relay is dropped, which also drops the upstream
//! connection and so cancels the upstream request). The record is written (durably, see
//! [`UsageSink::record`]) before the client is sent the stream's end: the final event (`[DONE]`, Anthropic's
//! `message_stop`, the Responses API's `response.completed`/`failed`/`incomplete`) or, without one, the end
//! of the body or the error event that ends it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use memchr::memmem;
use switchyard_shared::ErrorBody;
use tokio::time::Sleep;

use crate::metering::{Meter, Outcome, Usage};
use crate::reporting::UsageSink;

type UpstreamStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// Limits on a relayed stream: the longest silence between two chunks, and the latest it may end.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    pub idle: Duration,
    pub deadline: tokio::time::Instant,
}

pub struct Relay {
    upstream: UpstreamStream,
    scanner: SseScanner,
    meter: Meter,
    sink: Arc<UsageSink>,
    first_byte: Option<Instant>,
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
    deadline: Pin<Box<Sleep>>,
    state: State,
    /// The usage record is written (at most once, whatever happens after).
    recorded: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Streaming,
    /// The upstream ended (cleanly or not), or failed after the final event; the record is written.
    Done,
}

impl Relay {
    pub fn new(
        upstream: UpstreamStream,
        client_wants_usage: bool,
        meter: Meter,
        sink: Arc<UsageSink>,
        limits: StreamLimits,
    ) -> Self {
        sink.metrics().inflight_streams.inc();
        Self {
            upstream,
            scanner: SseScanner::new(client_wants_usage),
            meter,
            sink,
            first_byte: None,
            idle: limits.idle,
            idle_timer: Box::pin(tokio::time::sleep(limits.idle)),
            deadline: Box::pin(tokio::time::sleep_until(limits.deadline)),
            state: State::Streaming,
            recorded: false,
        }
    }

    /// The client receives Anthropic events: usage is read from `message_start`/`message_delta` and nothing
    /// is dropped.
    pub fn read_anthropic_usage(&mut self) {
        self.scanner.anthropic = Some(crate::providers::AnthropicStreamUsage::default());
    }

    /// Writes the usage record, once.
    fn record(&mut self, error_code: Option<&'static str>) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        self.sink.metrics().inflight_streams.dec();
        let record = self.meter.finish(Outcome {
            status: 200,
            error_code,
            usage: self.scanner.usage,
            estimate: Some(Usage {
                prompt_tokens: self.meter.prompt_estimate,
                completion_tokens: self.scanner.data_events,
                ..Usage::default()
            }),
            first_byte: self.first_byte,
        });
        self.sink.record(record);
    }

    /// Ends the client's stream with an OpenAI-style error event after whatever complete events are pending;
    /// after the final event was relayed (the record written), ends it quietly instead.
    fn fail(&mut self, code: &'static str, message: &str) -> Option<Bytes> {
        self.state = State::Done;
        let mut out = self.scanner.take_rest();
        if self.recorded {
            return (!out.is_empty()).then(|| out.freeze());
        }
        out.extend_from_slice(&error_event(code, message));
        self.record(Some(code));
        Some(out.freeze())
    }
}

impl Stream for Relay {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.state == State::Done {
            return Poll::Ready(None);
        }
        loop {
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Pending => {
                    if this.deadline.as_mut().poll(cx).is_ready() {
                        tracing::warn!(request_id = %this.meter.request_id, "upstream stream exceeded its total time");
                        let out = this.fail("upstream_timeout", "The upstream provider took too long to finish.");
                        return Poll::Ready(out.map(Ok));
                    }
                    if this.idle_timer.as_mut().poll(cx).is_ready() {
                        tracing::warn!(request_id = %this.meter.request_id, "upstream stream went silent");
                        let out = this.fail("upstream_timeout", "The upstream provider stopped sending.");
                        return Poll::Ready(out.map(Ok));
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Some(Ok(chunk))) => {
                    if this.first_byte.is_none() {
                        this.first_byte = Some(Instant::now());
                    }
                    let idle = this.idle;
                    this.idle_timer.as_mut().reset(tokio::time::Instant::now() + idle);
                    if let Some(out) = this.scanner.push(chunk) {
                        if this.scanner.terminal {
                            // Durable before the client sees the end of its stream.
                            this.record(None);
                        }
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!(request_id = %this.meter.request_id, error = %e, "upstream stream failed");
                    let out = this.fail("upstream_stream_error", "The upstream provider failed mid-stream.");
                    return Poll::Ready(out.map(Ok));
                }
                Poll::Ready(None) => {
                    let rest = this.scanner.take_rest();
                    this.state = State::Done;
                    this.record(None);
                    return Poll::Ready((!rest.is_empty()).then(|| Ok(rest.freeze())));
                }
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Dropped before the upstream ended: the client disconnected. Dropping `upstream` closes the upstream
        // connection, which cancels the request there. What was consumed is still billed.
        self.record(Some("client_disconnected"));
    }
}

fn error_event(code: &str, message: &str) -> Vec<u8> {
    let body = ErrorBody::new(message, "api_error", code);
    let mut out = b"data: ".to_vec();
    out.extend_from_slice(&body.to_json());
    out.extend_from_slice(b"\n\n");
    out
}

/// Splits a byte stream into whole SSE events and inspects only those that can carry usage.
struct SseScanner {
    partial: BytesMut,
    client_wants_usage: bool,
    usage: Option<Usage>,
    data_events: u64,
    /// Set when the events are Anthropic's.
    anthropic: Option<crate::providers::AnthropicStreamUsage>,
    /// The stream's final event has been seen (see [`is_final_event`]).
    terminal: bool,
}

impl SseScanner {
    fn new(client_wants_usage: bool) -> Self {
        Self {
            partial: BytesMut::new(),
            client_wants_usage,
            usage: None,
            data_events: 0,
            anthropic: None,
            terminal: false,
        }
    }

    /// Takes a chunk; returns the complete events to forward now (if any). A trailing partial event is held
    /// until its end arrives.
    fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        let complete = if self.partial.is_empty() {
            match last_event_end(&chunk) {
                Some(end) => {
                    if end < chunk.len() {
                        self.partial.extend_from_slice(&chunk[end..]);
                    }
                    chunk.slice(..end)
                }
                None => {
                    self.partial.extend_from_slice(&chunk);
                    return None;
                }
            }
        } else {
            self.partial.extend_from_slice(&chunk);
            let end = last_event_end(&self.partial)?;
            self.partial.split_to(end).freeze()
        };
        Some(self.inspect(complete))
    }

    fn take_rest(&mut self) -> BytesMut {
        std::mem::take(&mut self.partial)
    }

    /// Looks at each event of `events`; drops the usage-only chunk the gateway asked for on the client's
    /// behalf when the client did not ask for it itself.
    fn inspect(&mut self, events: Bytes) -> Bytes {
        // Every usage-only chunk is dropped, however the upstream's bytes were chunked (found by the fuzz tests:
        // dropping only the last one of a batch made the output depend on chunking).
        let mut drop_ranges: Vec<std::ops::Range<usize>> = Vec::new();
        let mut start = 0;
        while let Some(len) = first_event_len(&events[start..]) {
            let event = &events[start..start + len];
            if is_final_event(event) {
                self.terminal = true;
            }
            if let Some(payload) = data_payload(event) {
                if payload == b"[DONE]" {
                    self.terminal = true;
                } else {
                    self.data_events += 1;
                }
                if let Some(a) = &mut self.anthropic {
                    if let Some(u) = a.scan(payload) {
                        self.usage = Some(u);
                    }
                } else if has_usage_object(payload)
                    && let Ok(chunk) = serde_json::from_slice::<UsageChunk>(payload)
                {
                    if let Some(u) = chunk.usage {
                        self.usage = Some(u);
                        self.data_events = self.data_events.saturating_sub(1);
                        if !self.client_wants_usage && chunk.choices.is_none_or(|c| c.is_empty()) {
                            drop_ranges.push(start..start + len);
                        }
                    } else if let Some(u) = chunk.response.and_then(|r| r.usage) {
                        self.usage = Some(u);
                    }
                }
            }
            start += len;
        }
        if drop_ranges.is_empty() {
            return events;
        }
        let mut out = BytesMut::with_capacity(events.len());
        let mut kept_from = 0;
        for r in drop_ranges {
            out.extend_from_slice(&events[kept_from..r.start]);
            kept_from = r.end;
        }
        out.extend_from_slice(&events[kept_from..]);
        out.freeze()
    }
}

#[derive(serde::Deserialize)]
struct UsageChunk {
    usage: Option<Usage>,
    choices: Option<Vec<serde::de::IgnoredAny>>,
    /// The Responses API reports usage in `response.completed` as `response.usage`.
    response: Option<NestedUsage>,
}

#[derive(serde::Deserialize)]
struct NestedUsage {
    usage: Option<Usage>,
}

/// `"usage":` followed by an object (OpenAI sends `"usage":null` on every other chunk).
fn has_usage_object(payload: &[u8]) -> bool {
    memmem::find_iter(payload, b"\"usage\"").any(|i| {
        payload[i + 7..].iter().copied().find(|b| !b.is_ascii_whitespace() && *b != b':').is_some_and(|b| b == b'{')
    })
}

/// A named event that ends its stream: Anthropic's `message_stop`, the Responses API's last event. (OpenAI's
/// `data: [DONE]` is recognised by its payload.)
fn is_final_event(event: &[u8]) -> bool {
    let Some(name) = event.strip_prefix(b"event:") else { return false };
    let name = name.trim_ascii_start();
    let end = memchr::memchr2(b'\r', b'\n', name).unwrap_or(name.len());
    matches!(
        name[..end].trim_ascii_end(),
        b"message_stop" | b"response.completed" | b"response.failed" | b"response.incomplete"
    )
}

/// The concatenated `data:` lines of one event, trimmed.
fn data_payload(event: &[u8]) -> Option<&[u8]> {
    // Upstreams send one data line per event; take the first.
    let start = memmem::find(event, b"data:")?;
    if start != 0 && event[start - 1] != b'\n' {
        return None;
    }
    let rest = &event[start + 5..];
    let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
    Some(rest[..end].trim_ascii())
}

/// Length of the first complete event (through its blank line), if there is one.
pub(crate) fn first_event_len(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\n', &buf[from..]) {
        let nl = from + i;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => from = nl + 1,
        }
    }
    None
}

/// End of the last complete event in `buf`.
fn last_event_end(buf: &[u8]) -> Option<usize> {
    let mut end = None;
    let mut start = 0;
    while let Some(len) = first_event_len(&buf[start..]) {
        start += len;
        end = Some(start);
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n";
    const USAGE: &str =
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12}}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    fn run(client_wants_usage: bool, pieces: &[&[u8]]) -> (Vec<u8>, SseScanner) {
        let mut s = SseScanner::new(client_wants_usage);
        let mut out = Vec::new();
        for p in pieces {
            if let Some(b) = s.push(Bytes::copy_from_slice(p)) {
                out.extend_from_slice(&b);
            }
        }
        out.extend_from_slice(&s.take_rest());
        (out, s)
    }

    #[test]
    fn whole_events_pass_through_and_usage_is_read() {
        let all = format!("{CHUNK}{CHUNK}{USAGE}{DONE}");
        let (out, s) = run(true, &[all.as_bytes()]);
        assert_eq!(out, all.as_bytes());
        let u = s.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (5, 7));
        assert_eq!(s.data_events, 2);
    }

    #[test]
    fn events_split_across_chunks_are_reassembled_at_boundaries() {
        let all = format!("{CHUNK}{USAGE}{DONE}");
        let bytes = all.as_bytes();
        for cut in 1..bytes.len() {
            let (out, s) = run(true, &[&bytes[..cut], &bytes[cut..]]);
            assert_eq!(out, bytes, "cut at {cut}");
            assert!(s.usage.is_some(), "cut at {cut}");
        }
    }

    #[test]
    fn the_usage_chunk_is_dropped_when_only_the_gateway_asked_for_it() {
        let all = format!("{CHUNK}{USAGE}{DONE}");
        let (out, s) = run(false, &[all.as_bytes()]);
        assert_eq!(out, format!("{CHUNK}{DONE}").as_bytes());
        assert!(s.usage.is_some());
    }

    #[test]
    fn crlf_events_are_understood() {
        let all = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\r\n\r\ndata: [DONE]\r\n\r\n";
        let (out, s) = run(true, &[all.as_bytes()]);
        assert_eq!(out, all.as_bytes());
        assert_eq!(s.usage.unwrap().completion_tokens, 2);
    }

    #[test]
    fn responses_api_usage_is_read_from_response_completed() {
        let all = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":3,\"output_tokens\":4,\"total_tokens\":7}}}\n\n";
        let (out, s) = run(false, &[all.as_bytes()]);
        assert_eq!(out, all.as_bytes(), "Responses events are never dropped");
        let u = s.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (3, 4));
    }

    #[test]
    fn the_final_event_is_noticed_so_the_record_precedes_it() {
        for (stream, last) in [
            (format!("{CHUNK}{USAGE}"), DONE.to_owned()),
            (
                "event: message_delta\ndata: {}\n\n".to_owned(),
                "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".to_owned(),
            ),
            ("event: response.created\ndata: {}\n\n".to_owned(), "event: response.completed\ndata: {}\n\n".to_owned()),
        ] {
            let mut s = SseScanner::new(true);
            assert!(s.push(Bytes::from(stream.clone())).is_some());
            assert!(!s.terminal, "{stream}");
            assert!(s.push(Bytes::from(last.clone())).is_some());
            assert!(s.terminal, "{last}");
        }
        assert!(!is_final_event(b"event: message_stopped\ndata: {}\n\n"));
        assert!(is_final_event(b"event:message_stop\r\ndata: {}\r\n\r\n"));
    }

    #[test]
    fn usage_null_is_not_usage() {
        assert!(!has_usage_object(b"{\"usage\":null}"));
        assert!(has_usage_object(b"{\"usage\": {\"prompt_tokens\":1}}"));
    }
}

#[cfg(test)]
#[path = "streaming_fuzz.rs"]
mod fuzz;
