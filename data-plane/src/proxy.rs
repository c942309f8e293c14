//! The request pipeline, top to bottom: snapshot → auth → body → model route → upstream attempts (health-aware,
//! retried before the first byte reaches the client, within the model's retry budget) → relay → usage record.
//! Every exit after authentication writes exactly one usage record.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError, web};
use bytes::{Bytes, BytesMut};
use chrono::Utc;
use futures_util::StreamExt;

use crate::catalog::{Catalog, KeyCtx, Target};
use crate::endpoint::Endpoint;
use crate::error::ProxyError;
use crate::health::Admission;
use crate::metering::{Meter, Outcome};
use crate::providers::Translation;
use crate::request::RequestBody;
use crate::server::AppState;
use crate::streaming::{Relay, StreamLimits};
use crate::{auth, limits, routing};

pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Names the provider and upstream model that served the response.
pub const UPSTREAM_HEADER: &str = "x-switchyard-upstream";
/// Most upstream attempts one request makes, whatever the number of targets.
pub const MAX_ATTEMPTS: usize = 3;

pub async fn chat_completions(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    handle(Endpoint::ChatCompletions, req, payload, state).await
}

pub async fn completions(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    handle(Endpoint::Completions, req, payload, state).await
}

pub async fn embeddings(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    handle(Endpoint::Embeddings, req, payload, state).await
}

pub async fn responses(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    handle(Endpoint::Responses, req, payload, state).await
}

/// Anthropic's Messages API, for clients built on the Anthropic SDK.
pub async fn messages(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    handle(Endpoint::Messages, req, payload, state).await
}

async fn handle(
    endpoint: Endpoint,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let started = Instant::now();
    let request_id = request_id(&req);
    let catalog = state.snapshots.load_full();
    let key = match caller(&req, &state, &catalog) {
        Ok(k) => k,
        Err(e) => {
            state.usage.metrics().refused(e.status().as_u16());
            return error_response(&e, &request_id);
        }
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
        limits: None,
        target_limits: None,
    };
    match serve(endpoint, &req, payload, &state, &catalog, key, &mut meter).await {
        Ok(mut res) => {
            limit_headers(&meter, &mut res);
            res
        }
        Err(e) => {
            state.usage.record(meter.finish(Outcome {
                status: e.status().as_u16(),
                error_code: Some(e.code()),
                usage: None,
                estimate: None,
                first_byte: None,
            }));
            let mut res = error_response(&e, &meter.request_id);
            limit_headers(&meter, &mut res);
            res
        }
    }
}

/// OpenAI's `x-ratelimit-*` headers, on every response to a request whose key or team has rate limits.
fn limit_headers(meter: &Meter, res: &mut HttpResponse) {
    if let Some(t) = &meter.limits {
        t.headers.write(res.headers_mut());
    }
}

/// The key context of the caller, from the snapshot (or the anonymous one when governance is off).
pub fn caller<'c>(req: &HttpRequest, state: &AppState, catalog: &'c Catalog) -> Result<&'c KeyCtx, ProxyError> {
    if catalog.version == 0 {
        return Err(ProxyError::NotReady);
    }
    if !state.governance {
        return Ok(&KeyCtx::UNGOVERNED);
    }
    auth::authenticate(catalog, req.headers(), Utc::now())
}

