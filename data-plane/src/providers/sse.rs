//! Re-framing an upstream event stream in another dialect: complete SSE events are cut from the byte stream,
//! their `data:` payload handed to a [`Translate`] implementation, and whatever it writes is sent on. Upstream
//! errors pass through untouched so the relay's failure handling applies as for any stream.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;

use super::ByteStream;
use crate::streaming::first_event_len;

/// One dialect's events turned into another's.
pub(super) trait Translate: Unpin + Send + 'static {
    /// One complete upstream event: its `event:` name (if any) and its `data:` payload.
    fn event(&mut self, name: Option<&[u8]>, data: &[u8], out: &mut Vec<u8>);
    /// The upstream ended cleanly; finish the client's stream if the upstream did not.
    fn end(&mut self, out: &mut Vec<u8>);
}

pub(super) struct Translated<T> {
    upstream: ByteStream,
    partial: BytesMut,
    translate: T,
    ended: bool,
}

impl<T: Translate> Translated<T> {
    pub(super) fn new(upstream: ByteStream, translate: T) -> Self {
        Self { upstream, partial: BytesMut::new(), translate, ended: false }
    }

    fn drain(&mut self, out: &mut Vec<u8>) {
        while let Some(len) = first_event_len(&self.partial) {
            let event = self.partial.split_to(len);
            let (name, data) = parse_event(&event);
            if let Some(data) = data {
                self.translate.event(name, &data, out);
            }
        }
    }
}

impl<T: Translate> Stream for Translated<T> {
    type Item = reqwest::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(chunk))) => {
                    this.partial.extend_from_slice(&chunk);
                    let mut out = Vec::new();
                    this.drain(&mut out);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Bytes::from(out))));
                    }
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    // A last event without its blank line still counts.
                    this.partial.extend_from_slice(b"\n\n");
                    let mut out = Vec::new();
                    this.drain(&mut out);
                    this.translate.end(&mut out);
                    return Poll::Ready((!out.is_empty()).then(|| Ok(Bytes::from(out))));
                }
            }
        }
    }
}

/// The `event:` name and the `data:` lines (joined by newlines) of one event.
fn parse_event(event: &[u8]) -> (Option<&[u8]>, Option<Vec<u8>>) {
    let mut name = None;
    let mut data: Option<Vec<u8>> = None;
    for line in event.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(v) = line.strip_prefix(b"event:") {
            name = Some(v.trim_ascii());
        } else if let Some(v) = line.strip_prefix(b"data:") {
            let v = v.strip_prefix(b" ").unwrap_or(v);
            match &mut data {
                Some(d) => {
                    d.push(b'\n');
                    d.extend_from_slice(v);
                }
                None => data = Some(v.to_vec()),
            }
        }
    }
    (name, data)
}

/// Writes one `data:` event (with an `event:` line when `name` is given).
pub(super) fn write_event(out: &mut Vec<u8>, name: Option<&str>, data: &impl serde::Serialize) {
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    // Serialising our own JSON values into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, data);
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
pub(super) mod test_support {
    use futures_util::StreamExt;

    use super::*;

    /// Feeds `input` through `translate` cut into pieces at every `cut`-th byte, returning the client's bytes.
    pub(in crate::providers) async fn run<T: Translate>(translate: T, input: &str, cut: usize) -> String {
        let pieces: Vec<reqwest::Result<Bytes>> =
            input.as_bytes().chunks(cut.max(1)).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let upstream: ByteStream = Box::pin(futures_util::stream::iter(pieces));
        let mut t = Translated::new(upstream, translate);
        let mut out = Vec::new();
        while let Some(chunk) = t.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        String::from_utf8(out).unwrap()
    }

    /// The `data:` payloads of an SSE text, parsed as JSON (`[DONE]` as the string "[DONE]").
    pub(in crate::providers) fn events(sse: &str) -> Vec<(Option<String>, serde_json::Value)> {
        sse.split("\n\n")
            .filter(|e| !e.trim().is_empty() && !e.starts_with(':'))
            .map(|e| {
                let (name, data) = parse_event(e.as_bytes());
                let data = data.unwrap();
                let value = serde_json::from_slice(&data)
                    .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8(data).unwrap()));
                (name.map(|n| String::from_utf8(n.to_vec()).unwrap()), value)
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "sse_fuzz.rs"]
mod fuzz;
