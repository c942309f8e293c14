//! `POST /v1/chat/completions`: the deterministic answer, or a tool call when tools are offered, whole or
//! streamed.

use hyper::Response;
use serde_json::value::RawValue;

use crate::answer::{Usage, completion_text, unix_now};
use crate::body::{End, Pacing, ResponseBody, SseSink, Stop, event_stream};
use crate::server::{Ctx, ok_json, sleep};
use crate::wire::{
    AssistantMessage, ChatChoice, ChatChunk, ChatCompletion, ChatRequest, ChunkChoice, Delta, FunctionCall, Message,
    MockId, TOOL_CALL_ARGUMENTS, TOOL_CALL_ID, Text, Tool, ToolCall,
};

pub(crate) async fn handle(ctx: &Ctx<'_>, body: &[u8]) -> Response<ResponseBody> {
    let request: ChatRequest<'_> = match ctx.parse(body).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let pacing = match ctx.begin(request.mock.as_ref()).await {
        Ok(pacing) => pacing,
        Err(response) => return response,
    };
    let prompt_tokens = request.messages.iter().map(|message| message.content.0).sum();
    // A tool-call answer reports the same usage as a text answer, so metering tests need no special case.
    let usage = Usage::new(prompt_tokens, pacing.chunks as u64);
    let tool = tool_to_call(&request.messages, request.tools.as_deref(), request.tool_choice);
    let id = MockId::chat(ctx.number);
    let created = unix_now();

    if request.stream == Some(true) {
        let stream = ChatStream {
            id,
            created,
            model: request.model.into_owned(),
            tool: tool.map(str::to_owned),
            pacing,
            usage,
            include_usage: request.stream_options.and_then(|options| options.include_usage).unwrap_or(false),
        };
        let (response, sink) = event_stream(ctx.state);
        tokio::spawn(stream.run(sink));
        return response;
    }

    let content = match tool {
        Some(_) => None,
        None => Some(completion_text(pacing.chunks)),
    };
    let completion = ChatCompletion {
        id,
        object: "chat.completion",
        created,
        model: &request.model,
        choices: [ChatChoice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content: content.as_deref(),
                tool_calls: tool.map(|name| {
                    [ToolCall {
                        id: TOOL_CALL_ID,
                        kind: "function",
                        function: FunctionCall { name, arguments: TOOL_CALL_ARGUMENTS },
                    }]
                }),
            },
            logprobs: None,
            finish_reason: if tool.is_some() { "tool_calls" } else { "stop" },
        }],
        usage,
        system_fingerprint: "mock",
    };
    ok_json(&completion)
}

/// The function to call: the first offered tool's, when the user spoke last (after a `tool` message the model
/// answers in text, which lets agent-loop tests finish) and `tool_choice` is not `"none"`.
fn tool_to_call<'r>(
    messages: &[Message<'_>],
    tools: Option<&'r [Tool<'_>]>,
    tool_choice: Option<&RawValue>,
) -> Option<&'r str> {
    if tool_choice.is_some_and(|choice| choice.get() == r#""none""#) {
        return None;
    }
    if messages.last()?.role != "user" {
        return None;
    }
    tools?.iter().find_map(|tool| tool.function.as_ref()).map(|function| function.name.as_ref())
}

/// Everything a stream producer needs, owned so it can outlive the handler on its own task.
struct ChatStream {
    id: MockId,
    created: u64,
    model: String,
    tool: Option<String>,
    pacing: Pacing,
    usage: Usage,
    include_usage: bool,
}

impl ChatStream {
    async fn run(self, sink: SseSink) {
        // `Stop` means the client left (already counted) and there is nobody left to write to.
        if let Ok(end) = self.produce(&sink).await {
            end.apply(sink).await;
        }
    }

    async fn produce(&self, sink: &SseSink) -> Result<End, Stop> {
        if let Some(name) = self.tool.as_deref() {
            self.delta(sink, Delta::ToolCallStart { name }, None).await?;
            self.delta(sink, Delta::ToolCallArguments, None).await?;
            self.delta(sink, Delta::Empty, Some("tool_calls")).await?;
        } else {
            self.delta(sink, Delta::Role, None).await?;
            let pacing = self.pacing;
            for i in 0..pacing.chunks {
                if pacing.cut_after(i) {
                    return Ok(End::Cut);
                }
                sleep(pacing.chunk_delay).await;
                self.delta(sink, Delta::Content(Text::Token(i)), None).await?;
            }
            if pacing.cut_after(pacing.chunks) {
                return Ok(End::Cut);
            }
            self.delta(sink, Delta::Empty, Some("stop")).await?;
        }
        if self.include_usage {
            sink.event(&self.chunk(&[], Some(self.usage))).await?;
        }
        sink.done().await?;
        Ok(End::Finished)
    }

    async fn delta(&self, sink: &SseSink, delta: Delta<'_>, finish_reason: Option<&'static str>) -> Result<(), Stop> {
        let choices = [ChunkChoice { index: 0, delta, logprobs: None, finish_reason }];
        sink.event(&self.chunk(&choices, None)).await
    }

    fn chunk<'a>(&'a self, choices: &'a [ChunkChoice<'a>], usage: Option<Usage>) -> ChatChunk<'a> {
        ChatChunk {
            id: self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            system_fingerprint: "mock",
            choices,
            usage: self.include_usage.then_some(usage),
        }
    }
}
