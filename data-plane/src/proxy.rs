//! The request pipeline, top to bottom: snapshot → auth → body → model route → upstream attempts → relay →
//! usage record. Every exit after authentication writes exactly one usage record.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError, web};
use bytes::{Bytes, BytesMut};
use chrono::Utc;
use futures_util::StreamExt;

use crate::catalog::{Catalog, KeyCtx, Target};
use crate::error::ProxyError;
use crate::metering::{Meter, Outcome, Usage};
use crate::request::RequestBody;
use crate::server::AppState;
use crate::streaming::Relay;
use crate::{auth, routing};

pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Names the provider and upstream model that served the response.
pub const UPSTREAM_HEADER: &str = "x-switchyard-upstream";

/// `POST /v1/chat/completions`.
pub async fn chat_completions(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let started = Instant::now();
    let request_id = request_id(&req);
    let catalog = state.snapshots.load_full();
    if catalog.version == 0 {
        return error_response(&ProxyError::NotReady, &request_id);
    }
    let key = if state.governance {
        match auth::authenticate(&catalog, req.headers(), Utc::now()) {
            Ok(k) => k,
            Err(e) => return error_response(&e, &request_id),
        }
    } else {
        &KeyCtx::UNGOVERNED
    };
    let mut meter = Meter {
        request_id,
        node_id: state.node_id.clone(),
        team_id: key.team_id,
        key_id: key.id,
        model: String::new(),
        price: Default::default(),
        stream: false,
        started_at: Utc::now(),
        started,
        provider_id: None,
        upstream_model: None,
        prompt_estimate: 0,
    };
    match serve(&req, payload, &state, &catalog, key, &mut meter).await {
        Ok(res) => res,
        Err(e) => {
            state.usage.record(meter.finish(Outcome {
                status: e.status().as_u16(),
                error_code: Some(e.code()),
                usage: None,
                estimate: None,
                first_byte: None,
            }));
            error_response(&e, &meter.request_id)
        }
    }
}

async fn serve(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    catalog: &Catalog,
    key: &KeyCtx,
    meter: &mut Meter,
) -> Result<HttpResponse, ProxyError> {
    let body = read_body(req, payload, state.max_body_bytes).await?;
    meter.prompt_estimate = body.len() as u64 / 4;
    let parsed = RequestBody::parse(&body)?;
    meter.model.push_str(&parsed.model);
    meter.stream = parsed.stream;
    let route = catalog.model(&parsed.model).ok_or_else(|| ProxyError::ModelNotFound(parsed.model.to_string()))?;
    if !key.allows(&route.name) {
        return Err(ProxyError::ModelNotAllowed(parsed.model.to_string()));
    }
    meter.price = route.price;
    let plan = routing::plan(route, &mut rand::rng());
    if plan.is_empty() {
        return Err(ProxyError::NoRoute(parsed.model.to_string()));
    }

    let mut last_error = ProxyError::UpstreamUnavailable;
    for (attempt, target) in plan.iter().enumerate() {
        let is_last = attempt + 1 == plan.len();
        meter.provider_id = Some(target.upstream.id);
        meter.upstream_model = Some(target.upstream_model.to_string());
        match send(state, target, parsed.upstream_body(&target.upstream_model_json)).await {
            Ok(res) if is_last || !retryable(res.status()) => {
                return respond(res, target, &parsed, state, meter).await;
            }
            Ok(res) => {
                tracing::warn!(request_id = %meter.request_id, provider = %target.upstream.name, status = res.status().as_u16(), attempt, "upstream attempt failed; trying the next target");
            }
            Err(e) => {
                tracing::warn!(request_id = %meter.request_id, provider = %target.upstream.name, error = %e, attempt, "upstream attempt failed");
                last_error = e;
            }
        }
    }
    Err(last_error)
}

