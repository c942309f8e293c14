//! `POST /v1/responses`: a minimal, non-streaming OpenAI Responses API answer — enough to prove the gateway
//! passes the endpoint through and meters its `input_tokens`/`output_tokens`.

use hyper::Response;
use serde::Deserialize;
use serde_json::json;

use crate::answer::words;
use crate::body::ResponseBody;
use crate::server::{Ctx, ok_json};
use crate::wire::MockOverrides;

#[derive(Deserialize)]
struct ResponsesRequest {
    model: String,
    /// A string, or a list of input items with string `content`.
    input: serde_json::Value,
    mock: Option<MockOverrides>,
}

pub(crate) async fn handle(ctx: &Ctx<'_>, body: &[u8]) -> Response<ResponseBody> {
    let request: ResponsesRequest = match ctx.parse(body).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let pacing = match ctx.begin(request.mock.as_ref()).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    let input_tokens: u64 = match &request.input {
        serde_json::Value::String(s) => words(s),
        serde_json::Value::Array(items) => items.iter().filter_map(|i| i["content"].as_str()).map(words).sum(),
        _ => 0,
    };
    let text: String = (0..pacing.chunks).map(|i| format!("tok{i} ")).collect();
    ok_json(&json!({
        "id": format!("resp_mock_{}", ctx.number),
        "object": "response",
        "status": "completed",
        "model": request.model,
        "output": [{
            "type": "message",
            "id": format!("msg_mock_{}", ctx.number),
            "role": "assistant",
            "status": "completed",
            "content": [{ "type": "output_text", "text": text, "annotations": [] }],
        }],
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": pacing.chunks,
            "total_tokens": input_tokens + pacing.chunks as u64,
        },
    }))
}
