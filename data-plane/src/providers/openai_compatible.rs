//! OpenAI-compatible upstreams (OpenAI, DeepSeek, Qwen compatible mode, GLM, vLLM, Ollama, ...): the request
//! body is forwarded as received except for the model name, and the credential goes in a bearer header.

use reqwest::header::HeaderValue;
use switchyard_shared::snapshot::ProviderEntry;

use super::Upstream;
use crate::endpoint::Endpoint;

pub(super) fn upstream(entry: &ProviderEntry) -> Option<Upstream> {
    let base = entry.base_url.trim_end_matches('/');
    let auth = entry.credential.as_deref().and_then(|c| {
        let mut v = HeaderValue::from_str(&format!("Bearer {c}")).ok()?;
        v.set_sensitive(true);
        Some(("authorization", v))
    });
    let urls = Endpoint::ALL.map(|e| reqwest::Url::parse(&format!("{base}{}", e.path())));
    let urls = match urls {
        [Ok(a), Ok(b), Ok(c), Ok(d)] => [a, b, c, d],
        _ => {
            tracing::error!(provider = %entry.name, "provider base URL does not parse; its routes are dropped");
            return None;
        }
    };
    Some(Upstream { id: entry.id, name: entry.name.as_str().into(), urls, timeouts: entry.timeouts, auth })
}