/// Sends one attempt and waits for the response headers, within the first-byte timeout.
async fn send(state: &AppState, target: &Target, body: Vec<u8>) -> Result<reqwest::Response, ProxyError> {
    let mut rb = state
        .client
        .post(&*target.upstream.chat_completions_url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    if let Some((name, value)) = &target.upstream.auth {
        rb = rb.header(*name, value.clone());
    }
    match tokio::time::timeout(state.first_byte_timeout, rb.send()).await {
        Err(_) => Err(ProxyError::UpstreamTimeout),
        Ok(Err(e)) if e.is_timeout() => Err(ProxyError::UpstreamTimeout),
        Ok(Err(_)) => Err(ProxyError::UpstreamUnavailable),
        Ok(Ok(res)) => Ok(res),
    }
}

fn retryable(status: reqwest::StatusCode) -> bool {
    status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// Turns the upstream response into the client's: a relayed stream, or the whole body with usage read from it.
async fn respond(
    res: reqwest::Response,
    target: &Target,
    parsed: &RequestBody<'_>,
    state: &AppState,
    meter: &mut Meter,
) -> Result<HttpResponse, ProxyError> {
    let status = res.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        tracing::error!(provider = %target.upstream.name, status = status.as_u16(), "upstream rejected the provider credential");
        return Err(ProxyError::UpstreamAuth);
    }
    let client_status = StatusCode::from_u16(status.as_u16()).map_err(|_| ProxyError::UpstreamInvalid)?;
    let content_type = res
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| HeaderValue::from_str(v).ok());
    let is_sse = content_type.as_ref().is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));

    let mut builder = HttpResponse::build(client_status);
    response_headers(&mut builder, &meter.request_id, target);

    if status.is_success() && parsed.stream && is_sse {
        let relay =
            Relay::new(Box::pin(res.bytes_stream()), parsed.client_wants_usage, meter.clone(), state.usage.clone());
        builder.insert_header((CONTENT_TYPE, "text/event-stream")).insert_header((CACHE_CONTROL, "no-cache"));
        return Ok(builder.streaming(relay));
    }

    let bytes = res.bytes().await.map_err(|_| ProxyError::UpstreamUnavailable)?;
    let first_byte = Some(Instant::now());
    let usage = if status.is_success() { usage_of(&bytes) } else { None };
    state.usage.record(meter.finish(Outcome {
        status: client_status.as_u16(),
        error_code: (!status.is_success()).then_some("upstream_error"),
        usage,
        estimate: None,
        first_byte,
    }));
    if let Some(ct) = content_type {
        builder.insert_header((CONTENT_TYPE, ct));
    }
    Ok(builder.body(bytes))
}

fn usage_of(body: &[u8]) -> Option<Usage> {
    #[derive(serde::Deserialize)]
    struct WithUsage {
        usage: Option<Usage>,
    }
    serde_json::from_slice::<WithUsage>(body).ok()?.usage
}

fn response_headers(builder: &mut HttpResponseBuilder, request_id: &str, target: &Target) {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        builder.insert_header((REQUEST_ID_HEADER, v));
    }
    // Names come from operators; a value that is not a valid header is left out rather than sent.
    if let Ok(v) = HeaderValue::from_str(&format!("{}/{}", target.upstream.name, target.upstream_model)) {
        builder.insert_header((UPSTREAM_HEADER, v));
    }
}

/// Reads the whole body, refusing it as soon as it grows past the limit.
async fn read_body(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<Bytes, ProxyError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ProxyError::BodyTooLarge(limit));
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(4096).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ProxyError::BadRequest(format!("Could not read the request body: {e}")))?;
        if buf.len() + chunk.len() > limit {
            return Err(ProxyError::BodyTooLarge(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The client's `x-request-id` when it is a sane token, otherwise a fresh one.
fn request_id(req: &HttpRequest) -> String {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map_or_else(|| format!("req_{}", uuid::Uuid::now_v7().simple()), str::to_owned)
}

pub fn error_response(e: &ProxyError, request_id: &str) -> HttpResponse {
    let mut res = e.error_response();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        res.headers_mut().insert(actix_web::http::header::HeaderName::from_static(REQUEST_ID_HEADER), v);
    }
    res
}

/// Fallback for paths the gateway does not serve.
pub async fn unknown_path(req: HttpRequest) -> HttpResponse {
    error_response(&ProxyError::UnknownPath(req.path().chars().take(200).collect()), &request_id(&req))
}

pub async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    error_response(&ProxyError::MethodNotAllowed, &request_id(&req))
}
