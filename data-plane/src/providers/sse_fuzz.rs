//! Property tests of the dialect translators: the Anthropic → OpenAI stream translation gives the same client
//! bytes whatever the chunking of the upstream stream, and arbitrary bytes never panic it.

use bytes::Bytes;
use futures_util::StreamExt as _;
use proptest::prelude::*;

use super::Translated;
use crate::providers::anthropic_stream::ToChat;

fn translate(stream: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut pieces = Vec::new();
    let mut from = 0;
    for &at in cuts.iter().chain(std::iter::once(&stream.len())) {
        if at > from {
            pieces.push(Ok(Bytes::copy_from_slice(&stream[from..at])));
            from = at;
        }
    }
    let upstream: crate::providers::ByteStream = Box::pin(futures_util::stream::iter(pieces));
    let mut t = Translated::new(upstream, ToChat::default());
    let mut out = Vec::new();
    // The upstream is always ready, so polling with a no-op waker drives the stream to its end.
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    while let std::task::Poll::Ready(Some(Ok(b))) = t.poll_next_unpin(&mut cx) {
        out.extend_from_slice(&b);
    }
    normalise(&out)
}

/// The output with the `created` timestamps blanked (two runs may straddle a second).
fn normalise(out: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(out);
    let mut res = String::with_capacity(text.len());
    let mut rest = text.as_ref();
    while let Some(i) = rest.find("\"created\":") {
        res.push_str(&rest[..i + 10]);
        rest = rest[i + 10..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
    res.push_str(rest);
    res.into_bytes()
}

fn cuts(len: usize, raw: Vec<usize>) -> Vec<usize> {
    let mut cuts: Vec<usize> = raw.into_iter().map(|c| c % (len + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

const RECORDED: &[&str] = &[
    include_str!("fixtures/anthropic_tool_use.sse"),
    include_str!("fixtures/anthropic_thinking.sse"),
    include_str!("fixtures/anthropic_error_midstream.sse"),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_chunking_of_a_recorded_anthropic_stream_translates_the_same(
        which in 0..RECORDED.len(),
        raw_cuts in prop::collection::vec(any::<usize>(), 0..30),
    ) {
        let stream = RECORDED[which].as_bytes();
        let whole = translate(stream, &[]);
        prop_assert!(!whole.is_empty());
        prop_assert_eq!(whole, translate(stream, &cuts(stream.len(), raw_cuts)));
    }

    #[test]
    fn arbitrary_upstream_bytes_never_panic_the_translator(
        stream in prop::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..400),
        prefix in prop_oneof![Just(&b""[..]), Just(&b"event: message_start\ndata: "[..]), Just(&b"data: {\"type\":\"content_block_delta\","[..])],
    ) {
        let stream = [prefix, &stream[..]].concat();
        let _ = translate(&stream, &[]);
    }
}
