//! Contract tests against recorded Anthropic payloads: the request built field by field, every response and
//! stream event type fed through.

use serde_json::{Value, json};

use super::*;
use crate::providers::anthropic_stream::ToChat;
use crate::providers::sse::test_support::{events, run};

fn translate(body: Value) -> Value {
    serde_json::from_slice(&request(body.to_string().as_bytes(), "claude-sonnet-4-5").unwrap()).unwrap()
}

#[test]
fn a_chat_request_becomes_a_messages_request_field_by_field() {
    let out = translate(json!({
        "model": "claude",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this image, and the weather?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
            {"role": "user", "content": "Thanks"}
        ],
        "temperature": 1.7,
        "top_p": 0.9,
        "stop": "END",
        "stream": true,
        "stream_options": {"include_usage": true},
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Weather by city",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
            {"type": "function", "function": {"name": "get_time"}}
        ],
        "tool_choice": "required",
        "parallel_tool_calls": false,
        "user": "u-42"
    }));
    assert_eq!(out["model"], "claude-sonnet-4-5");
    assert_eq!(out["max_tokens"], DEFAULT_MAX_TOKENS);
    assert_eq!(
        out["system"],
        json!([{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Answer in French."}])
    );
    let messages = out["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "tool results and the next user text merge into one user turn: {messages:#?}");
    assert_eq!(
        messages[0]["content"],
        json!([
            {"type": "text", "text": "What is in this image, and the weather?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
        ])
    );
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(
        messages[1]["content"],
        json!([
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}}
        ])
    );
    assert_eq!(messages[2]["role"], "user");
    assert_eq!(
        messages[2]["content"],
        json!([
            {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "18C"}]},
            {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
            {"type": "text", "text": "Thanks"}
        ])
    );
    assert_eq!(out["temperature"], 1.0, "OpenAI's 0-2 range is clamped to Anthropic's 0-1");
    assert_eq!(out["top_p"], 0.9);
    assert_eq!(out["stop_sequences"], json!(["END"]));
    assert_eq!(out["stream"], true);
    assert!(out.get("stream_options").is_none());
    assert_eq!(
        out["tools"],
        json!([
            {"name": "get_weather", "description": "Weather by city",
             "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
            {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
        ])
    );
    assert_eq!(out["tool_choice"], json!({"type": "any", "disable_parallel_tool_use": true}));
    assert_eq!(out["metadata"], json!({"user_id": "u-42"}));
}

#[test]
fn max_tokens_and_tool_choice_variants_map() {
    let out = translate(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10,
        "max_completion_tokens": 20, "tool_choice": {"type": "function", "function": {"name": "f"}}}));
    assert_eq!(out["max_tokens"], 20, "max_completion_tokens wins");
    assert_eq!(out["tool_choice"], json!({"type": "tool", "name": "f"}));
    assert_eq!(out["messages"], json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}]));
    let out = translate(json!({"model": "m", "messages": [], "tool_choice": "none", "stop": ["a", "b"]}));
    assert_eq!(out["tool_choice"], json!({"type": "none"}));
    assert_eq!(out["stop_sequences"], json!(["a", "b"]));
    assert!(out.get("system").is_none() && out.get("stream").is_none());
}

#[test]
fn reasoning_effort_turns_on_extended_thinking_within_max_tokens() {
    let out =
        translate(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "medium",
        "max_tokens": 1000, "temperature": 0.3}));
    assert_eq!(out["thinking"], json!({"type": "enabled", "budget_tokens": 4096}));
    assert_eq!(out["max_tokens"], 4096 + DEFAULT_MAX_TOKENS);
    assert!(out.get("temperature").is_none(), "thinking refuses a changed temperature");
    let out = translate(json!({"model": "m", "messages": [], "thinking": {"type": "enabled", "budget_tokens": 2000}}));
    assert_eq!(out["thinking"], json!({"type": "enabled", "budget_tokens": 2000}));
    let out = translate(json!({"model": "m", "messages": [], "reasoning_effort": "minimal", "temperature": 0.3}));
    assert!(out.get("thinking").is_none());
    assert_eq!(out["temperature"], 0.3);
}

