//! `POST /v1/embeddings`: one deterministic 8-dimensional vector per input string.

use hyper::Response;

use crate::answer::{embedding, words};
use crate::body::ResponseBody;
use crate::server::{Ctx, ok_json};
use crate::wire::{EmbeddingItem, EmbeddingList, EmbeddingRequest, EmbeddingUsage};

pub(crate) async fn handle(ctx: &Ctx<'_>, body: &[u8]) -> Response<ResponseBody> {
    let request: EmbeddingRequest<'_> = match ctx.parse(body).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    if let Err(response) = ctx.begin(request.mock.as_ref()).await {
        return response;
    }
    let inputs = &request.input.0;
    let prompt_tokens = inputs.iter().map(|input| words(input)).sum();
    let data = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| EmbeddingItem { object: "embedding", index, embedding: embedding(input) })
        .collect();
    ok_json(&EmbeddingList {
        object: "list",
        data,
        model: &request.model,
        usage: EmbeddingUsage { prompt_tokens, total_tokens: prompt_tokens },
    })
}
