//! End-to-end behaviour of the mock provider over real sockets, each test with its own server on port 0.
#![allow(
    clippy::unwrap_used,
    reason = "clippy.toml only exempts #[test] fns; a broken helper should fail its test loudly too"
)]

use std::io::BufRead as _;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use switchyard_mock_provider::{Failure, MockConfig, MockHandle, start};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(10);

async fn spawn_mock(config: MockConfig) -> MockHandle {
    start("127.0.0.1:0".parse().unwrap(), config).await.unwrap()
}

/// One keep-alive HTTP/1.1 connection to the mock.
struct Client {
    sender: SendRequest<Full<Bytes>>,
    connection: JoinHandle<()>,
}

impl Client {
    async fn connect(mock: &MockHandle) -> Self {
        let stream = TcpStream::connect(mock.addr()).await.unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        Self { sender, connection }
    }

    async fn send(&mut self, method: &str, path: &str, auth: Option<&str>, body: Bytes) -> Response<Incoming> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "mock")
            .header("content-type", "application/json");
        if let Some(key) = auth {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        self.sender.ready().await.unwrap();
        self.sender.send_request(request.body(Full::new(body)).unwrap()).await.unwrap()
    }

    async fn post(&mut self, path: &str, body: Value) -> Response<Incoming> {
        self.send("POST", path, None, Bytes::from(body.to_string())).await
    }

    /// Closes the TCP connection, as a client that gives up does.
    fn disconnect(self) {
        self.connection.abort();
    }
}

async fn json_body(response: Response<Incoming>) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// The `data:` payloads of an event stream, checking each frame carries whole events.
async fn sse_events(response: Response<Incoming>) -> Vec<String> {
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let mut events = Vec::new();
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        let text = std::str::from_utf8(&data).unwrap();
        assert!(text.ends_with("\n\n"), "frame is not a whole event: {text:?}");
        for event in text.split_terminator("\n\n") {
            events.push(event.strip_prefix("data: ").unwrap().to_owned());
        }
    }
    events
}

fn parsed(events: &[String]) -> Vec<Value> {
    events.iter().take_while(|event| *event != "[DONE]").map(|event| serde_json::from_str(event).unwrap()).collect()
}

fn chat(stream: bool, extra: Value) -> Value {
    let mut body = json!({
        "model": "gpt-test",
        "stream": stream,
        "messages": [
            {"role": "system", "content": "You are helpful"},
            {"role": "user", "content": [
                {"type": "text", "text": "say hi please"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a b.png"}}
            ]}
        ]
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

#[tokio::test]
async fn chat_answers_deterministically_with_usage() {
    let mock = spawn_mock(MockConfig::default()).await;
    let mut client = Client::connect(&mock).await;

    let (status, body) = json_body(client.post("/v1/chat/completions", chat(false, json!({}))).await).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], "chatcmpl-mock-1");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-test");
    assert_eq!(body["system_fingerprint"], "mock");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["message"]["content"], "tok0 tok1 tok2 tok3 tok4 ");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"], json!({"prompt_tokens": 6, "completion_tokens": 5, "total_tokens": 11}));

    let recorded = mock.last_request().unwrap();
    assert_eq!(recorded.path, "/v1/chat/completions");
    assert_eq!(recorded.body["model"], "gpt-test");
    assert_eq!(recorded.header("host"), Some("mock"));
    assert_eq!(mock.requests(), 1);
}

#[tokio::test]
async fn stream_without_include_usage_has_no_usage() {
    let mock = spawn_mock(MockConfig::default()).await;
    let mut client = Client::connect(&mock).await;

    let events =
        sse_events(client.post("/v1/chat/completions", chat(true, json!({"mock": {"chunks": 3}}))).await).await;

    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks = parsed(&events);
    let deltas: Vec<&Value> = chunks.iter().map(|chunk| &chunk["choices"][0]["delta"]).collect();
    assert_eq!(
        deltas,
        [
            &json!({"role": "assistant", "content": ""}),
            &json!({"content": "tok0 "}),
            &json!({"content": "tok1 "}),
            &json!({"content": "tok2 "}),
            &json!({}),
        ]
    );
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], "chatcmpl-mock-1");
        assert_eq!(chunk["model"], "gpt-test");
        assert!(chunk.get("usage").is_none());
    }
}

