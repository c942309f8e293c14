//! Gemini's OpenAI-compatible surface as Google serves it: the OpenAI routes under [`BASE_PATH`], a Bearer key,
//! and errors as Google's compatibility layer returns them, a JSON *array* holding one Google status object:
//! `[{"error":{"code":400,"message":"...","status":"INVALID_ARGUMENT"}}]`. Answers otherwise follow the OpenAI
//! rules in the crate docs (the model name, e.g. `gemini-2.5-flash`, is echoed from the request).

use bytes::Bytes;
use hyper::{Response, StatusCode};
use serde_json::json;

use crate::body::ResponseBody;
use crate::server::json_response;

/// Where Google serves the OpenAI-compatible API; a gateway's base URL for Gemini ends with it.
pub const BASE_PATH: &str = "/v1beta/openai";

/// The OpenAI path (`/v1/...`) a Gemini path stands for, or `None` when it is not under [`BASE_PATH`].
pub(crate) fn openai_path(path: &str) -> Option<String> {
    path.strip_prefix(BASE_PATH).filter(|rest| rest.starts_with('/')).map(|rest| format!("/v1{rest}"))
}

/// Google's canonical status name for an HTTP status.
fn google_status(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

fn error(status: u16, message: &str) -> Response<ResponseBody> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!([{ "error": { "code": code.as_u16(), "message": message, "status": google_status(status) } }]);
    json_response(code, Bytes::from(body.to_string()))
}

/// An injected status in Google's error shape.
pub(crate) fn mock_status(status: u16) -> Response<ResponseBody> {
    error(status, &format!("mock failure {status}"))
}

pub(crate) fn invalid_api_key() -> Response<ResponseBody> {
    error(401, "API key not valid. Please pass a valid API key.")
}
