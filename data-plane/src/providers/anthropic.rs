//! Anthropic's Messages API behind the OpenAI chat-completions interface: the upstream (`x-api-key`,
//! `anthropic-version`), the request translation (system prompt, turns, images, tools, tool choice, stop
//! sequences, sampling, the `max_tokens` Anthropic requires), the whole-response translation (text, tool use,
//! thinking, stop reason, usage with cache tokens) and errors. Streams are in `anthropic_stream.rs`.
//!
//! Usage follows the gateway's OpenAI shape: `prompt_tokens` counts every input token (fresh + cache read +
//! cache write), `prompt_tokens_details.cached_tokens` the cache reads and `cache_write_tokens` the writes.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use switchyard_shared::snapshot::ProviderEntry;

use super::{Dialect, Upstream, join, sensitive};
use crate::endpoint::Endpoint;
use crate::error::ProxyError;
use crate::metering::Usage;

/// The API version every request declares.
pub(super) const API_VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens`; OpenAI clients often leave it out.
pub(super) const DEFAULT_MAX_TOKENS: u64 = 4096;

pub(super) fn upstream(entry: &ProviderEntry) -> Option<Upstream> {
    let auth = entry.credential.as_deref().and_then(|c| Some(("x-api-key", sensitive(c)?)));
    let Some(messages) = join(&entry.base_url, Endpoint::Messages.path()) else {
        tracing::error!(provider = %entry.name, "provider base URL does not parse; its routes are dropped");
        return None;
    };
    let mut urls: [Option<reqwest::Url>; 5] = Default::default();
    urls[Endpoint::ChatCompletions.index()] = Some(messages.clone());
    urls[Endpoint::Messages.index()] = Some(messages);
    Some(Upstream {
        id: entry.id,
        name: entry.name.as_str().into(),
        dialect: Dialect::Anthropic,
        urls,
        timeouts: entry.timeouts,
        auth,
        extra_header: Some(("anthropic-version", reqwest::header::HeaderValue::from_static(API_VERSION))),
    })
}

// ---- request: OpenAI chat completion → Anthropic message ----

#[derive(Deserialize)]
struct ChatRequest<'a> {
    #[serde(borrow)]
    messages: Vec<ChatMessage<'a>>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    stop: Option<OneOrMany>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(borrow)]
    tools: Option<Vec<Tool<'a>>>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    user: Option<String>,
    /// OpenAI's reasoning toggle, mapped to an extended-thinking budget.
    reasoning_effort: Option<String>,
    /// Anthropic's own `thinking` object, for clients that know they talk to Claude.
    thinking: Option<Value>,
}

/// Extended-thinking budget per OpenAI `reasoning_effort`.
fn thinking_budget(effort: &str) -> Option<u64> {
    match effort {
        "low" => Some(1024),
        "medium" => Some(4096),
        "high" => Some(16_384),
        _ => None,
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct ChatMessage<'a> {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<ToolCall<'a>>>,
    #[serde(default)]
    tool_call_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Part {
    Text {
        text: String,
    },
    ImageUrl {
        image_url: ImageUrl,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct ImageUrl {
    url: String,
}

#[derive(Deserialize)]
struct ToolCall<'a> {
    id: String,
    #[serde(borrow)]
    function: FunctionCall<'a>,
}

#[derive(Deserialize)]
struct FunctionCall<'a> {
    name: String,
    #[serde(borrow)]
    arguments: std::borrow::Cow<'a, str>,
}

#[derive(Deserialize)]
struct Tool<'a> {
    #[serde(borrow)]
    function: ToolFunction<'a>,
}

#[derive(Deserialize)]
struct ToolFunction<'a> {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, borrow)]
    parameters: Option<&'a RawValue>,
}

fn bad(message: impl Into<String>) -> ProxyError {
    ProxyError::BadRequest(message.into())
}

/// The Anthropic request for an OpenAI chat-completions body.
pub(super) fn request(body: &[u8], upstream_model: &str) -> Result<Vec<u8>, ProxyError> {
    let req: ChatRequest<'_> =
        serde_json::from_slice(body).map_err(|e| bad(format!("The request is not a valid chat completion: {e}")))?;
    let mut system: Vec<Value> = Vec::new();
    let mut messages: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in &req.messages {
        let (role, blocks) = match m.role.as_str() {
            "system" | "developer" => {
                for text in texts(m.content.as_ref()) {
                    system.push(json!({"type": "text", "text": text}));
                }
                continue;
            }
            "user" => ("user", user_blocks(m.content.as_ref())?),
            "assistant" => ("assistant", assistant_blocks(m)?),
            "tool" => {
                let id = m.tool_call_id.as_deref().ok_or_else(|| bad("A `tool` message needs `tool_call_id`."))?;
                let content: Vec<Value> =
                    texts(m.content.as_ref()).map(|t| json!({"type": "text", "text": t})).collect();
                ("user", vec![json!({"type": "tool_result", "tool_use_id": id, "content": content})])
            }
            other => return Err(bad(format!("Unknown message role `{other}`."))),
        };
        if blocks.is_empty() {
            continue;
        }
        // Anthropic wants turns to alternate: consecutive messages of one role (e.g. several tool results)
        // become one turn.
        match messages.last_mut() {
            Some((r, existing)) if *r == role => existing.extend(blocks),
            _ => messages.push((role, blocks)),
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), upstream_model.into());
    let mut max_tokens = req.max_completion_tokens.or(req.max_tokens).unwrap_or(DEFAULT_MAX_TOKENS);
    let thinking = match (req.thinking, req.reasoning_effort.as_deref().and_then(thinking_budget)) {
        (Some(t), _) if t.is_object() => Some(t),
        (_, Some(budget)) => Some(json!({"type": "enabled", "budget_tokens": budget})),
        _ => None,
    };
    let thinking_on = thinking.as_ref().is_some_and(|t| t["type"] == "enabled");
    if let Some(budget) = thinking.as_ref().and_then(|t| t["budget_tokens"].as_u64()) {
        // Anthropic wants the thinking budget inside max_tokens.
        max_tokens = max_tokens.max(budget + DEFAULT_MAX_TOKENS);
    }
    out.insert("max_tokens".into(), max_tokens.into());
    if let Some(t) = thinking {
        out.insert("thinking".into(), t);
    }
    if !system.is_empty() {
        out.insert("system".into(), system.into());
    }
    let messages: Vec<Value> =
        messages.into_iter().map(|(role, content)| json!({"role": role, "content": content})).collect();
    out.insert("messages".into(), messages.into());
    // Extended thinking refuses a changed temperature.
    if let Some(t) = req.temperature.filter(|_| !thinking_on) {
        // OpenAI's range is 0-2, Anthropic's 0-1.
        out.insert("temperature".into(), t.clamp(0.0, 1.0).into());
    }
    if let Some(p) = req.top_p {
        out.insert("top_p".into(), p.into());
    }
    match req.stop {
        Some(OneOrMany::One(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(OneOrMany::Many(v)) if !v.is_empty() => {
            out.insert("stop_sequences".into(), v.into());
        }
        _ => {}
    }
    if req.stream == Some(true) {
        out.insert("stream".into(), true.into());
    }
    if let Some(tools) = &req.tools {
        let tools = tools
            .iter()
            .map(|t| {
                let schema = match t.function.parameters {
                    Some(p) => serde_json::from_str::<Value>(p.get()).unwrap_or(Value::Null),
                    None => Value::Null,
                };
                let schema = if schema.is_object() { schema } else { json!({"type": "object", "properties": {}}) };
                let mut tool = json!({"name": t.function.name, "input_schema": schema});
                if let (Some(d), Some(obj)) = (&t.function.description, tool.as_object_mut()) {
                    obj.insert("description".into(), d.as_str().into());
                }
                tool
            })
            .collect::<Vec<_>>();
        out.insert("tools".into(), tools.into());
    }
    if let Some(choice) = tool_choice(req.tool_choice.as_ref(), req.parallel_tool_calls)? {
        out.insert("tool_choice".into(), choice);
    }
    if let Some(user) = req.user {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    serde_json::to_vec(&out).map_err(|_| bad("The request could not be translated."))
}

fn tool_choice(choice: Option<&Value>, parallel: Option<bool>) -> Result<Option<Value>, ProxyError> {
    let mut out = match choice {
        None => {
            if parallel != Some(false) {
                return Ok(None);
            }
            json!({"type": "auto"})
        }
        Some(Value::String(s)) => match s.as_str() {
            "auto" => json!({"type": "auto"}),
            "required" => json!({"type": "any"}),
            "none" => json!({"type": "none"}),
            other => return Err(bad(format!("Unknown tool_choice `{other}`."))),
        },
        Some(v) => match v.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => json!({"type": "tool", "name": name}),
            None => return Err(bad("`tool_choice` must be a string or name a function.")),
        },
    };
    if parallel == Some(false)
        && out["type"] != "none"
        && let Some(obj) = out.as_object_mut()
    {
        obj.insert("disable_parallel_tool_use".into(), true.into());
    }
    Ok(Some(out))
}

fn texts(content: Option<&Content>) -> impl Iterator<Item = &str> {
    let (one, many) = match content {
        Some(Content::Text(t)) => (Some(t.as_str()), None),
        Some(Content::Parts(p)) => (None, Some(p.iter())),
        None => (None, None),
    };
    one.into_iter()
        .chain(many.into_iter().flatten().filter_map(|p| match p {
            Part::Text { text } => Some(text.as_str()),
            _ => None,
        }))
        .filter(|t| !t.is_empty())
}

fn user_blocks(content: Option<&Content>) -> Result<Vec<Value>, ProxyError> {
    match content {
        None => Ok(Vec::new()),
        Some(Content::Text(t)) => Ok(vec![json!({"type": "text", "text": t})]),
        Some(Content::Parts(parts)) => parts
            .iter()
            .filter_map(|p| match p {
                Part::Text { text } => Some(Ok(json!({"type": "text", "text": text}))),
                Part::ImageUrl { image_url } => Some(image(&image_url.url)),
                Part::Other => None,
            })
            .collect(),
    }
}

/// A data URL becomes a base64 source, anything else a URL source.
fn image(url: &str) -> Result<Value, ProxyError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (media_type, data) = rest
            .split_once(";base64,")
            .ok_or_else(|| bad("Image data URLs must be base64 (`data:<type>;base64,<data>`)."))?;
        return Ok(json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}));
    }
    Ok(json!({"type": "image", "source": {"type": "url", "url": url}}))
}

fn assistant_blocks(m: &ChatMessage<'_>) -> Result<Vec<Value>, ProxyError> {
    let mut blocks: Vec<Value> = texts(m.content.as_ref()).map(|t| json!({"type": "text", "text": t})).collect();
    for call in m.tool_calls.iter().flatten() {
        let args = call.function.arguments.trim();
        let input: Value = if args.is_empty() {
            json!({})
        } else {
            serde_json::from_str(args)
                .map_err(|_| bad(format!("The arguments of tool call `{}` are not JSON.", call.id)))?
        };
        blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.function.name, "input": input}));
    }
    Ok(blocks)
}

// ---- response: Anthropic message → OpenAI chat completion ----

#[derive(Deserialize)]
struct Message {
    id: String,
    model: String,
    content: Vec<Block>,
    stop_reason: Option<String>,
    #[serde(default)]
    usage: AnthropicUsage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        text: String,
    },
    // Internally tagged enums buffer their content, so `RawValue` cannot be used here.
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    Thinking {
        thinking: String,
    },
    #[serde(other)]
    Other,
}

/// Anthropic's usage object; later events repeat or update fields, so every field is optional.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(super) struct AnthropicUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl AnthropicUsage {
    /// Fields present in `newer` replace ours (Anthropic's counts are cumulative).
    pub(super) fn merge(&mut self, newer: AnthropicUsage) {
        self.input_tokens = newer.input_tokens.or(self.input_tokens);
        self.output_tokens = newer.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = newer.cache_creation_input_tokens.or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = newer.cache_read_input_tokens.or(self.cache_read_input_tokens);
    }

    /// The gateway's OpenAI-shaped usage object.
    pub(super) fn to_openai(self) -> Value {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let write = self.cache_creation_input_tokens.unwrap_or(0);
        let prompt = self.input_tokens.unwrap_or(0) + read + write;
        let completion = self.output_tokens.unwrap_or(0);
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": write},
        })
    }

    pub(super) fn to_usage(self) -> Option<Usage> {
        serde_json::from_value(self.to_openai()).ok()
    }
}

pub(super) fn finish_reason(stop_reason: Option<&str>) -> Option<&'static str> {
    Some(match stop_reason? {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn
        _ => "stop",
    })
}

/// The chat completion for an Anthropic message body; `None` when the body is not one.
pub(super) fn response(body: &[u8]) -> Option<Vec<u8>> {
    let msg: Message = serde_json::from_slice(body).ok()?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in &msg.content {
        match block {
            Block::Text { text: t } => text.push_str(t),
            Block::Thinking { thinking } => reasoning.push_str(thinking),
            Block::ToolUse { id, name, input } => tool_calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": input.to_string()},
            })),
            Block::Other => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { text.into() }});
    if let Some(obj) = message.as_object_mut() {
        if !tool_calls.is_empty() {
            obj.insert("tool_calls".into(), tool_calls.into());
        }
        if !reasoning.is_empty() {
            obj.insert("reasoning_content".into(), reasoning.into());
        }
    }
    let completion = json!({
        "id": msg.id,
        "object": "chat.completion",
        "created": unix_now(),
        "model": msg.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(msg.stop_reason.as_deref()).unwrap_or("stop"),
        }],
        "usage": msg.usage.to_openai(),
    });
    serde_json::to_vec(&completion).ok()
}

pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The usage of an Anthropic message body (for clients of `/v1/messages` on an Anthropic upstream).
pub(super) fn usage_of_message(body: &[u8]) -> Option<Usage> {
    #[derive(Deserialize)]
    struct WithUsage {
        usage: Option<AnthropicUsage>,
    }
    serde_json::from_slice::<WithUsage>(body).ok()?.usage?.to_usage()
}

// ---- errors ----

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorDetail,
}

#[derive(Deserialize)]
pub(super) struct ErrorDetail {
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) message: String,
}

/// OpenAI's `error.type` for Anthropic's.
pub(super) fn openai_error_type(kind: &str) -> &'static str {
    match kind {
        "invalid_request_error" | "request_too_large" | "not_found_error" => "invalid_request_error",
        "authentication_error" => "authentication_error",
        "permission_error" => "permission_error",
        "rate_limit_error" => "rate_limit_error",
        _ => "api_error",
    }
}

/// The OpenAI error body for an Anthropic error body; Anthropic's error type becomes the `code`.
pub(super) fn error(body: &[u8]) -> Vec<u8> {
    let (message, kind, code) = match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(e) => (e.error.message, openai_error_type(&e.error.kind), e.error.kind),
        Err(_) => ("The upstream provider returned an error.".to_owned(), "api_error", "upstream_error".to_owned()),
    };
    switchyard_shared::ErrorBody::new(message, kind, &code).to_json()
}

// ---- usage while relaying an Anthropic event stream ----

/// The usage of an Anthropic event stream so far: `message_start` carries input and cache counts,
/// `message_delta` the (cumulative) output count and sometimes updated input counts.
#[derive(Debug, Default)]
pub struct StreamUsage {
    usage: AnthropicUsage,
}

impl StreamUsage {
    /// Reads one event's data payload; returns the usage so far when this event carried any.
    pub fn scan(&mut self, payload: &[u8]) -> Option<Usage> {
        #[derive(Deserialize)]
        struct Event {
            message: Option<WithUsage>,
            usage: Option<AnthropicUsage>,
        }
        #[derive(Deserialize)]
        struct WithUsage {
            usage: Option<AnthropicUsage>,
        }
        memchr::memmem::find(payload, b"\"usage\"")?;
        let event: Event = serde_json::from_slice(payload).ok()?;
        let usage = event.usage.or_else(|| event.message.and_then(|m| m.usage))?;
        self.usage.merge(usage);
        self.usage.to_usage()
    }
}

#[cfg(test)]
mod tests;
