//! One real path through both planes: an operator configures a team, a provider pointing at the mock upstream,
//! a model and a key; a data-plane node serves chat completions with that key; the usage comes back.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, expect_error, spawn_app};
use crate::node::{TestNode, chat_body, spawn_node, start_mock};

const MOCK_CONTENT: &str = "tok0 tok1 tok2 tok3 tok4 ";

struct Setup {
    app: TestApp,
    mock: switchyard_mock_provider::MockHandle,
    key: String,
    team_id: i64,
    upstream_credential: String,
    _dir: tempfile::TempDir,
    node: TestNode,
}

/// Team, provider (with credential) on the mock, model `chat-small` → upstream `mock-upstream-v1`, key, node.
async fn setup(backend: Backend) -> Setup {
    let app = spawn_app(backend).await;
    let mock = start_mock().await;
    let tenant = app.setup_tenant(&mock.base_url(), "placeholder").await;
    // Prices: $2.50 / $10.00 per million tokens.
    app.create_simple_model("chat-small", tenant.provider.id, "mock-upstream-v1", 2_500_000, 10_000_000).await;
    let dir = tempfile::tempdir().unwrap();
    let node = spawn_node(&app, dir.path()).await;
    node.wait_for_config(&app).await;
    Setup {
        key: tenant.key,
        team_id: tenant.team.id,
        upstream_credential: tenant.upstream_credential,
        app,
        mock,
        _dir: dir,
        node,
    }
}

