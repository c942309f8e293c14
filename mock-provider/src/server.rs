//! Binding, the accept loop, per-connection HTTP/1.1 serving and routing a request to its endpoint.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use serde::{Deserialize, Serialize};

use crate::body::{Pacing, ResponseBody};
use crate::state::{Recorded, State};
use crate::wire::MockOverrides;
use crate::{Failure, MockConfig, MockHandle, anthropic, chat, completions, embeddings, error, gemini, responses};

/// Binds `addr` (port 0 picks a free port) and serves on the current tokio runtime; returns once listening.
pub async fn start(addr: SocketAddr, config: MockConfig) -> std::io::Result<MockHandle> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(State::new(config));
    let accept = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
    Ok(MockHandle::new(addr, state, accept))
}

/// Connections live in a `JoinSet` owned by this task so that aborting it (shutdown) also closes them.
async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&state)));
                }
                // Usually fd exhaustion under load; backing off lets connections close instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            Some(_finished) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Keeps `open_connections` right however the connection ends, including an abort at shutdown.
struct ConnectionGuard(Arc<State>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

async fn serve_connection(stream: TcpStream, state: Arc<State>) {
    state.connection_opened();
    let _guard = ConnectionGuard(Arc::clone(&state));
    // Streamed chunks are small writes that Nagle would otherwise hold back.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| handle(Arc::clone(&state), request));
    // Errors here are clients going away or aborted streams; either way the connection is done.
    let _ = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service).await;
}

enum Route {
    Chat,
    Completions,
    Embeddings,
    Responses,
    /// Anthropic's Messages API.
    Messages,
    Models,
    NotFound(String),
}

impl Route {
    fn of(method: &Method, path: &str) -> Self {
        match (method, path) {
            (&Method::POST, "/v1/chat/completions") => Self::Chat,
            (&Method::POST, "/v1/completions") => Self::Completions,
            (&Method::POST, "/v1/embeddings") => Self::Embeddings,
            (&Method::POST, "/v1/responses") => Self::Responses,
            (&Method::POST, "/v1/messages") => Self::Messages,
            (&Method::GET, "/v1/models") => Self::Models,
            _ => Self::NotFound(format!("{method} {path}")),
        }
    }
}

/// What every endpoint needs to answer one request.
pub(crate) struct Ctx<'a> {
    pub(crate) state: &'a Arc<State>,
    /// The request's number, which also names its completion id.
    pub(crate) number: u64,
}

impl Ctx<'_> {
    pub(crate) fn config(&self) -> &MockConfig {
        &self.state.config
    }

    /// Waits the per-request latency override, or the configured latency, before the headers go out.
    pub(crate) async fn pause(&self, latency_ms: Option<u64>) {
        let latency = latency_ms.map_or(self.config().latency, Duration::from_millis);
        sleep(latency).await;
    }

    /// Reads the body as `T`, or waits the configured latency and answers 400.
    pub(crate) async fn parse<'b, T: Deserialize<'b>>(&self, body: &'b [u8]) -> Result<T, Response<ResponseBody>> {
        match serde_json::from_slice(body) {
            Ok(request) => Ok(request),
            Err(error) => {
                self.pause(None).await;
                Err(error::invalid_json(&error))
            }
        }
    }

    /// Applies a request's `mock` overrides: waits its latency, answers its status if it asked for one, and
    /// otherwise returns how its tokens are to be paced.
    pub(crate) async fn begin(&self, mock: Option<&MockOverrides>) -> Result<Pacing, Response<ResponseBody>> {
        let config = self.config();
        let cut = (self.state.failure() == Some(Failure::CutStreams)).then_some(1);
        let Some(mock) = mock else {
            sleep(config.latency).await;
            return Ok(Pacing { chunks: config.chunks, chunk_delay: config.chunk_delay, fail_after: cut });
        };
        self.pause(mock.latency_ms).await;
        if let Some(status) = mock.status {
            return Err(error::mock_status(status));
        }
        Ok(Pacing {
            chunks: mock.chunks.unwrap_or(config.chunks),
            chunk_delay: mock.chunk_delay_ms.map_or(config.chunk_delay, Duration::from_millis),
            fail_after: mock.fail_after_chunks.or(cut),
        })
    }
}

