//! `POST /v1/messages`: Anthropic's Messages API with the same deterministic rules as chat — the answer is
//! `chunks` tokens, or a `tool_use` of the first offered tool when the user spoke last in text — in Anthropic's
//! recorded shapes: the message object, the event sequence (`message_start`, `content_block_start`, `ping`,
//! `content_block_delta`, `content_block_stop`, `message_delta`, `message_stop`) and its error body.
//!
//! Usage: `input_tokens` = words of the request's text, `output_tokens` = `chunks`, and every answer reports
//! [`CACHE_READ`] cache-read and [`CACHE_WRITE`] cache-write input tokens so cache metering can be tested.

use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use crate::answer::{Token, completion_text, words};
use crate::body::{End, Pacing, ResponseBody, SseSink, Stop, event_stream};
use crate::server::{Ctx, json_response, ok_json, sleep};

pub const CACHE_READ: u64 = 2;
pub const CACHE_WRITE: u64 = 1;
pub const TOOL_USE_ID: &str = "toolu_mock_1";
/// The input the mock's tool use sends, streamed in two `input_json_delta` pieces.
pub const TOOL_INPUT: (&str, &str) = ("{\"city\":", " \"Paris\"}");

pub(crate) async fn handle(ctx: &Ctx<'_>, body: &[u8]) -> Response<ResponseBody> {
    let request: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            ctx.pause(None).await;
            return error(StatusCode::BAD_REQUEST, "invalid_request_error", &format!("invalid JSON: {e}"));
        }
    };
    if request.get("max_tokens").and_then(Value::as_u64).is_none() {
        ctx.pause(None).await;
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "max_tokens: Field required");
    }
    let pacing = match ctx.begin(None).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    let model = request.get("model").and_then(Value::as_str).unwrap_or_default().to_owned();
    let input_tokens = prompt_words(&request);
    let tool = tool_to_use(&request);
    let id = format!("msg_mock_{}", ctx.number);
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        let (response, sink) = event_stream(ctx.state);
        let stream = MessageStream { id, model, tool, pacing, input_tokens };
        tokio::spawn(stream.run(sink));
        return response;
    }
    let (content, stop_reason) = match &tool {
        Some(name) => {
            let input: Value = serde_json::from_str(&format!("{}{}", TOOL_INPUT.0, TOOL_INPUT.1)).unwrap_or_default();
            (json!([{"type": "tool_use", "id": TOOL_USE_ID, "name": name, "input": input}]), "tool_use")
        }
        None => (json!([{"type": "text", "text": completion_text(pacing.chunks)}]), "end_turn"),
    };
    ok_json(&json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": usage(input_tokens, pacing.chunks as u64),
    }))
}

fn usage(input_tokens: u64, output_tokens: u64) -> Value {
    json!({
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": CACHE_WRITE,
        "cache_read_input_tokens": CACHE_READ,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    })
}

/// Words in the system prompt and every text block or string content.
fn prompt_words(request: &Value) -> u64 {
    fn text_words(content: &Value) -> u64 {
        match content {
            Value::String(s) => words(s),
            Value::Array(blocks) => blocks
                .iter()
                .map(|b| match b.get("type").and_then(Value::as_str) {
                    Some("text") => b.get("text").and_then(Value::as_str).map_or(0, words),
                    Some("tool_result") => b.get("content").map_or(0, text_words),
                    _ => 0,
                })
                .sum(),
            _ => 0,
        }
    }
    let system = request.get("system").map_or(0, text_words);
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .map_or(0, |m| m.iter().map(|m| m.get("content").map_or(0, text_words)).sum());
    system + messages
}

/// The first offered tool's name, when the last turn is the user's and holds no tool result.
fn tool_to_use(request: &Value) -> Option<String> {
    if request.pointer("/tool_choice/type").and_then(Value::as_str) == Some("none") {
        return None;
    }
    let last = request.get("messages")?.as_array()?.last()?;
    if last.get("role")?.as_str()? != "user" {
        return None;
    }
    let has_result = last
        .get("content")
        .and_then(Value::as_array)
        .is_some_and(|b| b.iter().any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result")));
    if has_result {
        return None;
    }
    Some(request.get("tools")?.as_array()?.first()?.get("name")?.as_str()?.to_owned())
}

/// Anthropic's error body.
pub(crate) fn error(status: StatusCode, kind: &str, message: &str) -> Response<ResponseBody> {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    json_response(status, bytes::Bytes::from(body.to_string()))
}

/// An injected status, in Anthropic's error shape (529 is Anthropic's "overloaded").
pub(crate) fn mock_status(status: u16) -> Response<ResponseBody> {
    let kind = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error(code, kind, &format!("mock failure {status}"))
}

struct MessageStream {
    id: String,
    model: String,
    tool: Option<String>,
    pacing: Pacing,
    input_tokens: u64,
}

impl MessageStream {
    async fn run(self, sink: SseSink) {
        if let Ok(end) = self.produce(&sink).await {
            end.apply(sink).await;
        }
    }

    async fn produce(&self, sink: &SseSink) -> Result<End, Stop> {
        let mut start_usage = usage(self.input_tokens, 1);
        start_usage["output_tokens"] = json!(1);
        let message = json!({
            "id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": start_usage,
        });
        sink.named_event("message_start", &json!({"type": "message_start", "message": message})).await?;
        let stop_reason = if let Some(name) = &self.tool {
            let block = json!({"type": "tool_use", "id": TOOL_USE_ID, "name": name, "input": {}});
            sink.named_event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block": block}),
            )
            .await?;
            for piece in [TOOL_INPUT.0, TOOL_INPUT.1] {
                let delta = json!({"type": "input_json_delta", "partial_json": piece});
                sink.named_event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0, "delta": delta}),
                )
                .await?;
            }
            "tool_use"
        } else {
            let block = json!({"type": "text", "text": ""});
            sink.named_event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block": block}),
            )
            .await?;
            sink.named_event("ping", &json!({"type": "ping"})).await?;
            for i in 0..self.pacing.chunks {
                if self.pacing.cut_after(i) {
                    return Ok(End::Cut);
                }
                sleep(self.pacing.chunk_delay).await;
                let delta = json!({"type": "text_delta", "text": Token(i).to_string()});
                sink.named_event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0, "delta": delta}),
                )
                .await?;
            }
            "end_turn"
        };
        sink.named_event("content_block_stop", &json!({"type": "content_block_stop", "index": 0})).await?;
        let delta = json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": self.pacing.chunks},
        });
        sink.named_event("message_delta", &delta).await?;
        sink.named_event("message_stop", &json!({"type": "message_stop"})).await?;
        Ok(End::Finished)
    }
}
