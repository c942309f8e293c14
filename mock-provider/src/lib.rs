//! A deterministic OpenAI-compatible upstream that Switchyard's tests and benchmarks point the gateway at.
//!
//! Every answer is a pure function of the request and the [`MockConfig`], so tests can assert exact bodies and
//! usage numbers:
//!
//! - the completion is `chunks` tokens, token `i` being the text `"tok{i} "`; `completion_tokens = chunks`;
//! - `prompt_tokens` is the number of whitespace-separated words in the request's text (message contents and
//!   text parts for chat, the prompt for completions, the inputs for embeddings);
//! - `total_tokens = prompt_tokens + completion_tokens`;
//! - ids are `chatcmpl-mock-<n>` / `cmpl-mock-<n>` where `n` is the server's request counter.
//!
//! `POST /v1/messages` answers in Anthropic's Messages shapes by the same rules (see [`anthropic`]); the OpenAI
//! routes under `/v1beta/openai/` answer as Gemini's OpenAI-compatible endpoint does (see [`gemini`]).
//!
//! A request may carry a non-OpenAI `mock` object to override the config for itself:
//! `{"chunks":N,"chunk_delay_ms":D,"latency_ms":L,"status":S,"fail_after_chunks":K}`.

mod answer;
pub mod anthropic;
mod body;
mod chat;
mod completions;
mod embeddings;
mod error;
pub mod gemini;
mod handle;
mod responses;
mod server;
mod state;
mod wire;

use std::time::Duration;

pub use handle::{MockHandle, RecordedRequest};
pub use server::start;

/// How the mock answers when a request does not override it.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Tokens per completion.
    pub chunks: usize,
    /// Pause before each streamed token chunk.
    pub chunk_delay: Duration,
    /// Pause before the response headers.
    pub latency: Duration,
    /// When set, every request must send `Authorization: Bearer <key>` or get a 401.
    pub api_key: Option<String>,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self { chunks: 5, chunk_delay: Duration::ZERO, latency: Duration::ZERO, api_key: None }
    }
}

/// The mock's own rate limit, like a provider credential's: `requests` per fixed window of `window` (starting
/// with the first request after it is set). Past it the mock answers 429 with `Retry-After` (whole seconds to the
/// window's end) and OpenAI's `x-ratelimit-limit-requests`/`x-ratelimit-reset-requests` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u64,
    pub window: Duration,
}

/// A fault injected into every subsequent request until cleared with `set_failure(None)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Answer with this status and an OpenAI-shaped error body.
    Status(u16),
    /// Never answer (the connection stays open).
    Hang,
    /// Answer 200 with a body that is not JSON.
    Garbage,
    /// Cut every stream after its first token chunk (the connection is dropped, no `[DONE]`); requests that
    /// are not streamed are answered normally.
    CutStreams,
}
