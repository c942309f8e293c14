//! The one place where data-plane failures become HTTP: each variant has a status, an OpenAI error body and a
//! low-cardinality code that also labels metrics and usage records.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use switchyard_shared::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("Missing bearer token: send `Authorization: Bearer <key>`.")]
    MissingKey,
    #[error("Incorrect API key provided.")]
    InvalidKey,
    #[error("This API key has expired.")]
    ExpiredKey,
    #[error("This API key is not allowed to use model `{0}`.")]
    ModelNotAllowed(String),
    #[error("The model `{0}` does not exist or you do not have access to it.")]
    ModelNotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("Request body too large: the limit is {0} bytes.")]
    BodyTooLarge(usize),
    #[error("Unknown request URL: {0}.")]
    UnknownPath(String),
    #[error("Method not allowed.")]
    MethodNotAllowed,
    #[error("The request body did not arrive in time.")]
    RequestTimeout,
    #[error("This gateway node has not received its configuration yet.")]
    NotReady,
    #[error("The model `{0}` has no usable upstream.")]
    NoRoute(String),
    #[error("The upstream provider could not be reached.")]
    UpstreamUnavailable,
    #[error("The upstream provider did not answer in time.")]
    UpstreamTimeout,
    #[error("The upstream provider rejected the gateway's credentials.")]
    UpstreamAuth,
    #[error("The upstream provider sent an invalid response.")]
    UpstreamInvalid,
    /// A rate, concurrency or budget limit of the key or its team (429).
    #[error("{}", .0.message())]
    Limited(Box<crate::limits::Denied>),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingKey | Self::InvalidKey | Self::ExpiredKey => StatusCode::UNAUTHORIZED,
            Self::ModelNotAllowed(_) => StatusCode::FORBIDDEN,
            Self::ModelNotFound(_) | Self::UnknownPath(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            Self::NoRoute(_) | Self::UpstreamUnavailable | Self::UpstreamAuth | Self::UpstreamInvalid => {
                StatusCode::BAD_GATEWAY
            }
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// OpenAI's `error.type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MissingKey
            | Self::InvalidKey
            | Self::ExpiredKey
            | Self::ModelNotFound(_)
            | Self::BadRequest(_)
            | Self::BodyTooLarge(_)
            | Self::UnknownPath(_)
            | Self::MethodNotAllowed
            | Self::RequestTimeout => "invalid_request_error",
            Self::ModelNotAllowed(_) => "permission_error",
            Self::NotReady
            | Self::NoRoute(_)
            | Self::UpstreamUnavailable
            | Self::UpstreamTimeout
            | Self::UpstreamAuth
            | Self::UpstreamInvalid => "api_error",
            Self::Limited(d) if d.is_quota() => "insufficient_quota",
            Self::Limited(_) => "rate_limit_error",
        }
    }

    /// OpenAI's `error.code`; also the metric and usage-record label.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingKey => "missing_api_key",
            Self::InvalidKey => "invalid_api_key",
            Self::ExpiredKey => "expired_api_key",
            Self::ModelNotAllowed(_) => "model_not_allowed",
            Self::ModelNotFound(_) => "model_not_found",
            Self::BadRequest(_) => "invalid_request",
            Self::BodyTooLarge(_) => "request_too_large",
            Self::UnknownPath(_) => "unknown_url",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RequestTimeout => "request_timeout",
            Self::NotReady => "not_ready",
            Self::NoRoute(_) => "no_route",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::UpstreamAuth => "upstream_auth_failed",
            Self::UpstreamInvalid => "upstream_invalid_response",
            Self::Limited(d) if d.is_quota() => "insufficient_quota",
            Self::Limited(_) => "rate_limit_exceeded",
        }
    }

    pub fn body(&self) -> ErrorBody {
        let body = ErrorBody::new(self.to_string(), self.kind(), self.code());
        match self {
            Self::ModelNotFound(_) | Self::ModelNotAllowed(_) => body.with_param("model"),
            _ => body,
        }
    }
}

impl ResponseError for ProxyError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status());
        res.content_type("application/json");
        if matches!(self, Self::MissingKey | Self::InvalidKey | Self::ExpiredKey) {
            res.insert_header(("www-authenticate", "Bearer"));
        }
        if let Self::Limited(d) = self {
            res.insert_header(("retry-after", d.retry_after_secs().to_string()));
        }
        let mut res = res.body(self.body().to_json());
        if let Self::Limited(d) = self
            && let Some(h) = d.headers()
        {
            h.write(res.headers_mut());
        }
        res
    }
}
