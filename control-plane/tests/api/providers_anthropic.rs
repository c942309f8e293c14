//! Claude behind the OpenAI API, and the Anthropic-compatible `/v1/messages`, through a real node against the
//! mock provider's Anthropic mode: requests translated field by field, tool calls, streams, errors and the
//! usage (with cache tokens) that reaches the control plane.

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_mock_provider::anthropic::{CACHE_READ, CACHE_WRITE, TOOL_USE_ID};
use switchyard_mock_provider::{Failure, MockHandle};

use crate::helpers::{Backend, TestApp, expect_error, spawn_app};
use crate::node::{TestNode, chat_body, spawn_node, start_mock};

const CREDENTIAL: &str = "sk-ant-upstream-secret";

struct Setup {
    app: TestApp,
    /// The mock in its Anthropic role (provider kind `anthropic`), serving model `claude`.
    claude: MockHandle,
    /// The mock in its OpenAI role, serving model `gpt`.
    openai: MockHandle,
    node: TestNode,
    key: String,
    team_id: i64,
    _dir: tempfile::TempDir,
}

async fn setup(backend: Backend) -> Setup {
    let app = spawn_app(backend).await;
    let claude = start_mock().await;
    let openai = start_mock().await;
    let tenant = app.setup_tenant(&openai.base_url(), "gpt").await;
    let provider: Value = crate::helpers::expect_json(
        app.api_post(
            "/providers",
            &json!({ "name": "anthropic", "kind": "anthropic", "base_url": claude.base_url(), "api_key": CREDENTIAL }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(provider["kind"], "anthropic");
    let provider_id = provider["id"].as_i64().unwrap();
    app.create_simple_model("claude", provider_id, "claude-sonnet-4-5", 3_000_000, 15_000_000).await;
    let dir = tempfile::tempdir().unwrap();
    let node = spawn_node(&app, dir.path()).await;
    node.wait_for_config(&app).await;
    Setup { app, claude, openai, node, key: tenant.key, team_id: tenant.team.id, _dir: dir }
}

fn tools() -> Value {
    json!([{ "type": "function", "function": { "name": "get_weather", "description": "Weather by city",
        "parameters": { "type": "object", "properties": { "city": { "type": "string" } } } } }])
}

/// `data:` payloads of an SSE body, with their `event:` names.
fn events(text: &str) -> Vec<(Option<String>, Value)> {
    text.split("\n\n")
        .filter(|e| e.contains("data:"))
        .map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: ")).map(str::to_owned);
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            (name, serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.to_owned())))
        })
        .collect()
}

