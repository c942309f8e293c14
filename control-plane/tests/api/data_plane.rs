//! Data-plane behaviour through a real node: fallback and retries before the first byte (never after), the
//! circuit breaker with live-traffic re-admission, client disconnects, SIGTERM drain, the models endpoints, the
//! other OpenAI endpoints, metrics, and an enumeration of every error status a node emits.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_mock_provider::{Failure, MockConfig, MockHandle};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::{Backend, TestApp, expect_error, spawn_app};
use crate::node::{TestNode, chat_body, spawn_node, spawn_node_with, start_mock, wait_until_ready};

/// Two mocks behind one model `m`: `primary` at priority 0 and `secondary` at priority 1 (or both at 0).
struct TwoTargets {
    app: TestApp,
    primary: MockHandle,
    secondary: MockHandle,
    key: String,
    team_id: i64,
    _dir: tempfile::TempDir,
}

async fn two_targets(same_tier: bool) -> TwoTargets {
    let app = spawn_app(Backend::Sqlite).await;
    let primary = start_mock().await;
    let secondary = start_mock().await;
    let tenant = app.setup_tenant(&primary.base_url(), "unused").await;
    let p2 = app.create_provider("secondary", &secondary.base_url(), Some("sk-second")).await;
    app.create_model(&json!({
        "name": "m",
        "input_price_per_mtok": 1_000_000,
        "output_price_per_mtok": 1_000_000,
        "targets": [
            { "provider_id": tenant.provider.id, "upstream_model": "primary-model", "priority": 0 },
            { "provider_id": p2.id, "upstream_model": "secondary-model", "priority": if same_tier { 0 } else { 1 } },
        ],
    }))
    .await;
    TwoTargets { app, primary, secondary, key: tenant.key, team_id: tenant.team.id, _dir: tempfile::tempdir().unwrap() }
}