#[tokio::test]
async fn stream_with_include_usage_ends_with_a_usage_chunk() {
    let mock = spawn_mock(MockConfig { chunks: 2, ..MockConfig::default() }).await;
    let mut client = Client::connect(&mock).await;

    let body = chat(true, json!({"stream_options": {"include_usage": true}}));
    let events = sse_events(client.post("/v1/chat/completions", body).await).await;

    assert_eq!(events.len(), 6, "role, 2 tokens, finish, usage, [DONE]: {events:?}");
    assert_eq!(events[5], "[DONE]");
    let chunks = parsed(&events);
    let usage = &chunks[4];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"], json!({"prompt_tokens": 6, "completion_tokens": 2, "total_tokens": 8}));
    for chunk in &chunks[..4] {
        assert_eq!(chunk["usage"], Value::Null);
        assert!(chunk.get("usage").is_some());
    }
}

#[tokio::test]
async fn tools_get_a_tool_call_until_a_tool_answers() {
    let mock = spawn_mock(MockConfig::default()).await;
    let mut client = Client::connect(&mock).await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);

    let ask = json!({"model": "m", "tools": tools, "messages": [{"role": "user", "content": "weather?"}]});
    let (_, body) = json_body(client.post("/v1/chat/completions", ask).await).await;
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([{"id": "call_mock_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}])
    );

    let answered = json!({"model": "m", "tools": tools, "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": choice["message"]["tool_calls"]},
        {"role": "tool", "tool_call_id": "call_mock_1", "content": "sunny and warm"}
    ]});
    let (_, body) = json_body(client.post("/v1/chat/completions", answered).await).await;
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], 4);
}