async fn serve(
    endpoint: Endpoint,
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    catalog: &Catalog,
    key: &KeyCtx,
    meter: &mut Meter,
) -> Result<HttpResponse, ProxyError> {
    let body = tokio::time::timeout(state.timeouts.client_body, read_body(req, payload, state.max_body_bytes))
        .await
        .map_err(|_| ProxyError::RequestTimeout)??;
    meter.prompt_estimate = body.len() as u64 / 4;
    let parsed = RequestBody::parse(&body)?;
    meter.model.push_str(&parsed.model);
    meter.stream = parsed.stream;
    let route =
        catalog.model_for(&parsed.model, key).ok_or_else(|| ProxyError::ModelNotFound(parsed.model.to_string()))?;
    if !key.allows(&route.name) {
        return Err(ProxyError::ModelNotAllowed(parsed.model.to_string()));
    }
    meter.price = route.price;
    if state.governance {
        let ask = limits::Ask {
            team_id: key.team_id,
            key_id: key.id,
            prompt_tokens: meter.prompt_estimate,
            body: &body,
            price: route.price,
        };
        let ticket = state.limiter.admit(&catalog.limits, &ask).await.map_err(|d| ProxyError::Limited(Box::new(d)))?;
        meter.limits = ticket.map(std::sync::Arc::new);
    }
    let candidates = routing::plan(route, &mut rand::rng());
    if candidates.is_empty() {
        return Err(ProxyError::NoRoute(parsed.model.to_string()));
    }
    route.retry_budget.deposit();

    // Health is asked attempt by attempt (asking claims the half-open probe slot). If the circuit breaker has
    // ejected every target, they are all tried anyway rather than fail every request.
    let order = candidates.iter().filter_map(|t| match t.health.admit(Instant::now()) {
        Admission::Skip => None,
        a => Some((*t, a)),
    });
    let panic_mode = candidates.iter().map(|t| (*t, Admission::Allow));
    let mut order: Box<dyn Iterator<Item = (&Target, Admission)>> = Box::new(order);
    let mut tried = 0;
    let mut panicked = false;
    // Set when a target's provider has no such endpoint (Anthropic has no embeddings); such targets are passed over.
    let mut unsupported = false;
    // The soonest a target skipped for capacity (its cap, or a cool-down after a 429) has room again.
    let mut capped: Option<std::time::Duration> = None;
    let mut last: Result<(reqwest::Response, &Target, Translation), ProxyError> = Err(ProxyError::UpstreamUnavailable);
    loop {
        let Some((target, admission)) = order.next() else {
            if tried == 0 && !panicked && !unsupported && capped.is_none() {
                tracing::warn!(model = %route.name, "every target is ejected; trying them anyway");
                order = Box::new(panic_mode.clone());
                panicked = true;
                continue;
            }
            break;
        };
        if tried == MAX_ATTEMPTS {
            break;
        }
        // The provider seam: `Translation::None` (same dialect both sides) is the byte-splicing fast path.
        let translation = match Translation::of(endpoint, target.upstream.dialect) {
            Ok(t) => t,
            Err(e) => {
                unsupported = true;
                last = Err(e);
                continue;
            }
        };
        match claim_capacity(state, target, meter.team_id, meter.prompt_estimate).await {
            Ok(ticket) => meter.target_limits = ticket.map(std::sync::Arc::new),
            Err(wait) => {
                if admission == Admission::Probe {
                    target.health.release_probe();
                }
                capped = Some(capped.map_or(wait, |c| c.min(wait)));
                continue;
            }
        }
        let attempt = tried;
        tried += 1;
        if attempt > 0 && !route.retry_budget.withdraw() {
            state.usage.metrics().retries_denied.with_label_values(&[&*route.name]).inc();
            tracing::warn!(request_id = %meter.request_id, model = %route.name, "retry budget spent; not retrying");
            break;
        }
        meter.provider_id = Some(target.upstream.id);
        meter.upstream_model = Some(target.upstream_model.to_string());
        let upstream_body =
            translation.request_body(endpoint, &body, &parsed, &target.upstream_model, &target.upstream_model_json)?;
        let result = send(state, endpoint, target, upstream_body).await;
        let outcome = attempt_outcome(&result);
        let metrics = state.usage.metrics();
        if let Ok(res) = &result {
            learn_upstream_limits(state, target, res).await;
        }
        metrics.attempts.with_label_values(&[&*target.upstream.name, outcome]).inc();
        if target.health.record(Instant::now(), admission, matches!(outcome, "ok" | "http_4xx")) {
            metrics.ejections.with_label_values(&[&*target.upstream.name, &*target.upstream_model]).inc();
            tracing::warn!(provider = %target.upstream.name, upstream_model = %target.upstream_model, "target ejected after repeated failures");
        }
        match result {
            Ok(res) if !retryable(res.status()) => {
                return respond(res, target, translation, &parsed, state, meter).await;
            }
            Ok(res) => {
                tracing::warn!(request_id = %meter.request_id, provider = %target.upstream.name, attempt, outcome, "upstream attempt failed");
                last = Ok((res, target, translation));
            }
            Err(e) => {
                tracing::warn!(request_id = %meter.request_id, provider = %target.upstream.name, attempt, outcome, "upstream attempt failed");
                last = Err(e);
            }
        }
    }
    // Every target was at capacity: the client is told when the soonest has room, and no upstream call is made.
    if let (0, Some(retry_after)) = (tried, capped) {
        meter.target_limits = None;
        return Err(ProxyError::Limited(Box::new(limits::Denied::Capacity {
            model: route.name.to_string(),
            retry_after,
        })));
    }
    // No attempt succeeded: the client gets the last upstream answer as it was, or the gateway's error.
    let (res, target, translation) = last?;
    respond(res, target, translation, &parsed, state, meter).await
}

