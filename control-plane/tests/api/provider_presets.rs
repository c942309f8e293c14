//! Provider presets: listed in the admin API; creating from one fills kind, base URL and auth style, and the
//! operator supplies only the credential (plus Azure's resource and deployment).

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_control_plane::domain::providers::Provider;
use switchyard_shared::snapshot::ProviderKind;

use crate::helpers::{Backend, expect_error, expect_json, spawn_app};

async fn presets_are_listed_and_create_providers_in_one_step(backend: Backend) {
    let app = spawn_app(backend).await;
    let presets: Vec<Value> = expect_json(app.api_get("/provider-presets").await, StatusCode::OK).await;
    let ids: Vec<&str> = presets.iter().filter_map(|p| p["id"].as_str()).collect();
    for id in [
        "openai",
        "anthropic",
        "gemini",
        "deepseek",
        "qwen",
        "glm",
        "moonshot",
        "mistral",
        "groq",
        "openrouter",
        "azure_openai",
        "vllm",
        "ollama",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    let deepseek = presets.iter().find(|p| p["id"] == "deepseek").unwrap();
    assert_eq!(deepseek["default_models"], json!(["deepseek-chat", "deepseek-reasoner"]));
    assert_eq!(deepseek["auth"], "bearer");

    let p: Provider = expect_json(
        app.api_post("/providers/from-preset", &json!({ "preset": "deepseek", "api_key": "sk-ds" })).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(
        (p.name.as_str(), p.kind, p.base_url.as_str()),
        ("DeepSeek", ProviderKind::OpenaiCompatible, "https://api.deepseek.com/v1")
    );
    assert!(p.has_credential);

    let p: Provider = expect_json(
        app.api_post(
            "/providers/from-preset",
            &json!({ "preset": "anthropic", "name": "claude", "api_key": "sk-ant" }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!((p.kind, p.base_url.as_str()), (ProviderKind::Anthropic, "https://api.anthropic.com/v1"));

    let p: Provider = expect_json(
        app.api_post(
            "/providers/from-preset",
            &json!({ "preset": "azure_openai", "name": "azure-gpt4o", "api_key": "az-key",
                     "params": { "resource": "acme", "deployment": "gpt4o" } }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(p.kind, ProviderKind::AzureOpenai);
    assert_eq!(p.base_url, "https://acme.openai.azure.com/openai/deployments/gpt4o?api-version=2024-10-21");

    // Local servers need no key; the URL can be moved.
    let p: Provider = expect_json(
        app.api_post(
            "/providers/from-preset",
            &json!({ "preset": "ollama", "params": { "base_url": "http://gpu-box:11434/v1" } }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!((p.base_url.as_str(), p.has_credential), ("http://gpu-box:11434/v1", false));

    // The snapshot carries the kinds to the nodes.
    let snapshot = app.latest_snapshot().await;
    let kinds: Vec<ProviderKind> = snapshot.providers.iter().map(|p| p.kind).collect();
    assert!(kinds.contains(&ProviderKind::Anthropic) && kinds.contains(&ProviderKind::AzureOpenai), "{kinds:?}");
}

async fn preset_mistakes_are_refused_with_the_parameter_named(backend: Backend) {
    let app = spawn_app(backend).await;
    for (body, param) in [
        (json!({ "preset": "nope", "api_key": "k" }), "preset"),
        (json!({ "preset": "groq" }), "api_key"),
        (json!({ "preset": "azure_openai", "api_key": "k", "params": { "resource": "acme" } }), "params.deployment"),
        (
            json!({ "preset": "azure_openai", "api_key": "k", "params": { "resource": "a.b/evil#", "deployment": "d" } }),
            "params.resource",
        ),
        (json!({ "preset": "groq", "api_key": "k", "params": { "region": "eu" } }), "params.region"),
    ] {
        let e = expect_error(app.api_post("/providers/from-preset", &body).await, StatusCode::BAD_REQUEST).await;
        assert_eq!(e.error.param.as_deref(), Some(param), "{body}: {e:?}");
    }
    let e = expect_error(
        app.api_post("/providers", &json!({ "name": "x", "kind": "gemini_native", "base_url": "https://x" })).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(e.error.message.contains("anthropic"), "{}", e.error.message);
}

backend_tests!(
    presets_are_listed_and_create_providers_in_one_step,
    preset_mistakes_are_refused_with_the_parameter_named
);
