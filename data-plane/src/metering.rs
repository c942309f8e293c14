//! The usage record of one request: who asked, what was served, how long it took and what it cost.

use std::time::Instant;

use chrono::{DateTime, Utc};
use switchyard_shared::usage::UsageSource;
use switchyard_shared::{Price, UsageRecord};
use uuid::Uuid;

/// Token counts as reported by an upstream's `usage` object (Chat/Completions/Embeddings names, or the
/// Responses API's `input_tokens`/`output_tokens`).
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
pub struct Usage {
    #[serde(default, alias = "input_tokens")]
    pub prompt_tokens: u64,
    #[serde(default, alias = "output_tokens")]
    pub completion_tokens: u64,
}

/// The usage of a whole (non-streamed) response body, wherever the endpoint puts it.
pub fn usage_of_body(body: &[u8]) -> Option<Usage> {
    #[derive(serde::Deserialize)]
    struct WithUsage {
        usage: Option<Usage>,
    }
    serde_json::from_slice::<WithUsage>(body).ok()?.usage
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
            cached_input_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            usage_source: source,
            cost_micros: self.price.cost(usage.prompt_tokens, usage.completion_tokens),
        };
        if let Some(t) = &self.limits {
            t.settle(&record);
        }
        record
    }
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
