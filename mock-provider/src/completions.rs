//! `POST /v1/completions`: the legacy text-completion endpoint, whole or streamed, with the same token rules.

use hyper::Response;

use crate::answer::{Usage, completion_text, unix_now};
use crate::body::{End, Pacing, ResponseBody, SseSink, Stop, event_stream};
use crate::server::{Ctx, ok_json, sleep};
use crate::wire::{CompletionRequest, MockId, Text, TextChoice, TextCompletion};

pub(crate) async fn handle(ctx: &Ctx<'_>, body: &[u8]) -> Response<ResponseBody> {
    let request: CompletionRequest<'_> = match ctx.parse(body).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let pacing = match ctx.begin(request.mock.as_ref()).await {
        Ok(pacing) => pacing,
        Err(response) => return response,
    };
    let usage = Usage::new(request.prompt.0, pacing.chunks as u64);
    let id = MockId::completion(ctx.number);
    let created = unix_now();

    if request.stream == Some(true) {
        let stream = TextStream {
            id,
            created,
            model: request.model.into_owned(),
            pacing,
            usage,
            include_usage: request.stream_options.and_then(|options| options.include_usage).unwrap_or(false),
        };
        let (response, sink) = event_stream(ctx.state);
        tokio::spawn(stream.run(sink));
        return response;
    }

    let text = completion_text(pacing.chunks);
    let choices = [TextChoice { text: Text::Str(&text), index: 0, logprobs: None, finish_reason: Some("stop") }];
    ok_json(&TextCompletion {
        id,
        object: "text_completion",
        created,
        model: &request.model,
        choices: &choices,
        usage: Some(Some(usage)),
    })
}

/// Everything a stream producer needs, owned so it can outlive the handler on its own task.
struct TextStream {
    id: MockId,
    created: u64,
    model: String,
    pacing: Pacing,
    usage: Usage,
    include_usage: bool,
}

impl TextStream {
    async fn run(self, sink: SseSink) {
        // `Stop` means the client left (already counted) and there is nobody left to write to.
        if let Ok(end) = self.produce(&sink).await {
            end.apply(sink).await;
        }
    }

    async fn produce(&self, sink: &SseSink) -> Result<End, Stop> {
        let pacing = self.pacing;
        for i in 0..pacing.chunks {
            if pacing.cut_after(i) {
                return Ok(End::Cut);
            }
            sleep(pacing.chunk_delay).await;
            self.text(sink, Text::Token(i), None).await?;
        }
        if pacing.cut_after(pacing.chunks) {
            return Ok(End::Cut);
        }
        self.text(sink, Text::Str(""), Some("stop")).await?;
        if self.include_usage {
            sink.event(&self.chunk(&[], Some(self.usage))).await?;
        }
        sink.done().await?;
        Ok(End::Finished)
    }

    async fn text(&self, sink: &SseSink, text: Text<'_>, finish_reason: Option<&'static str>) -> Result<(), Stop> {
        let choices = [TextChoice { text, index: 0, logprobs: None, finish_reason }];
        sink.event(&self.chunk(&choices, None)).await
    }

    fn chunk<'a>(&'a self, choices: &'a [TextChoice<'a>], usage: Option<Usage>) -> TextCompletion<'a> {
        TextCompletion {
            id: self.id,
            object: "text_completion",
            created: self.created,
            model: &self.model,
            choices,
            usage: self.include_usage.then_some(usage),
        }
    }
}
