//! Upstream providers: one module per provider kind, each turning a snapshot provider entry into an
//! [`Upstream`] that knows its URLs and how to authenticate. OpenAI-compatible passthrough is the fast path.

mod openai_compatible;

use reqwest::header::HeaderValue;
use switchyard_shared::snapshot::{ProviderEntry, ProviderKind};

use crate::endpoint::Endpoint;

/// A provider endpoint ready for the request path: URLs joined and the auth header built once per snapshot.
pub struct Upstream {
    pub id: i64,
    pub name: Box<str>,
    /// One URL per [`Endpoint`], joined and parsed once per snapshot (parsing per request cost ~5 % of CPU).
    urls: [reqwest::Url; 4],
    /// This provider's overrides of the node's upstream time limits.
    pub timeouts: switchyard_shared::snapshot::UpstreamTimeouts,
    /// The header name and value carrying the credential, marked sensitive so it is never logged.
    pub auth: Option<(&'static str, HeaderValue)>,
}

impl Upstream {
    pub fn url(&self, endpoint: Endpoint) -> &reqwest::Url {
        &self.urls[endpoint.index()]
    }

    /// `None` for provider kinds this node does not speak, or a base URL it cannot parse (the routes through
    /// them are dropped, and such a model answers `no_route`).
    pub fn from_entry(entry: &ProviderEntry) -> Option<Self> {
        match entry.kind {
            ProviderKind::OpenaiCompatible => openai_compatible::upstream(entry),
            ProviderKind::Unsupported => None,
        }
    }
}
