//! Property tests of the SSE scanner: any chunking of a stream yields the same bytes, the same usage and the
//! same event count as the stream in one piece (bounded case counts: a few seconds in CI).

use bytes::Bytes;
use proptest::prelude::*;

use super::SseScanner;

/// One event of an OpenAI chat stream, with `\n` or `\r\n` line ends.
fn event() -> impl Strategy<Value = String> {
    let payload = prop_oneof![
        "[a-zA-Z0-9 ]{0,20}".prop_map(|t| format!(
            r#"{{"choices":[{{"delta":{{"content":{}}}}}],"usage":null}}"#,
            serde_json::to_string(&t).unwrap()
        )),
        (0u64..10_000, 0u64..10_000)
            .prop_map(|(p, c)| format!(r#"{{"choices":[],"usage":{{"prompt_tokens":{p},"completion_tokens":{c}}}}}"#)),
        Just("[DONE]".to_owned()),
    ];
    (payload, any::<bool>(), any::<bool>()).prop_map(|(p, crlf, comment)| {
        let nl = if crlf { "\r\n" } else { "\n" };
        let comment = if comment { format!(": keep-alive{nl}") } else { String::new() };
        format!("{comment}data: {p}{nl}{nl}")
    })
}

/// The scanner's output, usage and event count for `stream` cut at `cuts` (sorted, deduplicated offsets).
fn scan(stream: &[u8], cuts: &[usize], client_wants_usage: bool) -> (Vec<u8>, Option<(u64, u64)>, u64) {
    let mut s = SseScanner::new(client_wants_usage);
    let mut out = Vec::new();
    let mut from = 0;
    for &at in cuts.iter().chain(std::iter::once(&stream.len())) {
        if at > from {
            if let Some(b) = s.push(Bytes::copy_from_slice(&stream[from..at])) {
                out.extend_from_slice(&b);
            }
            from = at;
        }
    }
    out.extend_from_slice(&s.take_rest());
    (out, s.usage.map(|u| (u.prompt_tokens, u.completion_tokens)), s.data_events)
}

fn cuts(len: usize, raw: Vec<usize>) -> Vec<usize> {
    let mut cuts: Vec<usize> = raw.into_iter().map(|c| c % (len + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_chunking_of_a_valid_stream_yields_the_same_events(
        events in prop::collection::vec(event(), 0..12),
        raw_cuts in prop::collection::vec(any::<usize>(), 0..20),
        client_wants_usage in any::<bool>(),
    ) {
        let stream = events.concat().into_bytes();
        let whole = scan(&stream, &[], client_wants_usage);
        let chunked = scan(&stream, &cuts(stream.len(), raw_cuts), client_wants_usage);
        prop_assert_eq!(&whole, &chunked);
        if client_wants_usage {
            prop_assert_eq!(&whole.0, &stream, "a client that asked for usage gets every byte");
        }
    }

    /// Arbitrary bytes (no valid stream at all): no panic, and chunking still changes nothing.
    #[test]
    fn arbitrary_bytes_never_panic_and_chunking_changes_nothing(
        stream in prop::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..400),
        raw_cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let whole = scan(&stream, &[], false);
        let chunked = scan(&stream, &cuts(stream.len(), raw_cuts), false);
        prop_assert_eq!(whole, chunked);
    }
}

/// The case the property found: two usage-only chunks in one upstream read are both dropped, as they are when
/// they arrive in separate reads.
#[test]
fn every_usage_only_chunk_of_a_read_is_dropped() {
    let usage = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n";
    let stream = format!("{usage}{usage}data: [DONE]\n\n");
    let (out, usage, _) = scan(stream.as_bytes(), &[], false);
    assert_eq!(out, b"data: [DONE]\n\n");
    assert_eq!(usage, Some((1, 2)));
}