#[test]
fn malformed_requests_are_refused_as_bad_requests() {
    for body in [
        json!({"model": "m"}),
        json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
        json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}),
        json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{oops"}}]}]}),
        json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}]}]}),
    ] {
        assert!(matches!(request(body.to_string().as_bytes(), "m"), Err(ProxyError::BadRequest(_))), "{body}");
    }
}

#[test]
fn a_tool_use_message_becomes_a_completion_with_tool_calls_and_cache_usage() {
    let out: Value =
        serde_json::from_slice(&response(include_bytes!("../fixtures/anthropic_tool_use.json")).unwrap()).unwrap();
    assert_eq!(out["object"], "chat.completion");
    assert_eq!(out["id"], "msg_01XFDUDYJgAACzvnptvVoYEL");
    let choice = &out["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "I'll check the weather.");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["id"], "toolu_01A09q90qw90lq917835lq9");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"location": "San Francisco, CA", "unit": "celsius"}));
    assert_eq!(
        out["usage"],
        json!({"prompt_tokens": 2572, "completion_tokens": 89, "total_tokens": 2661,
               "prompt_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 100}})
    );
    let usage = crate::metering::usage_of_body(&serde_json::to_vec(&out).unwrap()).unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (2572, 89));
}

#[test]
fn thinking_becomes_reasoning_content_and_stop_reasons_map() {
    let out: Value =
        serde_json::from_slice(&response(include_bytes!("../fixtures/anthropic_thinking.json")).unwrap()).unwrap();
    let message = &out["choices"][0]["message"];
    assert_eq!(message["reasoning_content"], "Let me analyze this step by step...");
    assert_eq!(message["content"], "Based on my analysis, 27 * 453 = 12231.");
    assert!(message.get("tool_calls").is_none());
    assert_eq!(out["choices"][0]["finish_reason"], "stop");
    for (anthropic, openai) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
    ] {
        assert_eq!(finish_reason(Some(anthropic)), Some(openai));
    }
    assert!(response(b"{\"type\":\"error\"}").is_none());
}

#[test]
fn errors_become_openai_errors_with_anthropics_type_as_code() {
    let body = br#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}"#;
    let out: Value = serde_json::from_slice(&error(body)).unwrap();
    assert_eq!(
        out,
        json!({"error": {"message": "Number of request tokens has exceeded your per-minute rate limit",
                         "type": "rate_limit_error", "param": null, "code": "rate_limit_error"}})
    );
    let out: Value = serde_json::from_slice(&error(
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    ))
    .unwrap();
    assert_eq!(
        (out["error"]["type"].as_str(), out["error"]["code"].as_str()),
        (Some("api_error"), Some("overloaded_error"))
    );
    let out: Value = serde_json::from_slice(&error(b"<html>bad gateway</html>")).unwrap();
    assert_eq!(out["error"]["code"], "upstream_error");
    assert_eq!(crate::providers::Translation::ChatToAnthropic.client_status(529), 503);
    assert_eq!(crate::providers::Translation::ChatToAnthropic.client_status(400), 400);
}

#[tokio::test]
async fn a_tool_use_stream_becomes_chunks_with_tool_calls_and_a_final_usage_chunk() {
    let input = include_str!("../fixtures/anthropic_tool_use.sse");
    for cut in [1, 7, 64, input.len()] {
        let out = run(ToChat::default(), input, cut).await;
        assert!(out.contains(": ping\n\n"), "pings stay as comments");
        let ev = events(&out);
        let chunks: Vec<&Value> = ev.iter().map(|(_, v)| v).collect();
        assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
        assert_eq!(chunks[0]["object"], "chat.completion.chunk");
        assert_eq!(chunks[0]["model"], "claude-sonnet-4-5-20250929");
        let text: String =
            chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect::<Vec<_>>().concat();
        assert_eq!(text, "Okay, let's check the weather for San Francisco, CA:");
        let calls: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0)).collect();
        assert_eq!(calls[0]["id"], "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        assert!(calls.iter().all(|c| c["index"] == 0));
        let args: String =
            calls.iter().filter_map(|c| c["function"]["arguments"].as_str()).collect::<Vec<_>>().concat();
        assert_eq!(serde_json::from_str::<Value>(&args).unwrap(), json!({"location": "San Francisco, CA"}));
        let finish: Vec<&str> = chunks.iter().filter_map(|c| c["choices"][0]["finish_reason"].as_str()).collect();
        assert_eq!(finish, ["tool_calls"]);
        let usage_chunk = chunks[chunks.len() - 2];
        assert_eq!(usage_chunk["choices"], json!([]));
        assert_eq!(
            usage_chunk["usage"],
            json!({"prompt_tokens": 2572, "completion_tokens": 89, "total_tokens": 2661,
                   "prompt_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 100}})
        );
        assert_eq!(*chunks[chunks.len() - 1], json!("[DONE]"));
    }
}

#[tokio::test]
async fn a_thinking_stream_becomes_reasoning_content_deltas() {
    let out = run(ToChat::default(), include_str!("../fixtures/anthropic_thinking.sse"), 50).await;
    let ev = events(&out);
    let reasoning: Vec<&str> =
        ev.iter().filter_map(|(_, c)| c["choices"][0]["delta"]["reasoning_content"].as_str()).collect();
    assert_eq!(reasoning, ["I need to find the GCD of 1071 and 462."]);
    let finish: Vec<&str> = ev.iter().filter_map(|(_, c)| c["choices"][0]["finish_reason"].as_str()).collect();
    assert_eq!(finish, ["length"]);
    assert_eq!(ev[ev.len() - 2].1["usage"]["completion_tokens"], 120);
    assert_eq!(ev[ev.len() - 2].1["usage"]["prompt_tokens"], 32);
}

#[tokio::test]
async fn a_mid_stream_error_event_becomes_an_openai_error_event() {
    let out = run(ToChat::default(), include_str!("../fixtures/anthropic_error_midstream.sse"), 1000).await;
    let ev = events(&out);
    let last = &ev.last().unwrap().1;
    assert_eq!(last["error"]["code"], "overloaded_error");
    assert_eq!(last["error"]["message"], "Overloaded");
    assert!(!out.contains("[DONE]"));
}

#[tokio::test]
async fn a_stream_cut_short_ends_with_an_error_event() {
    let input = include_str!("../fixtures/anthropic_tool_use.sse");
    let cut = input.find("event: message_delta").unwrap();
    let out = run(ToChat::default(), &input[..cut], 1000).await;
    assert_eq!(events(&out).last().unwrap().1["error"]["code"], "upstream_stream_error");
}

#[test]
fn the_relay_reads_anthropic_stream_usage_cumulatively() {
    let mut s = StreamUsage::default();
    let start = br#"{"type":"message_start","message":{"usage":{"input_tokens":472,"output_tokens":2,"cache_creation_input_tokens":100,"cache_read_input_tokens":2000}}}"#;
    let u = s.scan(start).unwrap();
    assert_eq!((u.prompt_tokens, u.completion_tokens), (2572, 2));
    assert!(
        s.scan(br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"usage"}}"#).is_none()
    );
    let u =
        s.scan(br#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":89}}"#).unwrap();
    assert_eq!((u.prompt_tokens, u.completion_tokens), (2572, 89));
    let u = usage_of_message(include_bytes!("../fixtures/anthropic_tool_use.json")).unwrap();
    assert_eq!((u.prompt_tokens, u.completion_tokens), (2572, 89));
}

#[test]
fn the_upstream_authenticates_with_x_api_key_and_declares_the_version() {
    let entry = ProviderEntry {
        id: 3,
        name: "anthropic".into(),
        kind: switchyard_shared::snapshot::ProviderKind::Anthropic,
        base_url: "https://api.anthropic.com/v1".into(),
        credential: Some("sk-ant-secret".into()),
        timeouts: Default::default(),
        caps: Default::default(),
        model_caps: Vec::new(),
    };
    let u = upstream(&entry).unwrap();
    assert_eq!(u.url(Endpoint::ChatCompletions).unwrap().as_str(), "https://api.anthropic.com/v1/messages");
    assert_eq!(u.url(Endpoint::Messages).unwrap().as_str(), "https://api.anthropic.com/v1/messages");
    assert!(u.url(Endpoint::Embeddings).is_none());
    let (name, value) = u.auth.as_ref().unwrap();
    assert_eq!((*name, value.to_str().unwrap()), ("x-api-key", "sk-ant-secret"));
    assert!(value.is_sensitive());
    assert_eq!(u.extra_header.as_ref().unwrap().1.to_str().unwrap(), API_VERSION);
}
