//! Anthropic's event stream as OpenAI chat-completion chunks: `message_start` opens the assistant turn,
//! `content_block_*` become content, tool-call and reasoning deltas, `message_delta` the finish reason,
//! `message_stop` the final usage chunk and `[DONE]`; `ping` becomes an SSE comment (so idle timers still see
//! traffic) and `error` an OpenAI error event.

use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_shared::ErrorBody;

use super::anthropic::{AnthropicUsage, ErrorDetail, finish_reason, openai_error_type, unix_now};
use super::sse::{Translate, write_event};

#[derive(Default)]
pub(super) struct ToChat {
    id: String,
    model: String,
    created: u64,
    usage: AnthropicUsage,
    /// Content-block index of each tool-use block, in order: its position is the OpenAI tool-call index.
    tool_blocks: Vec<u64>,
    finish: Option<&'static str>,
    done: bool,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: u64,
        content_block: StartBlock,
    },
    ContentBlockDelta {
        index: u64,
        delta: BlockDelta,
    },
    MessageDelta {
        delta: MessageDelta,
        usage: Option<AnthropicUsage>,
    },
    MessageStop {},
    Error {
        error: ErrorDetail,
    },
    Ping {},
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock {
    ToolUse {
        id: String,
        name: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct MessageDelta {
    stop_reason: Option<String>,
}

impl ToChat {
    fn chunk(&self, out: &mut Vec<u8>, delta: Value, finish: Option<&str>) {
        let chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        write_event(out, None, &chunk);
    }

    fn tool_index(&self, block: u64) -> Option<usize> {
        self.tool_blocks.iter().position(|b| *b == block)
    }
}

impl Translate for ToChat {
    fn event(&mut self, _name: Option<&[u8]>, data: &[u8], out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let Ok(event) = serde_json::from_slice::<Event>(data) else {
            tracing::warn!("unreadable Anthropic stream event skipped");
            return;
        };
        match event {
            Event::MessageStart { message } => {
                self.id = message.id;
                self.model = message.model;
                self.created = unix_now();
                if let Some(u) = message.usage {
                    self.usage.merge(u);
                }
                self.chunk(out, json!({"role": "assistant", "content": ""}), None);
            }
            Event::ContentBlockStart { index, content_block: StartBlock::ToolUse { id, name } } => {
                self.tool_blocks.push(index);
                let i = self.tool_blocks.len() - 1;
                let call =
                    json!({"index": i, "id": id, "type": "function", "function": {"name": name, "arguments": ""}});
                self.chunk(out, json!({"tool_calls": [call]}), None);
            }
            Event::ContentBlockStart { .. } => {}
            Event::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } => self.chunk(out, json!({"content": text}), None),
                BlockDelta::ThinkingDelta { thinking } => {
                    self.chunk(out, json!({"reasoning_content": thinking}), None);
                }
                BlockDelta::InputJsonDelta { partial_json } => {
                    if let Some(i) = self.tool_index(index) {
                        let call = json!({"index": i, "function": {"arguments": partial_json}});
                        self.chunk(out, json!({"tool_calls": [call]}), None);
                    }
                }
                BlockDelta::Other => {}
            },
            Event::MessageDelta { delta, usage } => {
                if let Some(u) = usage {
                    self.usage.merge(u);
                }
                self.finish = finish_reason(delta.stop_reason.as_deref());
                self.chunk(out, json!({}), Some(self.finish.unwrap_or("stop")));
            }
            Event::MessageStop {} => {
                self.done = true;
                let chunk = json!({
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": self.usage.to_openai(),
                });
                write_event(out, None, &chunk);
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            Event::Error { error } => {
                self.done = true;
                let body = ErrorBody::new(error.message, openai_error_type(&error.kind), &error.kind);
                write_event(out, None, &body);
            }
            Event::Ping {} => out.extend_from_slice(b": ping\n\n"),
            Event::Other => {}
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        if !self.done {
            self.done = true;
            let body =
                ErrorBody::new("The upstream provider ended the stream early.", "api_error", "upstream_stream_error");
            write_event(out, None, &body);
        }
    }
}
