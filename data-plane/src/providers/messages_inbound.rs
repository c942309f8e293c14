//! Anthropic-SDK clients (`POST /v1/messages`) served by OpenAI-compatible upstreams: the Messages request
//! becomes a chat completion (system, turns, images, tool use and results, tools, tool choice, stop
//! sequences, sampling), and the completion — whole or streamed — becomes a Messages response with Anthropic's
//! event sequence and usage (`input_tokens` excludes cache reads, which go in `cache_read_input_tokens`).

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::sse::{Translate, write_event};
use crate::error::ProxyError;

fn bad(message: impl Into<String>) -> ProxyError {
    ProxyError::BadRequest(message.into())
}

// ---- request: Anthropic message → OpenAI chat completion ----

#[derive(Deserialize)]
struct MessagesRequest<'a> {
    max_tokens: Option<u64>,
    #[serde(default)]
    system: Option<Content>,
    messages: Vec<Turn>,
    stop_sequences: Option<Vec<String>>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    stream: Option<bool>,
    #[serde(borrow)]
    tools: Option<Vec<Tool<'a>>>,
    tool_choice: Option<ToolChoice>,
    metadata: Option<Metadata>,
}

#[derive(Deserialize)]
struct Metadata {
    user_id: Option<String>,
}

#[derive(Deserialize)]
struct Turn {
    role: String,
    content: Content,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Blocks(Vec<Block>),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        text: String,
    },
    Image {
        source: ImageSource,
    },
    ToolUse {
        id: String,
        name: String,
        // Internally tagged enums buffer their content, so `RawValue` cannot be used here.
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<Content>,
    },
    Thinking {
        thinking: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ImageSource {
    Base64 { media_type: String, data: String },
    Url { url: String },
}

#[derive(Deserialize)]
struct Tool<'a> {
    name: String,
    description: Option<String>,
    #[serde(borrow)]
    input_schema: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ToolChoice {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    disable_parallel_tool_use: Option<bool>,
}

fn text_of(content: &Content) -> String {
    match content {
        Content::Text(t) => t.clone(),
        Content::Blocks(blocks) => {
            let texts: Vec<&str> = blocks
                .iter()
                .filter_map(|b| match b {
                    Block::Text { text } => Some(text.as_str()),
                    _ => None,
                })
                .collect();
            texts.join("\n\n")
        }
    }
}

/// The chat-completions request for an Anthropic Messages body.
pub(super) fn request(body: &[u8], upstream_model: &str) -> Result<Vec<u8>, ProxyError> {
    let req: MessagesRequest<'_> =
        serde_json::from_slice(body).map_err(|e| bad(format!("The request is not a valid Messages request: {e}")))?;
    let mut messages = Vec::new();
    if let Some(system) = &req.system {
        messages.push(json!({"role": "system", "content": text_of(system)}));
    }
    for turn in &req.messages {
        match (turn.role.as_str(), &turn.content) {
            (role @ ("user" | "assistant"), Content::Text(t)) => messages.push(json!({"role": role, "content": t})),
            ("user", Content::Blocks(blocks)) => {
                let mut parts = Vec::new();
                for b in blocks {
                    match b {
                        // Tool results answer the previous assistant turn, so they come first.
                        Block::ToolResult { tool_use_id, content } => messages.push(json!({
                            "role": "tool",
                            "tool_call_id": tool_use_id,
                            "content": content.as_ref().map(text_of).unwrap_or_default(),
                        })),
                        Block::Text { text } => parts.push(json!({"type": "text", "text": text})),
                        Block::Image { source } => {
                            let url = match source {
                                ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
                                ImageSource::Url { url } => url.clone(),
                            };
                            parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
                        }
                        _ => {}
                    }
                }
                if !parts.is_empty() {
                    messages.push(json!({"role": "user", "content": parts}));
                }
            }
            ("assistant", Content::Blocks(blocks)) => {
                let mut text = String::new();
                let mut reasoning = String::new();
                let mut calls = Vec::new();
                for b in blocks {
                    match b {
                        Block::Text { text: t } => text.push_str(t),
                        Block::Thinking { thinking } => reasoning.push_str(thinking),
                        Block::ToolUse { id, name, input } => calls.push(json!({
                            "id": id,
                            "type": "function",
                            "function": {"name": name, "arguments": input.to_string()},
                        })),
                        _ => {}
                    }
                }
                let mut m = Map::new();
                m.insert("role".into(), "assistant".into());
                m.insert("content".into(), if text.is_empty() { Value::Null } else { text.into() });
                if !calls.is_empty() {
                    m.insert("tool_calls".into(), calls.into());
                }
                // Reasoning models that want their reasoning back on tool turns (DeepSeek) read it here.
                if !reasoning.is_empty() {
                    m.insert("reasoning_content".into(), reasoning.into());
                }
                messages.push(Value::Object(m));
            }
            (other, _) => return Err(bad(format!("Unknown message role `{other}`."))),
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), upstream_model.into());
    out.insert("messages".into(), messages.into());
    if let Some(n) = req.max_tokens {
        out.insert("max_tokens".into(), n.into());
    }
    if let Some(t) = req.temperature {
        out.insert("temperature".into(), t.into());
    }
    if let Some(p) = req.top_p {
        out.insert("top_p".into(), p.into());
    }
    if let Some(stop) = req.stop_sequences.filter(|s| !s.is_empty()) {
        out.insert("stop".into(), stop.into());
    }
    if req.stream == Some(true) {
        out.insert("stream".into(), true.into());
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(tools) = &req.tools {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                let params = t
                    .input_schema
                    .and_then(|s| serde_json::from_str::<Value>(s.get()).ok())
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
                let mut f = json!({"name": t.name, "parameters": params});
                if let (Some(d), Some(obj)) = (&t.description, f.as_object_mut()) {
                    obj.insert("description".into(), d.as_str().into());
                }
                json!({"type": "function", "function": f})
            })
            .collect();
        out.insert("tools".into(), tools.into());
    }
    if let Some(choice) = &req.tool_choice {
        let c = match (choice.kind.as_str(), &choice.name) {
            ("auto", _) => json!("auto"),
            ("any", _) => json!("required"),
            ("none", _) => json!("none"),
            ("tool", Some(name)) => json!({"type": "function", "function": {"name": name}}),
            _ => return Err(bad("`tool_choice` is not valid.")),
        };
        out.insert("tool_choice".into(), c);
        if choice.disable_parallel_tool_use == Some(true) {
            out.insert("parallel_tool_calls".into(), false.into());
        }
    }
    if let Some(user) = req.metadata.and_then(|m| m.user_id) {
        out.insert("user".into(), user.into());
    }
    serde_json::to_vec(&out).map_err(|_| bad("The request could not be translated."))
}

