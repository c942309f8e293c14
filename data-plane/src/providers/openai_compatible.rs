//! OpenAI-compatible upstreams (OpenAI, DeepSeek, Qwen compatible mode, GLM, Moonshot, Mistral, Groq,
//! OpenRouter, Gemini's OpenAI endpoint, vLLM, Ollama, Azure OpenAI): the request body is forwarded as received
//! except for the model name. The credential goes in a bearer header, or Azure's `api-key` header.

use switchyard_shared::snapshot::ProviderEntry;

use super::{Dialect, Upstream, join, sensitive};
use crate::endpoint::Endpoint;

#[derive(Debug, Clone, Copy)]
pub(super) enum Auth {
    Bearer,
    /// Azure OpenAI: `api-key: <key>`; the base URL is the deployment's and carries `?api-version=`.
    AzureApiKey,
}

pub(super) fn upstream(entry: &ProviderEntry, auth_style: Auth) -> Option<Upstream> {
    let auth = entry.credential.as_deref().and_then(|c| match auth_style {
        Auth::Bearer => Some(("authorization", sensitive(&format!("Bearer {c}"))?)),
        Auth::AzureApiKey => Some(("api-key", sensitive(c)?)),
    });
    let mut urls: [Option<reqwest::Url>; 5] = Default::default();
    for e in Endpoint::ALL {
        // Anthropic-shaped requests are translated to chat completions for these upstreams.
        let path = if e == Endpoint::Messages { Endpoint::ChatCompletions.path() } else { e.path() };
        match join(&entry.base_url, path) {
            Some(url) => urls[e.index()] = Some(url),
            None => {
                tracing::error!(provider = %entry.name, "provider base URL does not parse; its routes are dropped");
                return None;
            }
        }
    }
    Some(Upstream {
        id: entry.id,
        name: entry.name.as_str().into(),
        dialect: Dialect::OpenAi,
        urls,
        timeouts: entry.timeouts,
        auth,
        extra_header: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(base_url: &str) -> ProviderEntry {
        ProviderEntry {
            id: 1,
            name: "p".into(),
            kind: switchyard_shared::snapshot::ProviderKind::AzureOpenai,
            base_url: base_url.into(),
            credential: Some("k".into()),
            timeouts: Default::default(),
            caps: Default::default(),
            model_caps: Vec::new(),
        }
    }

    #[test]
    fn azure_keeps_the_api_version_after_the_path_and_sends_api_key() {
        let u = upstream(
            &entry("https://res.openai.azure.com/openai/deployments/gpt4o?api-version=2024-10-21"),
            Auth::AzureApiKey,
        )
        .unwrap();
        assert_eq!(
            u.url(Endpoint::ChatCompletions).unwrap().as_str(),
            "https://res.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"
        );
        let (name, value) = u.auth.as_ref().unwrap();
        assert_eq!((*name, value.to_str().unwrap()), ("api-key", "k"));
        assert!(value.is_sensitive());
    }

    #[test]
    fn anthropic_shaped_requests_go_to_chat_completions() {
        let u = upstream(&entry("https://api.deepseek.com/v1/"), Auth::Bearer).unwrap();
        assert_eq!(u.url(Endpoint::Messages).unwrap().as_str(), "https://api.deepseek.com/v1/chat/completions");
        assert_eq!(u.auth.as_ref().unwrap().1.to_str().unwrap(), "Bearer k");
    }
}