#[tokio::test]
async fn streamed_tool_call_names_the_function() {
    let mock = spawn_mock(MockConfig::default()).await;
    let mut client = Client::connect(&mock).await;
    let body = json!({"model": "m", "stream": true,
        "tools": [{"type": "function", "function": {"name": "lookup"}}],
        "messages": [{"role": "user", "content": "go"}]});

    let chunks = parsed(&sse_events(client.post("/v1/chat/completions", body).await).await);

    assert_eq!(chunks.len(), 3);
    assert_eq!(chunks[0]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"], "lookup");
    assert_eq!(chunks[1]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"], "{}");
    assert_eq!(chunks[2]["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn legacy_completions_whole_and_streamed() {
    let mock = spawn_mock(MockConfig { chunks: 3, ..MockConfig::default() }).await;
    let mut client = Client::connect(&mock).await;

    let (status, body) =
        json_body(client.post("/v1/completions", json!({"model": "m", "prompt": "one two"})).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["id"], "cmpl-mock-1");
    assert_eq!(body["choices"][0]["text"], "tok0 tok1 tok2 ");
    assert_eq!(body["usage"], json!({"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}));

    let streamed =
        json!({"model": "m", "prompt": "one two", "stream": true, "stream_options": {"include_usage": true}});
    let events = sse_events(client.post("/v1/completions", streamed).await).await;
    let chunks = parsed(&events);
    let texts: Vec<&Value> = chunks.iter().filter_map(|chunk| chunk["choices"].get(0)).map(|c| &c["text"]).collect();
    assert_eq!(texts, [&json!("tok0 "), &json!("tok1 "), &json!("tok2 "), &json!("")]);
    assert_eq!(chunks.last().unwrap()["usage"]["total_tokens"], 5);
    assert_eq!(events.last().unwrap(), "[DONE]");
}

#[tokio::test]
async fn embeddings_are_deterministic_unit_vectors() {
    let mock = spawn_mock(MockConfig::default()).await;
    let mut client = Client::connect(&mock).await;
    let body = json!({"model": "embed", "input": ["hello world", "bye", "hello world"]});

    let (status, body) = json_body(client.post("/v1/embeddings", body).await).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "embed");
    assert_eq!(body["usage"], json!({"prompt_tokens": 5, "total_tokens": 5}));
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (index, item) in data.iter().enumerate() {
        assert_eq!(item["index"], index);
        let vector: Vec<f64> = item["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(vector.len(), 8);
        let norm = vector.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }
    assert_eq!(data[0]["embedding"], data[2]["embedding"]);
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);

    let (_, single) =
        json_body(client.post("/v1/embeddings", json!({"model": "e", "input": "hello world"})).await).await;
    assert_eq!(single["data"][0]["embedding"], data[0]["embedding"]);
}

#[tokio::test]
async fn models_lists_the_mock_model() {
    let mock = spawn_mock(MockConfig::default()).await;
    let mut client = Client::connect(&mock).await;

    let (status, body) = json_body(client.send("GET", "/v1/models", None, Bytes::new()).await).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"][0]["id"], "mock-model");
}

#[tokio::test]
async fn status_override_answers_an_openai_error() {
    let mock = spawn_mock(MockConfig::default()).await;
    let mut client = Client::connect(&mock).await;

    let response = client.post("/v1/chat/completions", chat(false, json!({"mock": {"status": 503}}))).await;
    let (status, body) = json_body(response).await;

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        json!({"error": {"message": "mock failure", "type": "server_error", "param": null, "code": "mock_status_503"}})
    );
}

#[tokio::test]
async fn wrong_api_key_is_rejected() {
    let mock = spawn_mock(MockConfig { api_key: Some("sk-upstream".into()), ..MockConfig::default() }).await;
    let mut client = Client::connect(&mock).await;
    let body = Bytes::from(chat(false, json!({})).to_string());

    for auth in [None, Some("sk-wrong")] {
        let (status, error) = json_body(client.send("POST", "/v1/chat/completions", auth, body.clone()).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(error["error"]["code"], "invalid_api_key");
        assert_eq!(error["error"]["message"], "Incorrect API key provided");
    }
    let (status, _) = json_body(client.send("POST", "/v1/chat/completions", Some("sk-upstream"), body).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mock.last_request().unwrap().authorization.as_deref(), Some("Bearer sk-upstream"));
    assert_eq!(mock.requests(), 3);
}

#[tokio::test]
async fn unknown_paths_and_bad_json_get_openai_errors() {
    let mock = spawn_mock(MockConfig::default()).await;
    let mut client = Client::connect(&mock).await;

    let (status, body) = json_body(client.post("/v1/nope", json!({})).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let response = client.send("POST", "/v1/chat/completions", None, Bytes::from_static(b"{not json")).await;
    let (status, body) = json_body(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap().contains("JSON"));
    assert_eq!(mock.last_request().unwrap().body, Value::Null);
}

#[tokio::test]
async fn injected_failures_apply_until_cleared() {
    let mock = spawn_mock(MockConfig::default()).await;
    let mut client = Client::connect(&mock).await;

    mock.set_failure(Some(Failure::Status(429)));
    let (status, body) = json_body(client.post("/v1/chat/completions", chat(false, json!({}))).await).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"]["code"], "mock_status_429");

    mock.set_failure(Some(Failure::Garbage));
    let response = client.post("/v1/chat/completions", chat(false, json!({}))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert!(serde_json::from_slice::<Value>(&bytes).is_err());

    mock.set_failure(None);
    let (status, _) = json_body(client.post("/v1/chat/completions", chat(false, json!({}))).await).await;
    assert_eq!(status, StatusCode::OK);

    mock.set_failure(Some(Failure::Hang));
    let hung =
        tokio::time::timeout(Duration::from_millis(200), client.post("/v1/chat/completions", chat(false, json!({}))))
            .await;
    assert!(hung.is_err(), "a hanging mock answered");
}

#[tokio::test]
async fn cut_streams_failure_cuts_every_stream_and_answers_the_rest() {
    let mock = spawn_mock(MockConfig::default()).await;
    mock.set_failure(Some(Failure::CutStreams));
    let mut client = Client::connect(&mock).await;
    let (status, _) = json_body(client.post("/v1/chat/completions", chat(false, json!({}))).await).await;
    assert_eq!(status, StatusCode::OK);

    let response = client.post("/v1/chat/completions", chat(true, json!({}))).await;
    let mut body = response.into_body();
    let mut received = String::new();
    loop {
        match body.frame().await {
            Some(Ok(frame)) => received.push_str(std::str::from_utf8(&frame.into_data().unwrap()).unwrap()),
            Some(Err(_)) => break,
            None => panic!("stream ended cleanly: {received:?}"),
        }
    }
    assert!(received.contains("tok0 ") && !received.contains("tok1 ") && !received.contains("[DONE]"), "{received:?}");
}

#[tokio::test]
async fn client_leaving_mid_stream_counts_as_cancelled() {
    let mock = spawn_mock(MockConfig::default()).await;
    let mut client = Client::connect(&mock).await;
    let body = chat(true, json!({"mock": {"chunks": 1000, "chunk_delay_ms": 5}}));

    let response = client.post("/v1/chat/completions", body).await;
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(body);
    client.disconnect();

    tokio::time::timeout(WAIT, mock.wait_until(|mock| mock.cancelled_streams() == 1)).await.unwrap();
    tokio::time::timeout(WAIT, mock.wait_until(|mock| mock.open_connections() == 0)).await.unwrap();
}

#[tokio::test]
async fn fail_after_chunks_cuts_the_connection() {
    let mock = spawn_mock(MockConfig::default()).await;
    let mut client = Client::connect(&mock).await;
    let body = chat(true, json!({"mock": {"chunks": 5, "fail_after_chunks": 2}}));

    let response = client.post("/v1/chat/completions", body).await;
    let mut body = response.into_body();
    let mut received = String::new();
    let error = loop {
        match body.frame().await {
            Some(Ok(frame)) => received.push_str(std::str::from_utf8(&frame.into_data().unwrap()).unwrap()),
            Some(Err(error)) => break error,
            None => panic!("stream ended cleanly: {received:?}"),
        }
    };

    let cause = std::error::Error::source(&error).map(ToString::to_string).unwrap_or_default();
    assert!(cause.contains("EOF"), "{error}: {cause}");
    assert!(received.contains("tok1 "), "{received:?}");
    assert!(!received.contains("tok2 "));
    assert_eq!(mock.cancelled_streams(), 0);
}

#[tokio::test]
async fn keep_alive_reuses_one_connection_and_shutdown_closes_it() {
    let mock = spawn_mock(MockConfig::default()).await;
    let mut client = Client::connect(&mock).await;
    for _ in 0..3 {
        let (status, _) = json_body(client.post("/v1/chat/completions", chat(false, json!({}))).await).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(mock.open_connections(), 1);
    assert_eq!(mock.requests(), 3);

    let addr = mock.addr();
    mock.shutdown_and_wait().await;
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn latency_delays_the_headers() {
    let mock = spawn_mock(MockConfig { latency: Duration::from_millis(100), ..MockConfig::default() }).await;
    let mut client = Client::connect(&mock).await;

    let started = std::time::Instant::now();
    let (status, _) = json_body(client.post("/v1/chat/completions", chat(false, json!({}))).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(100));

    let started = std::time::Instant::now();
    let (status, _) =
        json_body(client.post("/v1/chat/completions", chat(false, json!({"mock": {"latency_ms": 0}}))).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(100));
}

#[tokio::test]
async fn binary_prints_its_address_and_serves() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard-mock-provider"))
        .args(["--listen", "127.0.0.1:0", "--chunks", "2", "--threads", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base_url = line.trim().strip_prefix("mock provider listening on ").unwrap().to_owned();
    let authority = base_url.strip_prefix("http://").unwrap().strip_suffix("/v1").unwrap();

    let stream = TcpStream::connect(authority).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let request = Request::post("/v1/chat/completions")
        .header("host", authority)
        .body(Full::new(Bytes::from(chat(false, json!({})).to_string())))
        .unwrap();
    let (status, body) = json_body(sender.send_request(request).await.unwrap()).await;

    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["choices"][0]["message"]["content"], "tok0 tok1 ");
}

/// Anthropic's Messages API: the message object, the named event sequence, and Anthropic's error body.
#[tokio::test]
async fn messages_answer_in_anthropics_shapes() {
    let mock = spawn_mock(MockConfig { chunks: 2, ..MockConfig::default() }).await;
    let mut client = Client::connect(&mock).await;
    let request = json!({"model": "claude-x", "max_tokens": 50, "system": "be brief",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "one two three"}]}]});
    let (status, body) = json_body(client.post("/v1/messages", request.clone()).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["type"], "message");
    assert_eq!(body["content"], json!([{"type": "text", "text": "tok0 tok1 "}]));
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["usage"]["input_tokens"], 5);
    assert_eq!(body["usage"]["output_tokens"], 2);
    assert_eq!(body["usage"]["cache_read_input_tokens"], switchyard_mock_provider::anthropic::CACHE_READ);

    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let response = client.post("/v1/messages", streamed).await;
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let names: Vec<&str> = std::str::from_utf8(&bytes)
        .unwrap()
        .split_terminator("\n\n")
        .map(|e| e.lines().next().unwrap().strip_prefix("event: ").unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );

    let mut tools = request.clone();
    tools["tools"] = json!([{"name": "get_weather", "input_schema": {"type": "object"}}]);
    let (_, body) = json_body(client.post("/v1/messages", tools).await).await;
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(body["content"][0]["input"], json!({"city": "Paris"}));

    let (status, body) = json_body(client.post("/v1/messages", json!({"model": "m", "messages": []})).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    mock.set_failure(Some(Failure::Status(529)));
    let (status, body) = json_body(client.post("/v1/messages", request).await).await;
    assert_eq!((status.as_u16(), body["error"]["type"].as_str()), (529, Some("overloaded_error")));
}
