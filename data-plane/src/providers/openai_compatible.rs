//! OpenAI-compatible upstreams (OpenAI, DeepSeek, Qwen compatible mode, GLM, vLLM, Ollama, ...): the request
//! body is forwarded as received except for the model name, and the credential goes in a bearer header.

use reqwest::header::HeaderValue;
use switchyard_shared::snapshot::ProviderEntry;

use super::Upstream;
use crate::endpoint::Endpoint;

pub(super) fn upstream(entry: &ProviderEntry) -> Upstream {
    let base = entry.base_url.trim_end_matches('/');
    let auth = entry.credential.as_deref().and_then(|c| {
        let mut v = HeaderValue::from_str(&format!("Bearer {c}")).ok()?;
        v.set_sensitive(true);
        Some(("authorization", v))
    });
    Upstream {
        id: entry.id,
        name: entry.name.as_str().into(),
        urls: Endpoint::ALL.map(|e| format!("{base}{}", e.path()).into()),
        timeouts: entry.timeouts,
        auth,
    }
}