// ---- response: OpenAI chat completion → Anthropic message ----

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    choices: Vec<Choice>,
    usage: Option<OpenAiUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: AssistantMessage,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct AssistantMessage {
    content: Option<String>,
    reasoning_content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<OpenAiToolCall>,
}

#[derive(Deserialize)]
struct OpenAiToolCall {
    id: String,
    function: OpenAiFunction,
}

#[derive(Deserialize)]
struct OpenAiFunction {
    name: String,
    arguments: String,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

impl OpenAiUsage {
    fn to_anthropic(self) -> Value {
        let cached = self.prompt_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0);
        json!({
            "input_tokens": self.prompt_tokens.saturating_sub(cached),
            "output_tokens": self.completion_tokens,
            "cache_read_input_tokens": cached,
            "cache_creation_input_tokens": 0,
        })
    }
}

fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// The Anthropic message for a chat-completion body; `None` when the body is not one.
pub(super) fn response(body: &[u8]) -> Option<Vec<u8>> {
    let c: Completion = serde_json::from_slice(body).ok()?;
    let choice = c.choices.into_iter().next()?;
    let mut content = Vec::new();
    if let Some(r) = choice.message.reasoning_content.filter(|r| !r.is_empty()) {
        content.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
    }
    if let Some(t) = choice.message.content.filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": t}));
    }
    for call in choice.message.tool_calls {
        let input: Value = serde_json::from_str(&call.function.arguments).unwrap_or_else(|_| json!({}));
        content.push(json!({"type": "tool_use", "id": call.id, "name": call.function.name, "input": input}));
    }
    let message = json!({
        "id": c.id,
        "type": "message",
        "role": "assistant",
        "model": c.model,
        "content": content,
        "stop_reason": stop_reason(choice.finish_reason.as_deref()),
        "stop_sequence": null,
        "usage": c.usage.unwrap_or_default().to_anthropic(),
    });
    serde_json::to_vec(&message).ok()
}

/// Anthropic's error type for an HTTP status.
fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 | 503 => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

/// The Anthropic error body for an OpenAI-shaped error from the upstream.
pub(super) fn error(status: u16, body: &[u8]) -> Vec<u8> {
    let message = serde_json::from_slice::<switchyard_shared::ErrorBody>(body)
        .map(|e| e.error.message)
        .unwrap_or_else(|_| "The upstream provider returned an error.".to_owned());
    let body = json!({"type": "error", "error": {"type": error_type(status), "message": message}});
    serde_json::to_vec(&body).unwrap_or_default()
}

