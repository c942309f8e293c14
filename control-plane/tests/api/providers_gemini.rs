//! Gemini through its preset, end to end: a provider made with `POST /providers/from-preset` (`gemini`), its base
//! URL pointed at the mock's Gemini mode, chat through a real node (plain and streamed), usage metered, and
//! Google's error array turned into an OpenAI-shaped error.

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_mock_provider::{Failure, MockConfig, MockHandle};

use crate::helpers::{Backend, TestApp, expect_error, expect_json, spawn_app};
use crate::node::{TestNode, chat_body, spawn_node, start_mock};

const CREDENTIAL: &str = "AIza-gemini-upstream-secret";

struct Setup {
    app: TestApp,
    gemini: MockHandle,
    _openai: MockHandle,
    node: TestNode,
    key: String,
    team_id: i64,
    _dir: tempfile::TempDir,
}

async fn setup(backend: Backend) -> Setup {
    let app = spawn_app(backend).await;
    let config = MockConfig { api_key: Some(CREDENTIAL.to_owned()), ..MockConfig::default() };
    let gemini = switchyard_mock_provider::start(([127, 0, 0, 1], 0).into(), config).await.unwrap();
    let openai = start_mock().await;
    let tenant = app.setup_tenant(&openai.base_url(), "gpt").await;

    let provider: Value = expect_json(
        app.api_post("/providers/from-preset", &json!({ "preset": "gemini", "api_key": CREDENTIAL })).await,
        StatusCode::CREATED,
    )
    .await;
    // The preset targets Google's OpenAI-compatible endpoint with an OpenAI-kind provider (Bearer auth).
    assert_eq!(provider["base_url"], "https://generativelanguage.googleapis.com/v1beta/openai");
    assert_eq!(provider["kind"], "openai_compatible");
    // The preset has no base-URL parameter, so the test repoints the provider at the mock, keeping the rest.
    let id = provider["id"].as_i64().unwrap();
    let updated: Value = expect_json(
        app.api_put(
            &format!("/providers/{id}"),
            &json!({ "name": provider["name"], "kind": provider["kind"], "base_url": gemini.gemini_base_url() }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert!(updated["base_url"].as_str().unwrap().ends_with("/v1beta/openai"), "{updated}");
    app.create_simple_model("gem", id, "gemini-2.5-flash", 300_000, 2_500_000).await;

    let dir = tempfile::tempdir().unwrap();
    let node = spawn_node(&app, dir.path()).await;
    node.wait_for_config(&app).await;
    Setup { app, gemini, _openai: openai, node, key: tenant.key, team_id: tenant.team.id, _dir: dir }
}

async fn a_gemini_preset_route_answers_chat_and_meters_usage(backend: Backend) {
    let s = setup(backend).await;

    let res = s.node.chat(&s.key, &chat_body("gem", false)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "tok0 tok1 tok2 tok3 tok4 ");
    assert_eq!(body["usage"]["prompt_tokens"], 5);
    assert_eq!(body["usage"]["completion_tokens"], 5);
    let sent = s.gemini.last_request().unwrap();
    assert_eq!(sent.path, "/v1beta/openai/chat/completions");
    assert_eq!(sent.authorization.as_deref(), Some(format!("Bearer {CREDENTIAL}").as_str()));
    assert_eq!(sent.body["model"], "gemini-2.5-flash");

    let mut streamed = chat_body("gem", true);
    streamed["stream_options"] = json!({ "include_usage": true });
    let res = s.node.chat(&s.key, &streamed).await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    let chunks: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let content: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(content, "tok0 tok1 tok2 tok3 tok4 ");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert_eq!(chunks.last().unwrap()["usage"]["total_tokens"], 10, "{text}");

    s.node.node.usage.flush().await;
    let page = s.app.usage(&format!("team_id={}", s.team_id)).await;
    assert_eq!(page.data.len(), 2, "{page:?}");
    for stored in &page.data {
        let r = &stored.record;
        assert_eq!((r.status, r.prompt_tokens, r.completion_tokens), (200, 5, 5), "{r:?}");
        assert_eq!(r.upstream_model.as_deref(), Some("gemini-2.5-flash"));
    }
    s.node.stop().await;
}

async fn gemini_error_arrays_reach_clients_in_openai_shape(backend: Backend) {
    let s = setup(backend).await;
    s.gemini.set_failure(Some(Failure::Status(400)));
    for stream in [false, true] {
        let e = expect_error(s.node.chat(&s.key, &chat_body("gem", stream)).await, StatusCode::BAD_REQUEST).await;
        assert_eq!(e.error.message, "mock failure 400");
        assert_eq!(
            (e.error.kind.as_str(), e.error.code.as_deref()),
            ("invalid_request_error", Some("INVALID_ARGUMENT"))
        );
    }
    // Last: a 429 also cools the target down (see `upstream_limits.rs`).
    s.gemini.set_failure(Some(Failure::Status(429)));
    let e = expect_error(s.node.chat(&s.key, &chat_body("gem", false)).await, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!((e.error.kind.as_str(), e.error.code.as_deref()), ("rate_limit_error", Some("RESOURCE_EXHAUSTED")));
    s.gemini.set_failure(None);
    s.node.stop().await;
}

backend_tests!(a_gemini_preset_route_answers_chat_and_meters_usage, gemini_error_arrays_reach_clients_in_openai_shape,);
