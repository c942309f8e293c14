//! The usage record of one request: who asked, what was served, how long it took and what it cost.

use std::time::Instant;

use chrono::{DateTime, Utc};
use switchyard_shared::usage::UsageSource;
use switchyard_shared::{Price, UsageRecord};
use uuid::Uuid;

/// Token counts as reported by an upstream's `usage` object (Chat/Completions/Embeddings names, or the
/// Responses API's `input_tokens`/`output_tokens`), with the token classes providers break them into:
/// OpenAI `prompt_tokens_details.cached_tokens` and `completion_tokens_details.reasoning_tokens` (Responses:
/// `input_tokens_details`/`output_tokens_details`), DeepSeek `prompt_cache_hit_tokens`, and
/// `prompt_tokens_details.cache_write_tokens` (the Switchyard extension the Anthropic adapter writes for
/// `cache_creation_input_tokens`). `prompt_tokens` and `completion_tokens` stay the totals.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
pub struct Usage {
    #[serde(default, alias = "input_tokens")]
    pub prompt_tokens: u64,
    #[serde(default, alias = "output_tokens")]
    pub completion_tokens: u64,
    #[serde(default, alias = "input_tokens_details")]
    pub prompt_tokens_details: Option<PromptDetails>,
    #[serde(default, alias = "output_tokens_details")]
    pub completion_tokens_details: Option<CompletionDetails>,
    /// DeepSeek's name for cached input.
    #[serde(default)]
    pub prompt_cache_hit_tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
pub struct PromptDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
    #[serde(default)]
    pub cache_write_tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
pub struct CompletionDetails {
    #[serde(default)]
    pub reasoning_tokens: Option<u64>,
}

impl Usage {
    /// Input tokens read from the provider's cache (never more than the input).
    pub fn cached_input_tokens(&self) -> u64 {
        let details = self.prompt_tokens_details.and_then(|d| d.cached_tokens);
        details.or(self.prompt_cache_hit_tokens).unwrap_or(0).min(self.prompt_tokens)
    }

    /// Input tokens written to the provider's cache (never more than the input).
    pub fn cache_write_tokens(&self) -> u64 {
        self.prompt_tokens_details.and_then(|d| d.cache_write_tokens).unwrap_or(0).min(self.prompt_tokens)
    }

    /// Output tokens spent on reasoning (never more than the output).
    pub fn reasoning_tokens(&self) -> u64 {
        self.completion_tokens_details.and_then(|d| d.reasoning_tokens).unwrap_or(0).min(self.completion_tokens)
    }
}

/// The usage of a whole (non-streamed) response body, wherever the endpoint puts it.
pub fn usage_of_body(body: &[u8]) -> Option<Usage> {
    body_usage(body).flatten()
}

/// Like [`usage_of_body`], but `None` when the body is not a JSON object at all (serde reads the whole body
/// either way, so telling the two apart costs nothing).
pub fn body_usage(body: &[u8]) -> Option<Option<Usage>> {
    #[derive(serde::Deserialize)]
    struct WithUsage {
        usage: Option<Usage>,
    }
    match serde_json::from_slice::<WithUsage>(body) {
        Ok(w) => Some(w.usage),
        // A `usage` member of an unexpected shape is still a JSON answer: relayed, unmetered.
        Err(e) if e.is_data() => Some(None),
        Err(_) => None,
    }
}

/// Everything about a request known when it is admitted; turned into a record when it ends.
#[derive(Clone)]
pub struct Meter {
    pub request_id: String,
    pub node_id: std::sync::Arc<str>,
    pub team_id: i64,
    pub key_id: i64,
    pub model: String,
    pub price: Price,
    pub stream: bool,
    pub started_at: DateTime<Utc>,
    pub started: Instant,
    pub provider_id: Option<i64>,
    pub upstream_model: Option<String>,
    /// A rough prompt token count (request bytes / 4), used only when the upstream reports no usage.
    pub prompt_estimate: u64,
    /// The request's hold on its limits, settled with the record (shared by the clones a stream relay keeps).
    pub limits: Option<std::sync::Arc<crate::limits::Ticket>>,
    /// The hold on the serving provider credential's capacity caps, settled likewise.
    pub target_limits: Option<std::sync::Arc<crate::limits::Ticket>>,
}

/// How a request ended.
pub struct Outcome {
    pub status: u16,
    pub error_code: Option<&'static str>,
    pub usage: Option<Usage>,
    /// Used when the upstream gave no usage: a rough count, marked as estimated.
    pub estimate: Option<Usage>,
    pub first_byte: Option<Instant>,
}

impl Meter {
    pub fn finish(&self, outcome: Outcome) -> UsageRecord {
        let (usage, source) = match (outcome.usage, outcome.estimate) {
            (Some(u), _) => (u, UsageSource::Upstream),
            (None, Some(e)) => (e, UsageSource::Estimated),
            (None, None) => (Usage::default(), UsageSource::None),
        };
        let record = UsageRecord {
            id: Uuid::now_v7(),
            request_id: self.request_id.clone(),
            node_id: self.node_id.to_string(),
            team_id: self.team_id,
            key_id: self.key_id,
            model: self.model.clone(),
            provider_id: self.provider_id,
            upstream_model: self.upstream_model.clone(),
            started_at: self.started_at,
            duration_us: micros(self.started.elapsed()),
            ttft_us: outcome.first_byte.map(|t| micros(t.saturating_duration_since(self.started))),
            status: outcome.status,
            error_code: outcome.error_code.map(str::to_owned),
            stream: self.stream,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            cached_input_tokens: usage.cached_input_tokens(),
            cache_write_tokens: usage.cache_write_tokens(),
            reasoning_tokens: usage.reasoning_tokens(),
            usage_source: source,
            cost_micros: self.price.cost(usage.prompt_tokens, usage.completion_tokens),
        };
        for t in [&self.limits, &self.target_limits].into_iter().flatten() {
            t.settle(&record);
        }
        record
    }
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(body: &str) -> (u64, u64, u64, u64, u64) {
        let u = usage_of_body(body.as_bytes()).unwrap();
        (u.prompt_tokens, u.completion_tokens, u.cached_input_tokens(), u.cache_write_tokens(), u.reasoning_tokens())
    }