// ---- stream: OpenAI chunks → Anthropic events ----

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    usage: Option<OpenAiUsage>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: ChunkDelta,
    finish_reason: Option<String>,
}

#[derive(Default, Deserialize)]
struct ChunkDelta {
    content: Option<String>,
    reasoning_content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCallDelta>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    id: Option<String>,
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
    Tool,
}

#[derive(Default)]
pub(super) struct ToMessagesStream {
    started: bool,
    /// The open content block and its index.
    open: Option<(Open, u64)>,
    next_index: u64,
    finish: Option<String>,
    usage: OpenAiUsage,
    done: bool,
}

impl ToMessagesStream {
    fn start(&mut self, out: &mut Vec<u8>, id: &str, model: &str) {
        if self.started {
            return;
        }
        self.started = true;
        let message = json!({
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        });
        write_event(out, Some("message_start"), &json!({"type": "message_start", "message": message}));
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((_, index)) = self.open.take() {
            write_event(out, Some("content_block_stop"), &json!({"type": "content_block_stop", "index": index}));
        }
    }

    /// Makes sure a block of `kind` is open (closing another), opening it with `block` when needed.
    fn ensure(&mut self, out: &mut Vec<u8>, kind: Open, block: Value) -> u64 {
        match self.open {
            Some((k, i)) if k == kind && kind != Open::Tool => i,
            _ => {
                self.close(out);
                let index = self.next_index;
                self.next_index += 1;
                self.open = Some((kind, index));
                let start = json!({"type": "content_block_start", "index": index, "content_block": block});
                write_event(out, Some("content_block_start"), &start);
                index
            }
        }
    }

    fn delta(out: &mut Vec<u8>, index: u64, delta: Value) {
        write_event(
            out,
            Some("content_block_delta"),
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        );
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.done = true;
        self.start(out, "", "");
        self.close(out);
        let delta = json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(self.finish.as_deref()), "stop_sequence": null},
            "usage": self.usage.to_anthropic(),
        });
        write_event(out, Some("message_delta"), &delta);
        write_event(out, Some("message_stop"), &json!({"type": "message_stop"}));
    }
}

impl Translate for ToMessagesStream {
    fn event(&mut self, _name: Option<&[u8]>, data: &[u8], out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if data.trim_ascii() == b"[DONE]" {
            self.finish(out);
            return;
        }
        let Ok(chunk) = serde_json::from_slice::<Chunk>(data) else {
            tracing::warn!("unreadable chat-completion chunk skipped");
            return;
        };
        if let Some(e) = chunk.error {
            self.done = true;
            let message = e.get("message").and_then(Value::as_str).unwrap_or("The upstream provider failed.");
            let body = json!({"type": "error", "error": {"type": "api_error", "message": message}});
            write_event(out, Some("error"), &body);
            return;
        }
        self.start(out, &chunk.id, &chunk.model);
        if let Some(u) = chunk.usage {
            self.usage = u;
        }
        for choice in chunk.choices {
            let d = choice.delta;
            if let Some(r) = d.reasoning_content.filter(|r| !r.is_empty()) {
                let i = self.ensure(out, Open::Thinking, json!({"type": "thinking", "thinking": ""}));
                Self::delta(out, i, json!({"type": "thinking_delta", "thinking": r}));
            }
            if let Some(t) = d.content.filter(|t| !t.is_empty()) {
                let i = self.ensure(out, Open::Text, json!({"type": "text", "text": ""}));
                Self::delta(out, i, json!({"type": "text_delta", "text": t}));
            }
            for call in d.tool_calls {
                let (name, args) = match call.function {
                    Some(f) => (f.name, f.arguments),
                    None => (None, None),
                };
                let index = match (call.id, &self.open) {
                    (Some(id), _) => self.ensure(
                        out,
                        Open::Tool,
                        json!({"type": "tool_use", "id": id, "name": name.unwrap_or_default(), "input": {}}),
                    ),
                    (None, Some((Open::Tool, i))) => *i,
                    (None, _) => continue,
                };
                if let Some(a) = args.filter(|a| !a.is_empty()) {
                    Self::delta(out, index, json!({"type": "input_json_delta", "partial_json": a}));
                }
            }
            if let Some(f) = choice.finish_reason {
                self.close(out);
                self.finish = Some(f);
            }
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        // Some OpenAI-compatible servers end without `[DONE]`.
        if self.started {
            self.finish(out);
        }
    }
}

#[cfg(test)]
mod tests;
