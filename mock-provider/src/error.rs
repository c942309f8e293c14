//! OpenAI-shaped error responses: the one place an error becomes a status and a body.

use bytes::Bytes;
use hyper::{Response, StatusCode};

use crate::body::ResponseBody;
use crate::server::json_response;
use crate::wire::{ErrorDetail, ErrorEnvelope};

fn render(status: StatusCode, message: &str, kind: &'static str, code: Option<&str>) -> Response<ResponseBody> {
    let envelope = ErrorEnvelope { error: ErrorDetail { message, kind, param: None, code } };
    let body = serde_json::to_vec(&envelope).map_or_else(
        // Unreachable with these plain fields; a fixed body still keeps the response well-formed.
        |_| Bytes::from_static(br#"{"error":{"message":"mock error","type":"server_error","param":null,"code":null}}"#),
        Bytes::from,
    );
    json_response(status, body)
}

pub(crate) fn invalid_json(error: &serde_json::Error) -> Response<ResponseBody> {
    let message = format!("We could not parse the JSON body of your request: {error}");
    render(StatusCode::BAD_REQUEST, &message, "invalid_request_error", None)
}

pub(crate) fn invalid_api_key() -> Response<ResponseBody> {
    render(StatusCode::UNAUTHORIZED, "Incorrect API key provided", "invalid_request_error", Some("invalid_api_key"))
}

/// `what` is `METHOD /path`, echoed like OpenAI's "Invalid URL" message.
pub(crate) fn not_found(what: &str) -> Response<ResponseBody> {
    let message = format!("Invalid URL ({what})");
    render(StatusCode::NOT_FOUND, &message, "invalid_request_error", None)
}

/// An injected failure. A status that is not a valid HTTP status becomes 500 but keeps its code, so the test
/// that asked for it can still tell.
pub(crate) fn mock_status(status: u16) -> Response<ResponseBody> {
    let code = format!("mock_status_{status}");
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    render(status, "mock failure", "server_error", Some(&code))
}

/// Over the mock's own rate limit: 429 with `Retry-After` (whole seconds, at least 1) and OpenAI's headers.
pub(crate) fn rate_limited(limit: crate::RateLimit, left: std::time::Duration) -> Response<ResponseBody> {
    let message = format!("Rate limit reached: {} requests per {} ms", limit.requests, limit.window.as_millis());
    let mut res = render(StatusCode::TOO_MANY_REQUESTS, &message, "requests", Some("rate_limit_exceeded"));
    let secs = (left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1);
    let headers = res.headers_mut();
    for (name, value) in [
        ("retry-after", secs.to_string()),
        ("x-ratelimit-limit-requests", limit.requests.to_string()),
        ("x-ratelimit-remaining-requests", "0".to_owned()),
        ("x-ratelimit-reset-requests", format!("{}ms", left.as_millis())),
    ] {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    res
}

/// A response body that failed to serialise, which the mock's own types never do.
pub(crate) fn internal() -> Response<ResponseBody> {
    render(StatusCode::INTERNAL_SERVER_ERROR, "mock could not encode its response", "server_error", None)
}
