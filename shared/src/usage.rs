//! Usage records: one per request a node answered, reported to the control plane in batches.
//!
//! Every record carries a unique id minted by the node, so the control plane can store a batch that is sent
//! twice (a retry after a lost acknowledgement) without counting anything twice.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::Micros;

/// Where the token counts of a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageSource {
    /// The upstream's own `usage` object.
    Upstream,
    /// Counted by the gateway because the upstream gave none (e.g. a stream cut short).
    Estimated,
    /// Nothing was consumed or nothing could be counted (e.g. the request was refused before the upstream).
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub id: Uuid,
    pub request_id: String,
    pub node_id: String,
    pub team_id: i64,
    pub key_id: i64,
    /// The public model name the client asked for.
    pub model: String,
    #[serde(default)]
    pub provider_id: Option<i64>,
    #[serde(default)]
    pub upstream_model: Option<String>,
    pub started_at: DateTime<Utc>,
    /// Time from receiving the request to sending the last byte, in microseconds.
    pub duration_us: u64,
    /// Time from receiving the request to the first byte of the upstream response, in microseconds.
    #[serde(default)]
    pub ttft_us: Option<u64>,
    /// HTTP status the client received.
    pub status: u16,
    #[serde(default)]
    pub error_code: Option<String>,
    pub stream: bool,
    /// All input tokens, cached ones included.
    pub prompt_tokens: u64,
    /// All output tokens, reasoning ones included.
    pub completion_tokens: u64,
    /// Of `prompt_tokens`, those read from the provider's prompt cache.
    #[serde(default)]
    pub cached_input_tokens: u64,
    /// Of `prompt_tokens`, those written to the provider's prompt cache.
    #[serde(default)]
    pub cache_write_tokens: u64,
    /// Of `completion_tokens`, those spent on hidden reasoning.
    #[serde(default)]
    pub reasoning_tokens: u64,
    pub usage_source: UsageSource,
    pub cost_micros: Micros,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageBatch {
    pub node_id: String,
    pub records: Vec<UsageRecord>,
}

/// The control plane's answer once a batch is durable: `stored` new records, `duplicates` already known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageAck {
    pub received: u64,
    pub stored: u64,
    pub duplicates: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trips() {
        let r = UsageRecord {
            id: Uuid::now_v7(),
            request_id: "req-1".into(),
            node_id: "n1".into(),
            team_id: 1,
            key_id: 2,
            model: "gpt-4o".into(),
            provider_id: Some(3),
            upstream_model: Some("gpt-4o-2024".into()),
            started_at: Utc::now(),
            duration_us: 1200,
            ttft_us: Some(800),
            status: 200,
            error_code: None,
            stream: true,
            prompt_tokens: 10,
            completion_tokens: 20,
            cached_input_tokens: 4,
            cache_write_tokens: 0,
            reasoning_tokens: 5,
            usage_source: UsageSource::Upstream,
            cost_micros: 225,
        };
        let b = UsageBatch { node_id: "n1".into(), records: vec![r] };
        let json = serde_json::to_string(&b).unwrap();
        assert!(json.contains("\"usage_source\":\"upstream\""));
        assert_eq!(serde_json::from_str::<UsageBatch>(&json).unwrap(), b);
    }

    #[test]
    fn a_record_without_token_classes_still_parses() {
        let json = r#"{"id":"0193a3c4-7f00-7000-8000-000000000001","request_id":"r","node_id":"n","team_id":1,
            "key_id":2,"model":"m","started_at":"2026-11-25T10:00:00Z","duration_us":1,"status":200,"stream":false,
            "prompt_tokens":10,"completion_tokens":2,"usage_source":"upstream","cost_micros":3}"#;
        let r: UsageRecord = serde_json::from_str(json).unwrap();
        assert_eq!((r.cached_input_tokens, r.cache_write_tokens, r.reasoning_tokens), (0, 0, 0));
    }
}
