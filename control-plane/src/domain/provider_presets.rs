//! Provider presets: the well-known upstreams an operator adds in one step. A preset fixes the provider kind
//! (and so the auth header style), the base URL — a template where the provider needs operator-specific parts,
//! such as Azure's resource, deployment and API version — and suggests the models to create; the operator pastes
//! only the credential.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchyard_shared::snapshot::ProviderKind;

use super::audit::Actor;
use super::providers::{self, Provider, ProviderInput};
use super::{DomainError, Store};

/// A value the operator supplies to fill a `{name}` placeholder of a preset's base URL.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Param {
    pub name: &'static str,
    pub description: &'static str,
    /// Used when the operator gives none; `None` makes the parameter required.
    pub default: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Preset {
    pub id: &'static str,
    pub name: &'static str,
    pub kind: ProviderKind,
    /// How the credential is sent: `bearer` (`Authorization: Bearer`), `api-key` (Azure) or `x-api-key`
    /// (Anthropic). Follows from `kind`.
    pub auth: &'static str,
    /// The base URL, with `{param}` placeholders filled from `params`.
    pub base_url: &'static str,
    pub params: &'static [Param],
    /// Whether the provider needs a credential at all (local servers do not).
    pub needs_credential: bool,
    /// Upstream model names worth creating models for.
    pub default_models: &'static [&'static str],
    pub notes: &'static str,
}

const fn preset(
    id: &'static str,
    name: &'static str,
    base_url: &'static str,
    default_models: &'static [&'static str],
    notes: &'static str,
) -> Preset {
    Preset {
        id,
        name,
        kind: ProviderKind::OpenaiCompatible,
        auth: "bearer",
        base_url,
        params: &[],
        needs_credential: true,
        default_models,
        notes,
    }
}

const LOCAL_URL: &str = "Base URL of the server, ending in /v1.";

pub const PRESETS: &[Preset] = &[
    preset("openai", "OpenAI", "https://api.openai.com/v1", &["gpt-4.1", "gpt-4.1-mini", "gpt-4o", "gpt-4o-mini"], ""),
    Preset {
        id: "anthropic",
        name: "Anthropic",
        kind: ProviderKind::Anthropic,
        auth: "x-api-key",
        base_url: "https://api.anthropic.com/v1",
        params: &[],
        needs_credential: true,
        default_models: &["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"],
        notes: "Messages API; chat completions are translated, /v1/messages passes through.",
    },
    preset(
        "gemini",
        "Google Gemini",
        "https://generativelanguage.googleapis.com/v1beta/openai",
        &["gemini-3-flash-preview", "gemini-2.5-pro", "gemini-2.5-flash"],
        "Gemini's OpenAI-compatible endpoint with a Gemini API key.",
    ),
    preset(
        "deepseek",
        "DeepSeek",
        "https://api.deepseek.com/v1",
        &["deepseek-chat", "deepseek-reasoner"],
        "deepseek-reasoner returns reasoning_content, which must be sent back on tool turns.",
    ),
    preset(
        "qwen",
        "Qwen (DashScope)",
        "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
        &["qwen-plus", "qwen-max", "qwen-turbo", "qwen3-coder-plus"],
        "International endpoint; mainland China accounts use https://dashscope.aliyuncs.com/compatible-mode/v1. Thinking: enable_thinking.",
    ),
    preset(
        "glm",
        "GLM (Zhipu)",
        "https://open.bigmodel.cn/api/paas/v4",
        &["glm-4.6", "glm-4.5-air"],
        "Z.ai international accounts use https://api.z.ai/api/paas/v4. Thinking: thinking.type.",
    ),
    preset(
        "moonshot",
        "Moonshot (Kimi)",
        "https://api.moonshot.ai/v1",
        &["kimi-k2-0905-preview", "kimi-k2-turbo-preview", "moonshot-v1-32k"],
        "Mainland China accounts use https://api.moonshot.cn/v1.",
    ),
    preset(
        "mistral",
        "Mistral",
        "https://api.mistral.ai/v1",
        &["mistral-large-latest", "mistral-small-latest", "codestral-latest"],
        "",
    ),
    preset("groq", "Groq", "https://api.groq.com/openai/v1", &["llama-3.3-70b-versatile", "llama-3.1-8b-instant"], ""),
    preset(
        "openrouter",
        "OpenRouter",
        "https://openrouter.ai/api/v1",
        &["openai/gpt-4o", "anthropic/claude-sonnet-4.5", "google/gemini-2.5-flash"],
        "",
    ),
    Preset {
        id: "azure_openai",
        name: "Azure OpenAI",
        kind: ProviderKind::AzureOpenai,
        auth: "api-key",
        base_url: "https://{resource}.openai.azure.com/openai/deployments/{deployment}?api-version={api_version}",
        params: &[
            Param { name: "resource", description: "Azure OpenAI resource name.", default: None },
            Param { name: "deployment", description: "Deployment name (it fixes the model).", default: None },
            Param { name: "api_version", description: "Azure OpenAI API version.", default: Some("2024-10-21") },
        ],
        needs_credential: true,
        default_models: &[],
        notes: "One provider per deployment; the deployment decides the model.",
    },
    Preset {
        id: "vllm",
        name: "vLLM",
        kind: ProviderKind::OpenaiCompatible,
        auth: "bearer",
        base_url: "{base_url}",
        params: &[Param { name: "base_url", description: LOCAL_URL, default: Some("http://localhost:8000/v1") }],
        needs_credential: false,
        default_models: &[],
        notes: "The credential is optional (vllm serve --api-key).",
    },
    Preset {
        id: "ollama",
        name: "Ollama",
        kind: ProviderKind::OpenaiCompatible,
        auth: "bearer",
        base_url: "{base_url}",
        params: &[Param { name: "base_url", description: LOCAL_URL, default: Some("http://localhost:11434/v1") }],
        needs_credential: false,
        default_models: &["llama3.2", "qwen2.5"],
        notes: "",
    },
];

