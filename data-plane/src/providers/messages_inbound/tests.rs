//! Contract tests: Anthropic Messages requests from the Anthropic SDK's shapes, and recorded OpenAI-compatible
//! (OpenAI, DeepSeek) responses and streams turned back into Anthropic's.

use serde_json::{Value, json};

use super::*;
use crate::providers::sse::test_support::{events, run};

fn translate(body: Value) -> Value {
    serde_json::from_slice(&request(body.to_string().as_bytes(), "deepseek-chat").unwrap()).unwrap()
}

#[test]
fn a_messages_request_becomes_a_chat_request_field_by_field() {
    let out = translate(json!({
        "model": "claude-alias",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Need a tool.", "signature": "sig"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}]},
                {"type": "text", "text": "And tomorrow?"}
            ]}
        ],
        "stop_sequences": ["END"],
        "temperature": 0.5,
        "top_p": 0.8,
        "top_k": 5,
        "stream": true,
        "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "metadata": {"user_id": "u-1"}
    }));
    assert_eq!(
        out,
        json!({
            "model": "deepseek-chat",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather here?"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}
                ]},
                {"role": "assistant", "content": null, "reasoning_content": "Need a tool.", "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
                {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]}
            ],
            "max_tokens": 1024,
            "temperature": 0.5,
            "top_p": 0.8,
            "stop": ["END"],
            "stream": true,
            "stream_options": {"include_usage": true},
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": "required",
            "parallel_tool_calls": false,
            "user": "u-1"
        })
    );
}

#[test]
fn a_deepseek_tool_call_becomes_a_message_with_thinking_tool_use_and_cache_usage() {
    let out: Value =
        serde_json::from_slice(&response(include_bytes!("../fixtures/deepseek_reasoner_tool_call.json")).unwrap())
            .unwrap();
    assert_eq!(out["type"], "message");
    assert_eq!(out["role"], "assistant");
    assert_eq!(out["stop_reason"], "tool_use");
    assert_eq!(
        out["content"],
        json!([
            {"type": "thinking", "thinking": "The user wants the weather in Hangzhou. I should call get_weather.", "signature": ""},
            {"type": "tool_use", "id": "call_00_5Y1Ii0XdnUoQ0dbMtfqu8pcg", "name": "get_weather", "input": {"location": "Hangzhou"}}
        ])
    );
    assert_eq!(
        out["usage"],
        json!({"input_tokens": 18, "output_tokens": 71, "cache_read_input_tokens": 320, "cache_creation_input_tokens": 0})
    );
}

#[test]
fn upstream_errors_become_anthropic_errors() {
    let body =
        br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    let out: Value = serde_json::from_slice(&error(429, body)).unwrap();
    assert_eq!(out, json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit reached"}}));
    let out: Value = serde_json::from_slice(&error(500, b"oops")).unwrap();
    assert_eq!(out["error"]["type"], "api_error");
}

#[tokio::test]
async fn an_openai_tool_call_stream_becomes_anthropic_events() {
    let input = include_str!("../fixtures/openai_tool_call_stream.sse");
    for cut in [1, 13, input.len()] {
        let out = run(ToMessagesStream::default(), input, cut).await;
        let ev = events(&out);
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(ev[0].1["message"]["model"], "gpt-4o-2024-08-06");
        assert_eq!(
            ev[1].1["content_block"],
            json!({"type": "tool_use", "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "name": "get_weather", "input": {}})
        );
        let args: String =
            ev.iter().filter_map(|(_, v)| v["delta"]["partial_json"].as_str()).collect::<Vec<_>>().concat();
        assert_eq!(args, r#"{"location":"Paris"}"#);
        assert_eq!(ev[5].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(
            ev[5].1["usage"],
            json!({"input_tokens": 221, "output_tokens": 17, "cache_read_input_tokens": 1024, "cache_creation_input_tokens": 0})
        );
    }
}

#[tokio::test]
async fn a_deepseek_reasoning_stream_becomes_thinking_then_text_blocks() {
    let out = run(ToMessagesStream::default(), include_str!("../fixtures/deepseek_reasoner_stream.sse"), 40).await;
    let ev = events(&out);
    let blocks: Vec<&Value> =
        ev.iter().filter(|(n, _)| n.as_deref() == Some("content_block_start")).map(|(_, v)| v).collect();
    assert_eq!(blocks[0]["content_block"]["type"], "thinking");
    assert_eq!(blocks[1]["content_block"]["type"], "text");
    assert_eq!(blocks[1]["index"], 1);
    let text: String = ev.iter().filter_map(|(_, v)| v["delta"]["text"].as_str()).collect::<Vec<_>>().concat();
    assert_eq!(text, "Hello!");
    let thinking: String = ev.iter().filter_map(|(_, v)| v["delta"]["thinking"].as_str()).collect::<Vec<_>>().concat();
    assert_eq!(thinking, "Okay");
    let delta = &ev[ev.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 40);
    assert_eq!(ev.last().unwrap().0.as_deref(), Some("message_stop"));
}

#[test]
fn the_relay_reads_usage_from_translated_events() {
    let mut s = crate::providers::AnthropicStreamUsage::default();
    let u = s
        .scan(br#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"input_tokens":221,"output_tokens":17,"cache_read_input_tokens":1024,"cache_creation_input_tokens":0}}"#)
        .unwrap();
    assert_eq!((u.prompt_tokens, u.completion_tokens), (1245, 17));
}