async fn chat_completions_stream_and_not_are_served_and_metered(backend: Backend) {
    let s = setup(backend).await;

    // Non-streaming.
    let res = s.node.chat(&s.key, &chat_body("chat-small", false)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("x-request-id").is_some());
    let upstream_header = res.headers().get("x-switchyard-upstream").unwrap().to_str().unwrap().to_owned();
    assert!(upstream_header.ends_with("/mock-upstream-v1"), "{upstream_header}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], MOCK_CONTENT);
    assert_eq!(body["usage"]["prompt_tokens"], 5);
    assert_eq!(body["usage"]["completion_tokens"], 5);
    // The upstream saw its own model name and the provider's credential, and the rest of the body unchanged.
    let seen = s.mock.last_request().unwrap();
    assert_eq!(seen.body["model"], "mock-upstream-v1");
    assert_eq!(seen.body["messages"], chat_body("chat-small", false)["messages"]);
    assert_eq!(seen.authorization.as_deref(), Some(format!("Bearer {}", s.upstream_credential).as_str()));

    // Streaming, without the client asking for usage.
    let res = s.node.chat(&s.key, &chat_body("chat-small", true)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let text = res.text().await.unwrap();
    let events: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let content: String = events.iter().filter_map(|e| e["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(content, MOCK_CONTENT);
    assert!(text.trim_end().ends_with("data: [DONE]"));
    assert!(events.iter().all(|e| e["usage"].is_null()), "the gateway's usage chunk leaked: {text}");
    assert_eq!(s.mock.last_request().unwrap().body["stream_options"]["include_usage"], true);

    // Usage comes back to the control plane with the right tokens and cost.
    s.node.node.usage.flush().await;
    let page = s.app.usage(&format!("team_id={}", s.team_id)).await;
    assert_eq!(page.data.len(), 2, "{page:?}");
    for stored in &page.data {
        let r = &stored.record;
        assert_eq!((r.prompt_tokens, r.completion_tokens), (5, 5));
        // 5 × 2.5 + 5 × 10 = 62.5 micro-units, rounded half-up.
        assert_eq!(r.cost_micros, 63);
        assert_eq!(r.status, 200);
        assert_eq!(r.model, "chat-small");
        assert_eq!(r.upstream_model.as_deref(), Some("mock-upstream-v1"));
        assert_eq!(r.node_id, &*s.node.node.id);
        assert!(r.ttft_us.is_some());
    }
    assert_eq!(page.data.iter().filter(|r| r.record.stream).count(), 1);
    assert_eq!(page.totals.requests, 2);
    assert_eq!(page.totals.cost_micros, 126);
    s.node.stop().await;
}

async fn refusals_are_openai_shaped_and_nothing_reaches_the_upstream(backend: Backend) {
    let s = setup(backend).await;
    let restricted =
        s.app.issue_key(s.team_id, &json!({ "name": "restricted", "allowed_models": ["placeholder"] })).await;
    s.node.wait_for_config(&s.app).await;
    let before = s.mock.requests();

    let e =
        expect_error(s.node.chat("sk-sy-wrong", &chat_body("chat-small", false)).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(e.error.code.as_deref(), Some("invalid_api_key"));
    let res = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", s.node.address))
        .json(&chat_body("chat-small", false))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::UNAUTHORIZED).await;
    let e =
        expect_error(s.node.chat(&restricted.key, &chat_body("chat-small", false)).await, StatusCode::FORBIDDEN).await;
    assert_eq!(e.error.code.as_deref(), Some("model_not_allowed"));
    let e = expect_error(s.node.chat(&s.key, &chat_body("no-such-model", false)).await, StatusCode::NOT_FOUND).await;
    assert_eq!(e.error.code.as_deref(), Some("model_not_found"));
    let e = expect_error(s.node.chat(&s.key, &json!({ "messages": [] })).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(e.error.kind, "invalid_request_error");
    let res = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", s.node.address))
        .bearer_auth(&s.key)
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::BAD_REQUEST).await;
    let res = reqwest::Client::new().get(format!("{}/v1/nope", s.node.address)).send().await.unwrap();
    expect_error(res, StatusCode::NOT_FOUND).await;

    assert_eq!(s.mock.requests(), before, "a refused request reached the upstream");
    s.node.stop().await;
}

async fn revoking_a_key_locks_it_out_of_two_nodes_within_a_second(backend: Backend) {
    let s = setup(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let second = spawn_node(&s.app, dir.path()).await;
    second.wait_for_config(&s.app).await;
    for node in [&s.node, &second] {
        assert_eq!(node.chat(&s.key, &chat_body("chat-small", false)).await.status(), StatusCode::OK);
    }

    let key_id = s.app.list_keys(s.team_id).await[0].id;
    let revoked_at = Instant::now();
    s.app.revoke_key(key_id).await;
    for node in [&s.node, &second] {
        loop {
            let status = node.chat(&s.key, &chat_body("chat-small", false)).await.status();
            if status == StatusCode::UNAUTHORIZED {
                break;
            }
            assert_eq!(status, StatusCode::OK);
            assert!(revoked_at.elapsed() < Duration::from_secs(1), "a revoked key still works after 1 s");
        }
    }
    assert!(revoked_at.elapsed() < Duration::from_secs(1));
    second.stop().await;
    s.node.stop().await;
}

async fn a_node_restarted_while_the_control_plane_is_down_still_serves(backend: Backend) {
    let s = setup(backend).await;
    assert_eq!(s.node.chat(&s.key, &chat_body("chat-small", false)).await.status(), StatusCode::OK);
    s.node.node.usage.flush().await;
    let node_token = s.app.node_token.clone();
    let control_plane = s.app.address.clone();
    // Stopped right after `setup` saw the version in memory, possibly while the node is still writing it to
    // disk: a graceful stop finishes that write (it used to cancel it, and this restart then found no file).
    s.node.stop().await;
    s.app.stop.stop().await;

    let restarted = crate::node::spawn_node_at(&control_plane, &node_token, s._dir.path()).await;
    assert!(restarted.node.snapshots.version() > 0, "the snapshot on disk was not loaded");
    let res = restarted.chat(&s.key, &chat_body("chat-small", true)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("tok4"));
    restarted.stop().await;
}

backend_tests!(
    chat_completions_stream_and_not_are_served_and_metered,
    refusals_are_openai_shaped_and_nothing_reaches_the_upstream,
    revoking_a_key_locks_it_out_of_two_nodes_within_a_second,
    a_node_restarted_while_the_control_plane_is_down_still_serves,
);
