//! Gemini's OpenAI-compatible endpoint answers errors with a JSON *array* holding one Google status object,
//! `[{"error":{"code":400,"message":"...","status":"INVALID_ARGUMENT"}}]`, which OpenAI clients cannot read. Only
//! error bodies that start with `[` are looked at, so other upstreams' errors pass through untouched.

use serde::Deserialize;

#[derive(Deserialize)]
struct Envelope {
    error: Detail,
}

#[derive(Deserialize)]
struct Detail {
    message: String,
    #[serde(default)]
    status: Option<String>,
}

/// OpenAI's `error.type` for a Google canonical status.
fn openai_error_type(status: &str) -> &'static str {
    match status {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" | "NOT_FOUND" => "invalid_request_error",
        "UNAUTHENTICATED" => "authentication_error",
        "PERMISSION_DENIED" => "permission_error",
        "RESOURCE_EXHAUSTED" => "rate_limit_error",
        _ => "api_error",
    }
}

/// The OpenAI error body for a Google error array (its status becomes the `code`), or `None` when `body` is not
/// one.
pub(super) fn to_openai(body: &[u8]) -> Option<Vec<u8>> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'[') {
        return None;
    }
    let first = serde_json::from_slice::<Vec<Envelope>>(body).ok()?.into_iter().next()?;
    let status = first.error.status.unwrap_or_else(|| "UNKNOWN".to_owned());
    Some(switchyard_shared::ErrorBody::new(first.error.message, openai_error_type(&status), &status).to_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_google_error_array_becomes_an_openai_error() {
        let body = br#"[{"error":{"code":400,"message":"bad model","status":"INVALID_ARGUMENT"}}]"#;
        let v: serde_json::Value = serde_json::from_slice(&to_openai(body).unwrap()).unwrap();
        assert_eq!(v["error"]["message"], "bad model");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "INVALID_ARGUMENT");
    }

    #[test]
    fn other_bodies_are_left_alone() {
        assert!(to_openai(br#"{"error":{"message":"x","type":"y"}}"#).is_none());
        assert!(to_openai(b"[1, 2]").is_none());
        assert!(to_openai(b"[]").is_none());
    }
}