    #[test]
    fn a_body_that_is_not_json_is_told_apart_from_one_without_usage() {
        assert!(body_usage(b"<html>bad gateway</html>").is_none());
        assert!(body_usage(b"{\"id\":\"x\",\"choices\":[").is_none(), "a cut body");
        assert!(matches!(body_usage(b"{\"id\":\"x\"}"), Some(None)));
        assert!(matches!(body_usage(b"{\"usage\":\"odd\"}"), Some(None)));
        assert_eq!(body_usage(b"{\"usage\":{\"prompt_tokens\":2}}").flatten().unwrap().prompt_tokens, 2);
    }

    #[test]
    fn token_classes_come_from_each_providers_own_fields() {
        let openai = r#"{"usage":{"prompt_tokens":100,"completion_tokens":50,"total_tokens":150,
            "prompt_tokens_details":{"cached_tokens":64,"audio_tokens":null},
            "completion_tokens_details":{"reasoning_tokens":30,"accepted_prediction_tokens":0}}}"#;
        assert_eq!(classes(openai), (100, 50, 64, 0, 30));
        let responses = r#"{"usage":{"input_tokens":10,"output_tokens":5,"input_tokens_details":{"cached_tokens":4},
            "output_tokens_details":{"reasoning_tokens":2}}}"#;
        assert_eq!(classes(responses), (10, 5, 4, 0, 2));
        let deepseek = r#"{"usage":{"prompt_tokens":90,"completion_tokens":9,"prompt_cache_hit_tokens":80,
            "prompt_cache_miss_tokens":10}}"#;
        assert_eq!(classes(deepseek), (90, 9, 80, 0, 0));
        let anthropic_via_adapter = r#"{"usage":{"prompt_tokens":300,"completion_tokens":20,
            "prompt_tokens_details":{"cached_tokens":100,"cache_write_tokens":150}}}"#;
        assert_eq!(classes(anthropic_via_adapter), (300, 20, 100, 150, 0));
        let plain = r#"{"usage":{"prompt_tokens":3,"completion_tokens":4,"prompt_tokens_details":null}}"#;
        assert_eq!(classes(plain), (3, 4, 0, 0, 0));
        // A class larger than its total is clamped to it.
        let odd = r#"{"usage":{"prompt_tokens":3,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":9},
            "completion_tokens_details":{"reasoning_tokens":5}}}"#;
        assert_eq!(classes(odd), (3, 1, 3, 0, 1));
    }
}