pub fn find(id: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.id == id)
}

/// Body of `POST /providers/from-preset`.
#[derive(Clone, Deserialize)]
pub struct FromPreset {
    pub preset: String,
    /// Defaults to the preset's display name.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

impl std::fmt::Debug for FromPreset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FromPreset")
            .field("preset", &self.preset)
            .field("name", &self.name)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("params", &self.params)
            .finish()
    }
}

/// The preset's base URL with its placeholders filled. Parameters other than `base_url` end up inside a host
/// name or path segment, so they are limited to letters, digits, `.`, `-` and `_`.
pub fn base_url(preset: &Preset, params: &BTreeMap<String, String>) -> Result<String, DomainError> {
    if let Some(unknown) = params.keys().find(|k| !preset.params.iter().any(|p| p.name == k.as_str())) {
        return Err(DomainError::invalid(
            format!("params.{unknown}"),
            format!("preset `{}` has no parameter `{unknown}`", preset.id),
        ));
    }
    let mut url = preset.base_url.to_owned();
    for p in preset.params {
        let param = format!("params.{}", p.name);
        let value = match (params.get(p.name).map(|v| v.trim()).filter(|v| !v.is_empty()), p.default) {
            (Some(v), _) => v,
            (None, Some(d)) => d,
            (None, None) => return Err(DomainError::invalid(param, format!("{} is required", p.name))),
        };
        if p.name != "base_url" && !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) {
            return Err(DomainError::invalid(
                param,
                format!("{} may hold only letters, digits, `.`, `-` and `_`", p.name),
            ));
        }
        url = url.replace(&format!("{{{}}}", p.name), value);
    }
    Ok(url)
}

/// Creates a provider from a preset; the credential is required unless the preset is a local server.
pub async fn create(store: &Store, actor: &Actor, input: FromPreset) -> Result<Provider, DomainError> {
    let preset = find(&input.preset).ok_or_else(|| {
        let known: Vec<&str> = PRESETS.iter().map(|p| p.id).collect();
        DomainError::invalid("preset", format!("unknown preset `{}`; known: {}", input.preset, known.join(", ")))
    })?;
    let base_url = base_url(preset, &input.params)?;
    let api_key = input.api_key.filter(|k| !k.trim().is_empty());
    if preset.needs_credential && api_key.is_none() {
        return Err(DomainError::invalid("api_key", format!("{} needs an API key", preset.name)));
    }
    let provider = ProviderInput {
        name: input.name.unwrap_or_else(|| preset.name.to_owned()),
        kind: Some(providers::kind_str(preset.kind).to_owned()),
        base_url,
        api_key,
        timeouts: Default::default(),
        caps: Default::default(),
        model_caps: Vec::new(),
    };
    providers::create(store, actor, provider).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn azure_fills_resource_deployment_and_a_default_api_version() {
        let azure = find("azure_openai").unwrap();
        let url = base_url(azure, &params(&[("resource", "acme"), ("deployment", "gpt4o-prod")])).unwrap();
        assert_eq!(url, "https://acme.openai.azure.com/openai/deployments/gpt4o-prod?api-version=2024-10-21");
        assert!(base_url(azure, &params(&[("resource", "acme")])).is_err(), "deployment is required");
        assert!(base_url(azure, &params(&[("resource", "a/b"), ("deployment", "d")])).is_err());
        assert!(base_url(azure, &params(&[("resource", "a"), ("deployment", "d"), ("x", "y")])).is_err());
    }

    #[test]
    fn every_preset_has_a_unique_id_and_a_kind_that_matches_its_auth() {
        let mut ids: Vec<&str> = PRESETS.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), PRESETS.len());
        for p in PRESETS {
            let expected = match p.kind {
                ProviderKind::Anthropic => "x-api-key",
                ProviderKind::AzureOpenai => "api-key",
                _ => "bearer",
            };
            assert_eq!(p.auth, expected, "{}", p.id);
            if p.params.is_empty() {
                assert_eq!(base_url(p, &BTreeMap::new()).unwrap(), p.base_url);
            }
        }
        assert_eq!(base_url(find("ollama").unwrap(), &BTreeMap::new()).unwrap(), "http://localhost:11434/v1");
    }
}
