//! The endpoints a node serves, and what differs between them on the way through.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    /// OpenAI's Responses API, passed through to providers that support it.
    Responses,
    /// Anthropic's Messages API served to Anthropic-SDK clients: passed through to Anthropic upstreams,
    /// translated to chat completions for OpenAI-compatible ones.
    Messages,
}

impl Endpoint {
    pub const ALL: [Endpoint; 5] =
        [Self::ChatCompletions, Self::Completions, Self::Embeddings, Self::Responses, Self::Messages];

    /// Path below the provider's base URL (which ends in the version segment, e.g. `/v1`).
    pub fn path(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/chat/completions",
            Self::Completions => "/completions",
            Self::Embeddings => "/embeddings",
            Self::Responses => "/responses",
            Self::Messages => "/messages",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether `stream_options.include_usage` exists for this endpoint (the Responses API always reports usage
    /// in its `response.completed` event, Anthropic's in `message_start`/`message_delta`; embeddings do not
    /// stream).
    pub fn has_stream_usage_option(self) -> bool {
        matches!(self, Self::ChatCompletions | Self::Completions)
    }
}