fn served_by(res: &reqwest::Response) -> String {
    res.headers().get("x-switchyard-upstream").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_first_tier_falls_back_to_the_second_on_500_429_and_timeouts() {
    let t = two_targets(false).await;
    let node = spawn_node_with(&t.app, t._dir.path(), |s| {
        s.upstream_first_byte_timeout = Duration::from_millis(300);
    })
    .await;
    node.wait_for_config(&t.app).await;

    // The 429 comes last: it also cools the primary down (1 s without a Retry-After), see `upstream_limits.rs`.
    for failure in [Failure::Status(500), Failure::Hang, Failure::Status(429)] {
        t.primary.set_failure(Some(failure));
        let before = t.primary.requests();
        let res = node.chat(&t.key, &chat_body("m", false)).await;
        assert_eq!(res.status(), StatusCode::OK, "{failure:?}");
        assert!(served_by(&res).ends_with("/secondary-model"), "{failure:?}: {}", served_by(&res));
        assert_eq!(t.primary.requests(), before + 1, "the first tier was tried first");
    }
    // Every tier failing: the client gets the last upstream answer as it was.
    t.primary.set_failure(Some(Failure::Status(500)));
    t.secondary.set_failure(Some(Failure::Status(503)));
    let res = node.chat(&t.key, &chat_body("m", false)).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    node.stop().await;
}

/// A provider's own time limits override the node's: here its first-byte limit is 200 ms while the node's is
/// two minutes, and a silent stream is cut by its 300 ms idle limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_provider_timeouts_override_the_nodes() {
    let app = spawn_app(Backend::Sqlite).await;
    let mock = start_mock().await;
    let tenant = app.setup_tenant(&mock.base_url(), "unused").await;
    let res = app
        .api_put(
            &format!("/providers/{}", tenant.provider.id),
            &json!({ "name": tenant.provider.name, "base_url": mock.base_url(),
                     "timeouts": { "first_byte_ms": 200, "idle_ms": 300 } }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let provider: Value = res.json().await.unwrap();
    assert_eq!(provider["timeouts"]["first_byte_ms"], 200);
    let e = expect_error(
        app.api_put(
            &format!("/providers/{}", tenant.provider.id),
            &json!({ "name": tenant.provider.name, "base_url": mock.base_url(), "timeouts": { "total_ms": 0 } }),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(e.error.param.as_deref(), Some("timeouts.total_ms"));
    let dir = tempfile::tempdir().unwrap();
    let node = spawn_node(&app, dir.path()).await;
    node.wait_for_config(&app).await;

    mock.set_failure(Some(Failure::Hang));
    let started = Instant::now();
    let r = node.chat(&tenant.key, &chat_body("unused", false)).await;
    expect_error(r, StatusCode::GATEWAY_TIMEOUT).await;
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    mock.set_failure(None);
    let mut body = chat_body("unused", true);
    body["mock"] = json!({ "chunks": 5, "chunk_delay_ms": 2000 });
    let text = node.chat(&tenant.key, &body).await.text().await.unwrap();
    assert!(text.contains("upstream_timeout"), "{text}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_retry_once_bytes_have_reached_the_client() {
    let t = two_targets(false).await;
    let node = spawn_node(&t.app, t._dir.path()).await;
    node.wait_for_config(&t.app).await;

    let mut body = chat_body("m", true);
    body["mock"] = json!({ "chunks": 6, "fail_after_chunks": 2 });
    let res = node.chat(&t.key, &body).await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    assert!(text.contains("tok1"), "{text}");
    assert!(!text.contains("tok2"), "{text}");
    // The stream ends with an OpenAI-style error event, not a hang and not a second upstream's answer.
    let last: Value = serde_json::from_str(text.trim_end().rsplit("data: ").next().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_error");
    assert_eq!(t.secondary.requests(), 0, "retried after bytes reached the client");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_is_ejected_then_readmitted_by_live_traffic() {
    let t = two_targets(true).await;
    let node = spawn_node_with(&t.app, t._dir.path(), |s| {
        s.breaker.min_requests = 4;
        // Long enough that the ten requests below finish inside it even on a loaded machine.
        s.breaker.base_cooldown = Duration::from_secs(2);
    })
    .await;
    node.wait_for_config(&t.app).await;

    t.primary.set_failure(Some(Failure::Status(500)));
    // Every request still succeeds (retried on the secondary) while the primary collects failures.
    for _ in 0..30 {
        assert_eq!(node.chat(&t.key, &chat_body("m", false)).await.status(), StatusCode::OK);
    }
    // Ejected: the primary gets no traffic at all during its cool-down.
    let ejected_at = t.primary.requests();
    for _ in 0..10 {
        assert_eq!(node.chat(&t.key, &chat_body("m", false)).await.status(), StatusCode::OK);
    }
    assert_eq!(t.primary.requests(), ejected_at, "an ejected target still got traffic");
    let metrics = reqwest::get(format!("{}/metrics", node.address)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("switchyard_upstream_ejections_total"), "{metrics}");

    // Healthy again: after the cool-down a live request probes it and it is back in rotation.
    t.primary.set_failure(None);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut primary_served = 0;
    while primary_served < 3 {
        assert!(Instant::now() < deadline, "the primary was never re-admitted");
        let res = node.chat(&t.key, &chat_body("m", false)).await;
        assert_eq!(res.status(), StatusCode::OK);
        if served_by(&res).ends_with("/primary-model") {
            primary_served += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_disconnect_cancels_the_upstream_request_and_is_still_metered() {
    let t = two_targets(false).await;
    let node = spawn_node(&t.app, t._dir.path()).await;
    node.wait_for_config(&t.app).await;

    let mut body = chat_body("m", true);
    body["mock"] = json!({ "chunks": 200, "chunk_delay_ms": 20 });
    let res = node.chat(&t.key, &body).await;
    let mut stream = res.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(stream);

    tokio::time::timeout(Duration::from_secs(5), t.primary.wait_until(|m| m.cancelled_streams() == 1))
        .await
        .expect("the upstream never saw the client go away");
    node.node.usage.flush().await;
    let page = t.app.usage(&format!("team_id={}", t.team_id)).await;
    assert_eq!(page.data.len(), 1);
    let r = &page.data[0].record;
    assert_eq!(r.error_code.as_deref(), Some("client_disconnected"));
    assert!(r.stream);
    assert!(r.completion_tokens > 0 && r.completion_tokens < 200, "{r:?}");
    assert_eq!(r.usage_source, switchyard_shared::usage::UsageSource::Estimated);
    node.stop().await;
}

/// The real binary: SIGTERM while a stream is running lets it finish, flushes its usage, and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_running_stream_and_flushes_its_usage() {
    let t = two_targets(false).await;
    let binary = sibling_binary("switchyard-data-plane");
    let port = free_port();
    let mut child = tokio::process::Command::new(&binary)
        .env("SWITCHYARD_CONTROL_PLANE_URL", &t.app.address)
        .env("SWITCHYARD_NODE_TOKEN", &t.app.node_token)
        .env("SWITCHYARD_LISTEN", format!("127.0.0.1:{port}"))
        .env("SWITCHYARD_STATE_DIR", t._dir.path())
        .env("SWITCHYARD_NODE_ID", "sigterm-node")
        .env("SWITCHYARD_REPORT_INTERVAL_MS", "5000")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e} (build all binaries: cargo build --bins)", binary.display()));
    let address = format!("http://127.0.0.1:{port}");
    wait_until_ready(&address).await;

    let mut body = chat_body("m", true);
    body["mock"] = json!({ "chunks": 20, "chunk_delay_ms": 50 });
    let res = reqwest::Client::new()
        .post(format!("{address}/v1/chat/completions"))
        .bearer_auth(&t.key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut stream = res.bytes_stream();
    let mut text = String::from_utf8(stream.next().await.unwrap().unwrap().to_vec()).unwrap();
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    while let Some(chunk) = stream.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert!(text.contains("tok19"), "the stream was cut: {text}");
    assert!(text.trim_end().ends_with("data: [DONE]"));
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
    // The node exited only after the control plane acknowledged the record.
    let page = t.app.usage(&format!("team_id={}", t.team_id)).await;
    assert_eq!(page.data.len(), 1, "usage was not flushed at shutdown");
    assert_eq!(page.data[0].record.completion_tokens, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_list_only_what_the_key_may_use() {
    let t = two_targets(false).await;
    let restricted = t.app.issue_key(t.team_id, &json!({ "name": "only-unused", "allowed_models": ["unused"] })).await;
    let node = spawn_node(&t.app, t._dir.path()).await;
    node.wait_for_config(&t.app).await;
    let get = |key: String, path: &'static str| {
        let url = format!("{}{path}", node.address);
        async move { reqwest::Client::new().get(url).bearer_auth(key).send().await.unwrap() }
    };

    let all: Value = get(t.key.clone(), "/v1/models").await.json().await.unwrap();
    assert_eq!(all["object"], "list");
    let ids: Vec<&str> = all["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["m", "unused"]);
    assert_eq!(all["data"][0]["object"], "model");

    let some: Value = get(restricted.key.clone(), "/v1/models").await.json().await.unwrap();
    assert_eq!(some["data"].as_array().unwrap().len(), 1);
    let one: Value = get(t.key.clone(), "/v1/models/m").await.json().await.unwrap();
    assert_eq!(one["id"], "m");
    let e = expect_error(get(restricted.key.clone(), "/v1/models/m").await, StatusCode::NOT_FOUND).await;
    assert_eq!(e.error.code.as_deref(), Some("model_not_found"));
    expect_error(get("sk-sy-bad".into(), "/v1/models").await, StatusCode::UNAUTHORIZED).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_embeddings_pass_through_and_are_metered() {
    let t = two_targets(false).await;
    let node = spawn_node(&t.app, t._dir.path()).await;
    node.wait_for_config(&t.app).await;
    let post = |path: &'static str, body: Value| {
        let url = format!("{}{path}", node.address);
        let key = t.key.clone();
        async move { reqwest::Client::new().post(url).bearer_auth(key).json(&body).send().await.unwrap() }
    };

    let res = post("/v1/completions", json!({ "model": "m", "prompt": "say something nice" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(t.primary.last_request().unwrap().path, "/v1/completions");

    let res = post("/v1/embeddings", json!({ "model": "m", "input": ["a b", "c"] })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);

    let res = post("/v1/completions", json!({ "model": "m", "prompt": "one two", "stream": true })).await;
    let text = res.text().await.unwrap();
    assert!(text.contains("tok4") && text.trim_end().ends_with("[DONE]"), "{text}");

    node.node.usage.flush().await;
    let page = t.app.usage(&format!("team_id={}", t.team_id)).await;
    assert_eq!(page.data.len(), 3);
    let tokens: Vec<(u64, u64)> =
        page.data.iter().rev().map(|r| (r.record.prompt_tokens, r.record.completion_tokens)).collect();
    assert_eq!(tokens, [(3, 5), (3, 0), (2, 5)]);
    node.stop().await;
}

/// Every status the data plane itself emits, each with the OpenAI error shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_status_the_node_emits_is_openai_shaped() {
    let app = spawn_app(Backend::Sqlite).await;
    let mock = switchyard_mock_provider::start(
        ([127, 0, 0, 1], 0).into(),
        MockConfig { api_key: Some("the-right-one".into()), ..MockConfig::default() },
    )
    .await
    .unwrap();
    let tenant = app.setup_tenant(&mock.base_url(), "wrong-credential").await;
    let fine = app.create_provider("fine", &mock.base_url(), Some("the-right-one")).await;
    app.create_simple_model("ok", fine.id, "x", 1, 1).await;
    let closed = app.create_provider("closed", &format!("http://127.0.0.1:{}/v1", free_port()), None).await;
    app.create_simple_model("unreachable", closed.id, "x", 1, 1).await;
    let restricted = app.issue_key(tenant.team.id, &json!({ "name": "r", "allowed_models": ["ok"] })).await;
    let limited = app.issue_key(tenant.team.id, &json!({ "name": "one per minute" })).await;
    app.put_limits(&format!("/keys/{}", limited.id), &json!({ "rpm": 1 })).await;
    let dir = tempfile::tempdir().unwrap();
    let node = spawn_node_with(&app, dir.path(), |s| {
        s.max_body_bytes = 64 * 1024;
        s.client_body_timeout = Duration::from_millis(300);
        s.upstream_first_byte_timeout = Duration::from_millis(300);
    })
    .await;
    node.wait_for_config(&app).await;
    let key = tenant.key.as_str();
    let client = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", node.address);
    let mut seen = Vec::new();
    let mut check = |status: StatusCode, code: &str, e: switchyard_shared::ErrorBody| {
        assert_eq!(e.error.code.as_deref(), Some(code), "{status}");
        assert!(!e.error.message.is_empty() && !e.error.kind.is_empty());
        seen.push(status.as_u16());
    };

    let r = client.post(url("/v1/chat/completions")).bearer_auth(key).body("{oops").send().await.unwrap();
    check(StatusCode::BAD_REQUEST, "invalid_request", expect_error(r, StatusCode::BAD_REQUEST).await);
    let deep = format!("{{\"model\":\"ok\",\"x\":{}{}}}", "[".repeat(5000), "]".repeat(5000));
    let r = client.post(url("/v1/chat/completions")).bearer_auth(key).body(deep).send().await.unwrap();
    check(StatusCode::BAD_REQUEST, "invalid_request", expect_error(r, StatusCode::BAD_REQUEST).await);
    let r = client.post(url("/v1/chat/completions")).json(&chat_body("ok", false)).send().await.unwrap();
    check(StatusCode::UNAUTHORIZED, "missing_api_key", expect_error(r, StatusCode::UNAUTHORIZED).await);
    let r = node.chat("sk-sy-nope", &chat_body("ok", false)).await;
    check(StatusCode::UNAUTHORIZED, "invalid_api_key", expect_error(r, StatusCode::UNAUTHORIZED).await);
    let r = node.chat(&restricted.key, &chat_body("unreachable", false)).await;
    check(StatusCode::FORBIDDEN, "model_not_allowed", expect_error(r, StatusCode::FORBIDDEN).await);
    let r = node.chat(key, &chat_body("nope", false)).await;
    check(StatusCode::NOT_FOUND, "model_not_found", expect_error(r, StatusCode::NOT_FOUND).await);
    let r = client.get(url("/v2/anything")).send().await.unwrap();
    check(StatusCode::NOT_FOUND, "unknown_url", expect_error(r, StatusCode::NOT_FOUND).await);
    let r = client.get(url("/v1/chat/completions")).send().await.unwrap();
    check(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", expect_error(r, StatusCode::METHOD_NOT_ALLOWED).await);
    assert_eq!(node.chat(&limited.key, &chat_body("ok", false)).await.status(), StatusCode::OK);
    let r = node.chat(&limited.key, &chat_body("ok", false)).await;
    assert!(r.headers().get("retry-after").is_some());
    check(StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded", expect_error(r, StatusCode::TOO_MANY_REQUESTS).await);
    let big = json!({ "model": "ok", "messages": [{ "role": "user", "content": "x".repeat(100_000) }] });
    let r = node.chat(key, &big).await;
    check(StatusCode::PAYLOAD_TOO_LARGE, "request_too_large", expect_error(r, StatusCode::PAYLOAD_TOO_LARGE).await);
    // A client that announces a body and never sends it.
    let (status, body) = slow_body(&node, key).await;
    assert_eq!(status, 408, "{body}");
    let e: switchyard_shared::ErrorBody = serde_json::from_str(&body).unwrap();
    check(StatusCode::REQUEST_TIMEOUT, "request_timeout", e);
    let r = node.chat(key, &chat_body("wrong-credential", false)).await;
    check(StatusCode::BAD_GATEWAY, "upstream_auth_failed", expect_error(r, StatusCode::BAD_GATEWAY).await);
    let r = node.chat(key, &chat_body("unreachable", false)).await;
    check(StatusCode::BAD_GATEWAY, "upstream_unavailable", expect_error(r, StatusCode::BAD_GATEWAY).await);
    mock.set_failure(Some(Failure::Hang));
    let r = node.chat(key, &chat_body("ok", false)).await;
    check(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", expect_error(r, StatusCode::GATEWAY_TIMEOUT).await);
    // A node that has never received a snapshot.
    let empty = tempfile::tempdir().unwrap();
    let cold = crate::node::spawn_node_at(&format!("http://127.0.0.1:{}", free_port()), "x", empty.path()).await;
    let r = cold.chat(key, &chat_body("ok", false)).await;
    check(StatusCode::SERVICE_UNAVAILABLE, "not_ready", expect_error(r, StatusCode::SERVICE_UNAVAILABLE).await);

    assert_eq!(seen, [400, 400, 401, 401, 403, 404, 404, 405, 429, 413, 408, 502, 502, 504, 503]);
    cold.stop().await;
    node.stop().await;
}

async fn slow_body(node: &TestNode, key: &str) -> (u16, String) {
    let addr = node.address.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"model\""
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A binary built beside this test binary (`target/<profile>/`).
pub fn sibling_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let mut dir = exe.parent().unwrap().to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}