async fn messages(node: &TestNode, key: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/messages", node.address))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn a_claude_route_answers_openai_chat_with_text_tools_and_cache_usage(backend: Backend) {
    let s = setup(backend).await;

    // Text, not streamed.
    let res = s.node.chat(&s.key, &chat_body("claude", false)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "tok0 tok1 tok2 tok3 tok4 ");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let prompt = 5 + CACHE_READ + CACHE_WRITE;
    assert_eq!(body["usage"]["prompt_tokens"], prompt);
    assert_eq!(body["usage"]["completion_tokens"], 5);
    assert_eq!(
        body["usage"]["prompt_tokens_details"],
        json!({ "cached_tokens": CACHE_READ, "cache_write_tokens": CACHE_WRITE })
    );

    // What reached Anthropic: its path, headers and body.
    let sent = s.claude.last_request().unwrap();
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(CREDENTIAL));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert!(sent.authorization.is_none(), "no bearer header goes to Anthropic");
    assert_eq!(sent.body["model"], "claude-sonnet-4-5");
    assert_eq!(sent.body["max_tokens"], 4096);
    assert_eq!(sent.body["system"], json!([{ "type": "text", "text": "be brief" }]));
    assert_eq!(
        sent.body["messages"],
        json!([{ "role": "user", "content": [{ "type": "text", "text": "one two three" }] }])
    );

    // Tools, not streamed.
    let mut body = chat_body("claude", false);
    body["tools"] = tools();
    let res: Value = s.node.chat(&s.key, &body).await.json().await.unwrap();
    assert_eq!(res["choices"][0]["finish_reason"], "tool_calls");
    let call = &res["choices"][0]["message"]["tool_calls"][0];
    assert_eq!((call["id"].as_str(), call["function"]["name"].as_str()), (Some(TOOL_USE_ID), Some("get_weather")));
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({ "city": "Paris" })
    );
    assert_eq!(
        s.claude.last_request().unwrap().body["tools"][0]["input_schema"]["properties"]["city"]["type"],
        "string"
    );

    // Tools, streamed, without the client asking for usage: no usage chunk reaches it.
    body["stream"] = json!(true);
    let res = s.node.chat(&s.key, &body).await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    let ev = events(&text);
    assert_eq!(ev.last().unwrap().1, json!("[DONE]"), "{text}");
    assert!(ev.iter().all(|(_, e)| e.get("usage").is_none()), "{text}");
    let args: String = ev
        .iter()
        .filter_map(|(_, e)| e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&args).unwrap(), json!({ "city": "Paris" }));

    // Text, streamed, with usage asked for.
    let mut body = chat_body("claude", true);
    body["stream_options"] = json!({ "include_usage": true });
    let text = s.node.chat(&s.key, &body).await.text().await.unwrap();
    let ev = events(&text);
    let content: String = ev.iter().filter_map(|(_, e)| e["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(content, "tok0 tok1 tok2 tok3 tok4 ");
    assert_eq!(ev[ev.len() - 2].1["usage"]["prompt_tokens"], prompt, "{text}");

    // Four requests metered with the cache tokens counted as input.
    s.node.node.usage.flush().await;
    let page = s.app.usage(&format!("team_id={}", s.team_id)).await;
    assert_eq!(page.data.len(), 4, "{page:?}");
    for stored in &page.data {
        let r = &stored.record;
        assert_eq!((r.status, r.prompt_tokens, r.completion_tokens), (200, prompt, 5), "{r:?}");
        assert_eq!(r.upstream_model.as_deref(), Some("claude-sonnet-4-5"));
    }
    s.node.stop().await;
}

async fn anthropic_errors_reach_openai_clients_in_openai_shape(backend: Backend) {
    let s = setup(backend).await;
    s.claude.set_failure(Some(Failure::Status(400)));
    let e = expect_error(s.node.chat(&s.key, &chat_body("claude", false)).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        (e.error.kind.as_str(), e.error.code.as_deref()),
        ("invalid_request_error", Some("invalid_request_error"))
    );
    s.claude.set_failure(Some(Failure::Status(529)));
    let e = expect_error(s.node.chat(&s.key, &chat_body("claude", false)).await, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(e.error.code.as_deref(), Some("overloaded_error"));
    // Last: a 429 also cools the target down (1 s without a Retry-After), see `upstream_limits.rs`.
    s.claude.set_failure(Some(Failure::Status(429)));
    let e = expect_error(s.node.chat(&s.key, &chat_body("claude", false)).await, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(e.error.code.as_deref(), Some("rate_limit_error"));
    s.claude.set_failure(None);
    // Anthropic has no embeddings: refused before anything is sent.
    let before = s.claude.requests();
    let res = reqwest::Client::new()
        .post(format!("{}/v1/embeddings", s.node.address))
        .bearer_auth(&s.key)
        .json(&json!({ "model": "claude", "input": "hi" }))
        .send()
        .await
        .unwrap();
    let e = expect_error(res, StatusCode::BAD_REQUEST).await;
    assert!(e.error.message.contains("Anthropic"), "{}", e.error.message);
    assert_eq!(s.claude.requests(), before);
    s.node.stop().await;
}

/// A model with a Claude target first and an OpenAI-compatible one second: chat goes to Claude, embeddings (which
/// Anthropic lacks) to the other target.
async fn a_mixed_model_serves_each_endpoint_from_a_target_that_has_it(backend: Backend) {
    let s = setup(backend).await;
    let providers = s.app.list_providers().await;
    let claude = providers.iter().find(|p| p.name == "anthropic").unwrap();
    let other = providers.iter().find(|p| p.name != "anthropic").unwrap();
    s.app
        .create_model(&json!({
            "name": "mixed",
            "input_price_per_mtok": 1,
            "output_price_per_mtok": 1,
            "targets": [
                { "provider_id": claude.id, "upstream_model": "claude-sonnet-4-5", "priority": 0 },
                { "provider_id": other.id, "upstream_model": "text-embedding", "priority": 1 },
            ],
        }))
        .await;
    s.node.wait_for_config(&s.app).await;
    let res = s.node.chat(&s.key, &chat_body("mixed", false)).await;
    assert!(res.headers()["x-switchyard-upstream"].to_str().unwrap().ends_with("/claude-sonnet-4-5"));
    let res = reqwest::Client::new()
        .post(format!("{}/v1/embeddings", s.node.address))
        .bearer_auth(&s.key)
        .json(&json!({ "model": "mixed", "input": "hi" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["x-switchyard-upstream"].to_str().unwrap().ends_with("/text-embedding"));
    s.node.stop().await;
}

async fn the_messages_endpoint_passes_through_to_anthropic_and_translates_for_openai_targets(backend: Backend) {
    let s = setup(backend).await;
    let request = json!({
        "model": "claude",
        "max_tokens": 256,
        "system": "be brief",
        "messages": [{ "role": "user", "content": "one two three" }],
    });

    // Anthropic target: passthrough, the model replaced.
    let res = messages(&s.node, &s.key, &request).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["content"][0]["text"], "tok0 tok1 tok2 tok3 tok4 ");
    let sent = s.claude.last_request().unwrap();
    assert_eq!(
        sent.body,
        json!({ "model": "claude-sonnet-4-5", "max_tokens": 256, "system": "be brief",
        "messages": [{ "role": "user", "content": "one two three" }] })
    );
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let text = messages(&s.node, &s.key, &streamed).await.text().await.unwrap();
    let names: Vec<String> = events(&text).into_iter().filter_map(|(n, _)| n).collect();
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    assert!(names.iter().any(|n| n == "message_delta"), "usage events are never dropped: {text}");

    // OpenAI-compatible target: translated both ways.
    let mut to_gpt = request.clone();
    to_gpt["model"] = json!("gpt");
    to_gpt["tools"] = json!([{ "name": "get_weather", "input_schema": { "type": "object", "properties": {} } }]);
    let body: Value = messages(&s.node, &s.key, &to_gpt).await.json().await.unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(body["content"][0]["type"], "tool_use");
    assert_eq!(body["content"][0]["name"], "get_weather");
    assert_eq!(body["usage"]["input_tokens"], 5);
    let sent = s.openai.last_request().unwrap();
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.body["messages"][0], json!({ "role": "system", "content": "be brief" }));
    assert_eq!(sent.body["tools"][0]["function"]["name"], "get_weather");
    let mut to_gpt = request.clone();
    to_gpt["model"] = json!("gpt");
    to_gpt["stream"] = json!(true);
    let text = messages(&s.node, &s.key, &to_gpt).await.text().await.unwrap();
    let ev = events(&text);
    let content: String = ev.iter().filter_map(|(_, e)| e["delta"]["text"].as_str()).collect();
    assert_eq!(content, "tok0 tok1 tok2 tok3 tok4 ");
    let delta = ev.iter().find(|(n, _)| n.as_deref() == Some("message_delta")).unwrap();
    assert_eq!(delta.1["usage"]["output_tokens"], 5, "{text}");
    assert_eq!(ev.last().unwrap().0.as_deref(), Some("message_stop"));

    s.node.node.usage.flush().await;
    let page = s.app.usage(&format!("team_id={}", s.team_id)).await;
    assert_eq!(page.data.len(), 4, "{page:?}");
    for stored in &page.data {
        let r = &stored.record;
        let prompt = if r.model == "claude" { 5 + CACHE_READ + CACHE_WRITE } else { 5 };
        assert_eq!((r.status, r.prompt_tokens, r.completion_tokens), (200, prompt, 5), "{r:?}");
    }
    s.node.stop().await;
}

/// The official OpenAI SDK gets tool calls from a Claude route (streamed and not); the official Anthropic SDK
/// talks to `/v1/messages` for a Claude and an OpenAI-compatible target. Both packages are installed by
/// `.ci/services`; a missing one fails the test, it never skips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_and_anthropic_sdks_work_across_dialects() {
    let s = setup(Backend::Sqlite).await;
    let python = std::env::var("SWITCHYARD_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    let out = tokio::process::Command::new(&python)
        .arg(format!("{manifest_dir}/tests/sdk/claude_sdks.py"))
        .env("SWITCHYARD_NODE", &s.node.address)
        .env("SWITCHYARD_API_KEY", &s.key)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {python}: {e} (install Python 3, `pip install openai anthropic`)"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the SDK script failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("checks ok: openai_tools_from_claude, openai_tools_stream_from_claude, anthropic_sdk_to_anthropic, anthropic_sdk_to_openai, anthropic_sdk_errors"),
        "{stdout}"
    );
    s.node.stop().await;
}

backend_tests!(
    a_claude_route_answers_openai_chat_with_text_tools_and_cache_usage,
    anthropic_errors_reach_openai_clients_in_openai_shape,
    a_mixed_model_serves_each_endpoint_from_a_target_that_has_it,
    the_messages_endpoint_passes_through_to_anthropic_and_translates_for_openai_targets,
);
