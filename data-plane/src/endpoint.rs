//! The OpenAI endpoints a node serves, and what differs between them on the way through.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    /// OpenAI's Responses API, passed through to providers that support it.
    Responses,
}

impl Endpoint {
    pub const ALL: [Endpoint; 4] = [Self::ChatCompletions, Self::Completions, Self::Embeddings, Self::Responses];

    /// Path below the provider's base URL (which ends in the version segment, e.g. `/v1`).
    pub fn path(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/chat/completions",
            Self::Completions => "/completions",
            Self::Embeddings => "/embeddings",
            Self::Responses => "/responses",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether `stream_options.include_usage` exists for this endpoint (the Responses API always reports usage
    /// in its `response.completed` event; embeddings do not stream).
    pub fn has_stream_usage_option(self) -> bool {
        matches!(self, Self::ChatCompletions | Self::Completions)
    }
}
