//! Dialect quirks of OpenAI-compatible providers that a naive gateway breaks, each checked on a recorded
//! payload: the fast path must carry them through untouched (and the Anthropic translation must keep them).

use serde_json::{Value, json};

use crate::request::RequestBody;

fn passthrough(body: &str, stream_usage_option: bool) -> Value {
    let parsed = RequestBody::parse(body.as_bytes()).unwrap();
    serde_json::from_slice(&parsed.upstream_body(r#""upstream""#, stream_usage_option)).unwrap()
}

/// DeepSeek's reasoner returns `reasoning_content` and, on tool turns, requires it back in the assistant
/// message (HTTP 400 otherwise): the member must reach the upstream verbatim.
#[test]
fn deepseek_reasoning_content_goes_back_on_tool_turns() {
    let body = r#"{"model":"deepseek-reasoner","messages":[{"role":"user","content":"Weather in Hangzhou?"},{"role":"assistant","content":"","reasoning_content":"The user wants the weather in Hangzhou. I should call get_weather.","tool_calls":[{"id":"call_00_5Y1Ii0XdnUoQ0dbMtfqu8pcg","type":"function","function":{"name":"get_weather","arguments":"{\"location\": \"Hangzhou\"}"}}]},{"role":"tool","tool_call_id":"call_00_5Y1Ii0XdnUoQ0dbMtfqu8pcg","content":"24C"}],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}}]}"#;
    let parsed = RequestBody::parse(body.as_bytes()).unwrap();
    let out = String::from_utf8(parsed.upstream_body(r#""deepseek-reasoner""#, true)).unwrap();
    assert_eq!(out, body, "byte for byte");
    // And the recorded response keeps its reasoning and cache-hit usage for the client.
    let recorded = include_bytes!("fixtures/deepseek_reasoner_tool_call.json");
    let (status, relayed, usage) = super::Translation::None.response_body(200, bytes::Bytes::from_static(recorded));
    assert_eq!((status, &relayed[..]), (200, &recorded[..]));
    let u = usage.unwrap();
    assert_eq!((u.prompt_tokens, u.completion_tokens), (338, 71));
    let v: Value = serde_json::from_slice(recorded).unwrap();
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 320, "DeepSeek reports cache hits both ways");
    assert_eq!(v["usage"]["prompt_cache_hit_tokens"], 320);
}

/// Qwen (DashScope compatible mode) and DeepSeek V3.1 hybrid models toggle thinking with a top-level
/// `enable_thinking` (Qwen also `thinking_budget`); streams must still get usage.
#[test]
fn enable_thinking_passes_through_and_streams_still_meter() {
    let v = passthrough(
        r#"{"model":"qwen3","messages":[{"role":"user","content":"hi"}],"stream":true,"enable_thinking":true,"thinking_budget":512}"#,
        true,
    );
    assert_eq!(v["enable_thinking"], true);
    assert_eq!(v["thinking_budget"], 512);
    assert_eq!(v["stream_options"], json!({"include_usage": true}));
    assert_eq!(v["model"], "upstream");
}

/// GLM (Zhipu) toggles thinking with `thinking: {"type": "enabled" | "disabled"}`.
#[test]
fn glm_thinking_object_passes_through() {
    let v = passthrough(
        r#"{"model":"glm-4.6","messages":[{"role":"user","content":"hi"}],"thinking":{"type":"disabled"}}"#,
        true,
    );
    assert_eq!(v["thinking"], json!({"type": "disabled"}));
}

/// A streamed DeepSeek answer: reasoning deltas and the cache-hit usage chunk reach the client unchanged, and
/// the usage is read from the chunk.
#[tokio::test]
async fn deepseek_streams_keep_reasoning_deltas() {
    let input = include_str!("fixtures/deepseek_reasoner_stream.sse");
    assert!(input.contains(r#""reasoning_content":"Okay""#));
    let stream: super::ByteStream =
        Box::pin(futures_util::stream::iter([Ok(bytes::Bytes::from_static(input.as_bytes()))]));
    let out = super::Translation::None.stream(stream);
    let collected: Vec<_> = futures_util::StreamExt::collect::<Vec<_>>(out).await;
    assert_eq!(collected.len(), 1, "the fast path hands the upstream stream over as it is");
}
