//! Upstream providers: one module per provider kind, each turning a snapshot provider entry into an
//! [`Upstream`] that knows its URLs and how to authenticate, and — for providers that do not speak OpenAI —
//! translating requests, responses, stream events, errors and usage.
//!
//! The seam is [`Translation`], chosen per attempt from the endpoint the client called and the upstream's
//! [`Dialect`]. `Translation::None` is the OpenAI-compatible fast path: the body goes through as bytes with only
//! the model replaced, and nothing in this module touches a successful response (an error body in Gemini's array
//! shape is rewritten to OpenAI's, see `google_errors`).

mod anthropic;
mod anthropic_stream;
#[cfg(test)]
mod dialect_quirks;
mod google_errors;
mod messages_inbound;
mod openai_compatible;
mod sse;

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use reqwest::header::HeaderValue;
use switchyard_shared::snapshot::{ProviderEntry, ProviderKind};

use crate::endpoint::Endpoint;
use crate::error::ProxyError;
use crate::metering::Usage;
use crate::request::RequestBody;

/// A response body as the upstream sends it, chunk by chunk.
pub type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// The wire format an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAI's chat completions, completions, embeddings and responses.
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
}

/// A provider endpoint ready for the request path: URLs joined and the auth header built once per snapshot.
pub struct Upstream {
    pub id: i64,
    pub name: Box<str>,
    pub dialect: Dialect,
    /// One URL per [`Endpoint`] (`None` where this provider has no such endpoint), joined and parsed once per
    /// snapshot (parsing per request cost ~5 % of CPU).
    urls: [Option<reqwest::Url>; 5],
    /// This provider's overrides of the node's upstream time limits.
    pub timeouts: switchyard_shared::snapshot::UpstreamTimeouts,
    /// The header name and value carrying the credential, marked sensitive so it is never logged.
    pub auth: Option<(&'static str, HeaderValue)>,
    /// A header the provider requires on every request besides the credential (Anthropic's API version).
    pub extra_header: Option<(&'static str, HeaderValue)>,
}

impl Upstream {
    pub fn url(&self, endpoint: Endpoint) -> Option<&reqwest::Url> {
        self.urls[endpoint.index()].as_ref()
    }

    /// `None` for provider kinds this node does not speak, or a base URL it cannot parse (the routes through
    /// them are dropped, and such a model answers `no_route`).
    pub fn from_entry(entry: &ProviderEntry) -> Option<Self> {
        match entry.kind {
            ProviderKind::OpenaiCompatible => openai_compatible::upstream(entry, openai_compatible::Auth::Bearer),
            ProviderKind::AzureOpenai => openai_compatible::upstream(entry, openai_compatible::Auth::AzureApiKey),
            ProviderKind::Anthropic => anthropic::upstream(entry),
            ProviderKind::Unsupported => None,
        }
    }
}

/// The credential as a header value that never shows in logs.
fn sensitive(value: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(value).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// `base` + `path`, keeping a query string of `base` (Azure's `?api-version=`) at the end.
fn join(base: &str, path: &str) -> Option<reqwest::Url> {
    let (base, query) = base.split_once('?').map_or((base, None), |(b, q)| (b, Some(q)));
    let base = base.trim_end_matches('/');
    let joined = match query {
        Some(q) => format!("{base}{path}?{q}"),
        None => format!("{base}{path}"),
    };
    reqwest::Url::parse(&joined).ok()
}

/// How one request passes through one upstream: which format the client speaks versus the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Translation {
    /// Same dialect on both sides: bytes pass through with the model replaced (the fast path).
    None,
    /// An OpenAI chat-completions client, an Anthropic upstream.
    ChatToAnthropic,
    /// An Anthropic Messages client, an OpenAI-compatible chat-completions upstream.
    MessagesToChat,
    /// An Anthropic Messages client and upstream: bytes pass through; usage is read in Anthropic's shape.
    MessagesPassthrough,
}

impl Translation {
    pub fn of(endpoint: Endpoint, dialect: Dialect) -> Result<Self, ProxyError> {
        match (endpoint, dialect) {
            (Endpoint::Messages, Dialect::OpenAi) => Ok(Self::MessagesToChat),
            (Endpoint::Messages, Dialect::Anthropic) => Ok(Self::MessagesPassthrough),
            (_, Dialect::OpenAi) => Ok(Self::None),
            (Endpoint::ChatCompletions, Dialect::Anthropic) => Ok(Self::ChatToAnthropic),
            (_, Dialect::Anthropic) => Err(ProxyError::BadRequest(format!(
                "This model is served by Anthropic, which has no `{}` endpoint; use /v1/chat/completions.",
                endpoint.path()
            ))),
        }
    }

    /// The body to send upstream.
    pub fn request_body(
        self,
        endpoint: Endpoint,
        body: &[u8],
        parsed: &RequestBody<'_>,
        upstream_model: &str,
        upstream_model_json: &str,
    ) -> Result<Vec<u8>, ProxyError> {
        match self {
            Self::None => Ok(parsed.upstream_body(upstream_model_json, endpoint.has_stream_usage_option())),
            Self::MessagesPassthrough => Ok(parsed.upstream_body(upstream_model_json, false)),
            Self::ChatToAnthropic => anthropic::request(body, upstream_model),
            Self::MessagesToChat => messages_inbound::request(body, upstream_model),
        }
    }

    /// The status the client sees for the upstream's (Anthropic's 529 "overloaded" is not an HTTP status
    /// OpenAI clients know; it becomes 503).
    pub fn client_status(self, status: u16) -> u16 {
        match (self, status) {
            (Self::ChatToAnthropic, 529) => 503,
            _ => status,
        }
    }

    /// A whole response for the client: its status, body and the usage read from it. A 2xx body that is not
    /// the upstream's format becomes a 502.
    pub fn response_body(self, status: u16, body: Bytes) -> (u16, Bytes, Option<Usage>) {
        let ok = (200..300).contains(&status);
        let translated = match self {
            // A success that is not JSON (an HTML page from a proxy, a cut body) becomes the gateway's 502.
            Self::None if ok => match crate::metering::body_usage(&body) {
                Some(usage) => return (status, body, usage),
                None => None,
            },
            // Gemini's error array is the one OpenAI-compatible error body clients cannot read.
            Self::None => return (status, google_errors::to_openai(&body).map_or(body, Bytes::from), None),
            Self::MessagesPassthrough => {
                let usage = if ok { anthropic::usage_of_message(&body) } else { None };
                return (status, body, usage);
            }
            Self::ChatToAnthropic if ok => anthropic::response(&body).map(|out| {
                let usage = crate::metering::usage_of_body(&out);
                (out, usage)
            }),
            // `status` is already the client's (see `client_status`).
            Self::ChatToAnthropic => return (status, anthropic::error(&body).into(), None),
            Self::MessagesToChat if ok => {
                let usage = crate::metering::usage_of_body(&body);
                messages_inbound::response(&body).map(|out| (out, usage))
            }
            Self::MessagesToChat => return (status, messages_inbound::error(status, &body).into(), None),
        };
        match translated {
            Some((out, usage)) => (status, Bytes::from(out), usage),
            None => {
                let e = ProxyError::UpstreamInvalid;
                let body = switchyard_shared::ErrorBody::new(e.to_string(), e.kind(), e.code()).to_json();
                (e.status().as_u16(), Bytes::from(body), None)
            }
        }
    }

    /// The upstream's event stream as the client's dialect.
    pub fn stream(self, upstream: ByteStream) -> ByteStream {
        match self {
            Self::None | Self::MessagesPassthrough => upstream,
            Self::ChatToAnthropic => Box::pin(sse::Translated::new(upstream, anthropic_stream::ToChat::default())),
            Self::MessagesToChat => {
                Box::pin(sse::Translated::new(upstream, messages_inbound::ToMessagesStream::default()))
            }
        }
    }

    /// Whether the client receives Anthropic events, whose usage the relay reads from `message_start` and
    /// `message_delta` rather than from an OpenAI usage chunk.
    pub fn client_speaks_anthropic(self) -> bool {
        matches!(self, Self::MessagesToChat | Self::MessagesPassthrough)
    }
}

/// The usage the relay keeps while it forwards an Anthropic event stream (see [`anthropic::StreamUsage::scan`]).
pub use anthropic::StreamUsage as AnthropicStreamUsage;