/// Skips the timer entirely for zero delays, which is the benchmark case.
pub(crate) async fn sleep(duration: Duration) {
    if !duration.is_zero() {
        tokio::time::sleep(duration).await;
    }
}

async fn handle(state: Arc<State>, request: Request<Incoming>) -> Result<Response<ResponseBody>, Infallible> {
    let number = state.next_request();
    let (parts, body) = request.into_parts();
    // A body that fails to arrive means the client is gone; whatever we answer will not be read.
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    // Gemini mode: the OpenAI routes under Google's prefix, with Google's error shape.
    let gemini_path = gemini::openai_path(parts.uri.path());
    let gemini = gemini_path.is_some();
    let route = Route::of(&parts.method, gemini_path.as_deref().unwrap_or(parts.uri.path()));
    let authorized = is_authorized(&state.config, &parts.headers);
    state.record(Recorded { method: parts.method, uri: parts.uri, headers: parts.headers, body: body.clone() });
    let ctx = Ctx { state: &state, number };

    if let Some(failure) = state.failure().filter(|f| *f != Failure::CutStreams) {
        if let (Route::Messages, Failure::Status(status)) = (&route, failure) {
            ctx.pause(None).await;
            return Ok(anthropic::mock_status(status));
        }
        if let (true, Failure::Status(status)) = (gemini, failure) {
            ctx.pause(None).await;
            return Ok(gemini::mock_status(status));
        }
        return Ok(injected_failure(&ctx, failure).await);
    }
    if !authorized {
        ctx.pause(None).await;
        return Ok(if gemini { gemini::invalid_api_key() } else { error::invalid_api_key() });
    }
    if let Err((limit, left)) = state.take_rate() {
        return Ok(error::rate_limited(limit, left));
    }
    let response = match route {
        Route::Chat => chat::handle(&ctx, &body).await,
        Route::Completions => completions::handle(&ctx, &body).await,
        Route::Embeddings => embeddings::handle(&ctx, &body).await,
        Route::Responses => responses::handle(&ctx, &body).await,
        Route::Messages => anthropic::handle(&ctx, &body).await,
        Route::Models => {
            ctx.pause(None).await;
            models()
        }
        Route::NotFound(what) => {
            ctx.pause(None).await;
            error::not_found(&what)
        }
    };
    Ok(response)
}

fn is_authorized(config: &MockConfig, headers: &HeaderMap) -> bool {
    let Some(expected) = config.api_key.as_deref() else {
        return true;
    };
    headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        // Anthropic's credential header.
        .or_else(|| headers.get("x-api-key").and_then(|value| value.to_str().ok()))
        .is_some_and(|token| token == expected)
}

async fn injected_failure(ctx: &Ctx<'_>, failure: Failure) -> Response<ResponseBody> {
    match failure {
        // Applied by `Ctx::begin` to streams only.
        Failure::CutStreams => error::internal(),
        Failure::Hang => std::future::pending().await,
        Failure::Status(status) => {
            ctx.pause(None).await;
            error::mock_status(status)
        }
        Failure::Garbage => {
            ctx.pause(None).await;
            let mut response = Response::new(ResponseBody::full(Bytes::from_static(
                b"<html><body>mock garbage: this is not JSON</body></html>",
            )));
            // Claims JSON on purpose: the point is to exercise the caller's parse-failure path.
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
    }
}

const MODELS: &[u8] =
    br#"{"object":"list","data":[{"id":"mock-model","object":"model","created":0,"owned_by":"mock"}]}"#;

fn models() -> Response<ResponseBody> {
    json_response(StatusCode::OK, Bytes::from_static(MODELS))
}

/// Serialises a 200 JSON body in one buffer, or answers 500 if that somehow fails.
pub(crate) fn ok_json(value: &impl Serialize) -> Response<ResponseBody> {
    match serde_json::to_vec(value) {
        Ok(body) => json_response(StatusCode::OK, Bytes::from(body)),
        Err(_) => error::internal(),
    }
}

pub(crate) fn json_response(status: StatusCode, body: Bytes) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
