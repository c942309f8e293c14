//! Abuse and bad input on a real node, over raw TCP where an HTTP client would refuse to send it: invalid UTF-8,
//! truncated bodies, slowloris headers, and header injection through model names. (Oversized, deeply nested and
//! slow bodies are in `data_plane::every_error_status_the_node_emits_is_openai_shaped`.) After each, the node
//! still serves, and nothing reached the upstream.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::{Backend, spawn_app};
use crate::node::{TestNode, chat_body, spawn_node, start_mock};

/// Sends `head` then `body` on a fresh connection, optionally half-closing it, and reads until the node closes
/// it (bounded): the raw answer.
async fn raw(node: &TestNode, head: &str, body: &[u8], half_close: bool) -> String {
    let mut s = TcpStream::connect(node.address.trim_start_matches("http://")).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    if half_close {
        s.shutdown().await.unwrap();
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

fn post_head(key: &str, content_length: usize) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\nconnection: close\r\ncontent-length: {content_length}\r\n\r\n"
    )
}

/// Status and OpenAI error code of a raw answer.
fn status_and_code(answer: &str) -> (u16, Option<String>) {
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let code = serde_json::from_str::<switchyard_shared::ErrorBody>(body).ok().and_then(|e| e.error.code);
    (status, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_get_clean_errors_and_never_reach_the_upstream() {
    let app = spawn_app(Backend::Sqlite).await;
    let mock = start_mock().await;
    let tenant = app.setup_tenant(&mock.base_url(), "m").await;
    let dir = tempfile::tempdir().unwrap();
    let node = spawn_node(&app, dir.path()).await;
    node.wait_for_config(&app).await;

    // Invalid UTF-8 inside a string and as a key.
    for body in
        [&b"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}"[..], b"{\"\xc3\x28\":1}"]
    {
        let answer = raw(&node, &post_head(&tenant.key, body.len()), body, false).await;
        assert_eq!(status_and_code(&answer), (400, Some("invalid_request".into())), "{answer}");
    }
    // A body cut short: the client announces 200 bytes, sends 20 and closes its side.
    let body = br#"{"model":"m","messa"#;
    let answer = raw(&node, &post_head(&tenant.key, 200), body, true).await;
    let (status, _) = status_and_code(&answer);
    assert!(status == 0 || status == 400, "a truncated body got {answer}");
    // Deep nesting inside otherwise valid JSON, just over the bound.
    let deep = format!("{{\"model\":\"m\",\"x\":{}{}}}", "{\"a\":".repeat(200), "}".repeat(200));
    let answer = raw(&node, &post_head(&tenant.key, deep.len()), deep.as_bytes(), false).await;
    assert_eq!(status_and_code(&answer), (400, Some("invalid_request".into())), "{answer}");

    assert_eq!(mock.requests(), 0, "bad input reached the upstream");
    assert_eq!(node.chat(&tenant.key, &chat_body("m", false)).await.status(), StatusCode::OK);
    node.stop().await;
}

/// A client dribbling its request head never gets a request admitted: the connection is answered and closed
/// within actix's request-head timeout (5 s), and the node keeps serving others meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_is_cut_off_within_a_bound() {
    let app = spawn_app(Backend::Sqlite).await;
    let mock = start_mock().await;
    let tenant = app.setup_tenant(&mock.base_url(), "m").await;
    let dir = tempfile::tempdir().unwrap();
    let node = spawn_node(&app, dir.path()).await;
    node.wait_for_config(&app).await;

    let mut s = TcpStream::connect(node.address.trim_start_matches("http://")).await.unwrap();
    let started = Instant::now();
    let head = format!("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n", tenant.key);
    s.write_all(head.as_bytes()).await.unwrap();
    let mut closed = false;
    let mut served_meanwhile = false;
    let mut answer = Vec::new();
    // One header byte every 100 ms, for at most 15 s.
    for b in "x-slow: ".bytes().cycle().take(150) {
        if s.write_all(&[b]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if !served_meanwhile && started.elapsed() > Duration::from_secs(2) {
            // Meanwhile the node serves normal traffic.
            assert_eq!(node.chat(&tenant.key, &chat_body("m", false)).await.status(), StatusCode::OK);
            served_meanwhile = true;
        }
    }
    let took = started.elapsed();
    assert!(closed && served_meanwhile, "the slow client was never cut off");
    assert!(took < Duration::from_secs(8), "cut off only after {took:?}");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(mock.requests(), 1, "only the normal request reached the upstream");
    node.stop().await;
}

/// CR/LF in a model name, whether a client sends it or an operator configures it as an upstream model, never
/// reaches a response header: header values are built with a checked constructor and dropped when invalid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_names_cannot_inject_response_headers() {
    let app = spawn_app(Backend::Sqlite).await;
    let mock = start_mock().await;
    let tenant = app.setup_tenant(&mock.base_url(), "m").await;
    // The admin API may refuse such a name; if it takes it, the node must not put it in a header.
    let evil_upstream = "up\r\nx-injected: yes";
    let created = app
        .api_post(
            "/models",
            &json!({
                "name": "evil",
                "input_price_per_mtok": 1,
                "output_price_per_mtok": 1,
                "targets": [{ "provider_id": tenant.provider.id, "upstream_model": evil_upstream }],
            }),
        )
        .await;
    let evil_configured = created.status() == StatusCode::CREATED;
    let dir = tempfile::tempdir().unwrap();
    let node = spawn_node(&app, dir.path()).await;
    node.wait_for_config(&app).await;

    let mut models = vec!["m\r\nx-injected: yes", "m\nx-injected: yes", "m\rx-injected: yes"];
    if evil_configured {
        models.push("evil");
    }
    for model in models {
        for stream in [false, true] {
            let body = serde_json::to_vec(&chat_body(model, stream)).unwrap();
            let answer = raw(&node, &post_head(&tenant.key, body.len()), &body, false).await;
            let head = answer.split("\r\n\r\n").next().unwrap_or_default().to_ascii_lowercase();
            assert!(!head.contains("x-injected"), "{model:?} injected a header: {head}");
            for line in head.lines().skip(1) {
                assert!(line.contains(": "), "malformed header line {line:?} for {model:?}");
            }
            let upstream = head.lines().find(|l| l.starts_with("x-switchyard-upstream:"));
            if let Some(line) = upstream {
                assert!(!line.contains('\r') && !line.contains("injected"), "{line:?}");
            }
        }
    }
    node.stop().await;
}