/// Takes the attempt's share of the target's capacity: refused (with the time until it has room) while the target
/// cools down after a 429 or its provider credential is at a cap.
async fn claim_capacity(
    state: &AppState,
    target: &Target,
    team_id: i64,
    prompt_estimate: u64,
) -> Result<Option<limits::Ticket>, std::time::Duration> {
    let provider = &*target.upstream.name;
    if let Some(left) = state.limiter.cooling(target.upstream.id, &target.upstream_model, &target.health.cool).await {
        state.usage.metrics().capped.with_label_values(&[provider, "cooling"]).inc();
        return Err(left);
    }
    let Some(policy) = &target.caps else { return Ok(None) };
    match state.limiter.admit_target(target.upstream.id, team_id, policy, prompt_estimate).await {
        Ok(ticket) => {
            state.usage.metrics().capped.with_label_values(&[provider, "admitted"]).inc();
            Ok(Some(ticket))
        }
        Err(denied) => {
            state.usage.metrics().capped.with_label_values(&[provider, "throttled"]).inc();
            target.health.limits.throttled(Utc::now());
            Err(denied.retry_after())
        }
    }
}

/// Reads the provider's rate-limit headers: its advertised limits into a gauge, and on a 429 a cool-down of the
/// target for as long as the provider asked.
async fn learn_upstream_limits(state: &AppState, target: &Target, res: &reqwest::Response) {
    let headers = res.headers();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let metrics = state.usage.metrics();
    for (kind, limit) in limits::cooldown::advertised_limits(header) {
        if let Some(n) = limit {
            target.health.limits.learned(kind, n);
            metrics
                .advertised_limit
                .with_label_values(&[&*target.upstream.name, kind])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
    if res.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
        let length = limits::cooldown::cooldown_of(header, std::time::SystemTime::now());
        metrics.cooldowns.with_label_values(&[&*target.upstream.name, &*target.upstream_model]).inc();
        tracing::warn!(provider = %target.upstream.name, upstream_model = %target.upstream_model, cooldown_ms = length.as_millis() as u64, "upstream rate limit: cooling the target down");
        state.limiter.cool_down(target.upstream.id, &target.upstream_model, &target.health.cool, length).await;
    }
}

/// Sends one attempt and waits for the response headers, within the first-byte timeout.
async fn send(
    state: &AppState,
    endpoint: Endpoint,
    target: &Target,
    body: Vec<u8>,
) -> Result<reqwest::Response, ProxyError> {
    let url = target.upstream.url(endpoint).ok_or(ProxyError::UpstreamUnavailable)?;
    let mut rb = state.client.post(url.clone()).header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
    if let Some((name, value)) = &target.upstream.auth {
        rb = rb.header(*name, value.clone());
    }
    if let Some((name, value)) = &target.upstream.extra_header {
        rb = rb.header(*name, value.clone());
    }
    let first_byte = state.timeouts.for_upstream(&target.upstream.timeouts).first_byte;
    match tokio::time::timeout(first_byte, rb.send()).await {
        Err(_) => Err(ProxyError::UpstreamTimeout),
        Ok(Err(e)) if e.is_timeout() => Err(ProxyError::UpstreamTimeout),
        Ok(Err(_)) => Err(ProxyError::UpstreamUnavailable),
        Ok(Ok(res)) => Ok(res),
    }
}

fn retryable(status: reqwest::StatusCode) -> bool {
    status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// Low-cardinality label of one attempt's result.
fn attempt_outcome(result: &Result<reqwest::Response, ProxyError>) -> &'static str {
    match result {
        Ok(res) if res.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => "http_429",
        Ok(res) if res.status().is_server_error() => "http_5xx",
        Ok(res) if res.status().is_client_error() => "http_4xx",
        Ok(_) => "ok",
        Err(ProxyError::UpstreamTimeout) => "timeout",
        Err(_) => "connect_error",
    }
}

/// Turns the upstream response into the client's: a relayed stream, or the whole body with usage read from it.
async fn respond(
    res: reqwest::Response,
    target: &Target,
    translation: Translation,
    parsed: &RequestBody<'_>,
    state: &AppState,
    meter: &mut Meter,
) -> Result<HttpResponse, ProxyError> {
    let status = res.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        tracing::error!(provider = %target.upstream.name, status = status.as_u16(), "upstream rejected the provider credential");
        return Err(ProxyError::UpstreamAuth);
    }
    let client_status =
        StatusCode::from_u16(translation.client_status(status.as_u16())).map_err(|_| ProxyError::UpstreamInvalid)?;
    let content_type = res
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| HeaderValue::from_str(v).ok());
    let is_sse = content_type.as_ref().is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let timeouts = state.timeouts.for_upstream(&target.upstream.timeouts);
    let deadline = tokio::time::Instant::from_std(meter.started) + timeouts.total;

    let mut builder = HttpResponse::build(client_status);
    response_headers(&mut builder, &meter.request_id, target);

    if status.is_success() && parsed.stream && is_sse {
        let limits = StreamLimits { idle: timeouts.idle, deadline };
        let mut relay = Relay::new(
            translation.stream(Box::pin(res.bytes_stream())),
            parsed.client_wants_usage,
            meter.clone(),
            state.usage.clone(),
            limits,
        );
        if translation.client_speaks_anthropic() {
            relay.read_anthropic_usage();
        }
        builder.insert_header((CONTENT_TYPE, "text/event-stream")).insert_header((CACHE_CONTROL, "no-cache"));
        return Ok(builder.streaming(relay));
    }

    let bytes = tokio::time::timeout_at(deadline, res.bytes())
        .await
        .map_err(|_| ProxyError::UpstreamTimeout)?
        .map_err(|_| ProxyError::UpstreamUnavailable)?;
    let (client_status, bytes, usage) = translation.response_body(client_status.as_u16(), bytes);
    let client_status = StatusCode::from_u16(client_status).map_err(|_| ProxyError::UpstreamInvalid)?;
    builder.status(client_status);
    // The upstream said success but its body could not be read: the client got the gateway's 502.
    let replaced = status.is_success() && !client_status.is_success();
    // Recorded (durably: see `UsageSink::record`) before the response is handed out.
    state.usage.record(meter.finish(Outcome {
        status: client_status.as_u16(),
        error_code: if replaced {
            Some(ProxyError::UpstreamInvalid.code())
        } else {
            (!client_status.is_success()).then_some("upstream_error")
        },
        usage,
        estimate: None,
        first_byte: Some(Instant::now()),
    }));
    // A translated body, or the gateway's own 502 in place of an unreadable one, is JSON.
    if translation != Translation::None || replaced {
        builder.insert_header((CONTENT_TYPE, "application/json"));
    } else if let Some(ct) = content_type {
        builder.insert_header((CONTENT_TYPE, ct));
    }
    Ok(builder.body(bytes))
}

fn response_headers(builder: &mut HttpResponseBuilder, request_id: &str, target: &Target) {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        builder.insert_header((REQUEST_ID_HEADER, v));
    }
    if let Some(v) = &target.upstream_header {
        builder.insert_header((UPSTREAM_HEADER, v.clone()));
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
pub fn request_id(req: &HttpRequest) -> String {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map_or_else(fresh_request_id, str::to_owned)
}

/// `req_` and a UUIDv7 in simple form, written without the formatting machinery.
fn fresh_request_id() -> String {
    let mut buf = [0u8; uuid::fmt::Simple::LENGTH];
    let mut id = String::with_capacity(4 + uuid::fmt::Simple::LENGTH);
    id.push_str("req_");
    id.push_str(uuid::Uuid::now_v7().simple().encode_lower(&mut buf));
    id
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
