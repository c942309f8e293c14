//! The one place where errors become HTTP: status, OpenAI-shaped JSON body (`switchyard_shared::ErrorBody`),
//! and a log line with the whole cause chain for server-side failures. Users see a clear message, never
//! internals.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, ResponseError, web};
use switchyard_shared::ErrorBody;

use crate::domain::DomainError;
use crate::domain::snapshot::error_chain;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("invalid or missing {0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    BadRequest(String),
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("no such route")]
    RouteNotFound,
    /// Signed in, but the caller's role does not allow this.
    #[error("your role does not allow this")]
    Forbidden,
}

const INVALID_REQUEST: &str = "invalid_request_error";

impl ApiError {
    fn body(&self) -> ErrorBody {
        match self {
            Self::Domain(DomainError::Invalid { param, message }) => {
                let body = ErrorBody::new(message.clone(), INVALID_REQUEST, "invalid_value");
                match param {
                    Some(p) => body.with_param(p),
                    None => body,
                }
            }
            Self::Domain(e @ DomainError::NotFound(_)) => ErrorBody::new(e.to_string(), INVALID_REQUEST, "not_found"),
            Self::Domain(DomainError::Conflict(m)) => ErrorBody::new(m.clone(), INVALID_REQUEST, "conflict"),
            Self::Domain(DomainError::Unauthenticated) => {
                ErrorBody::new("invalid or revoked credentials", INVALID_REQUEST, "invalid_api_key")
            }
            Self::Domain(DomainError::Db(_) | DomainError::Crypto(_) | DomainError::Internal(_)) => {
                ErrorBody::new("the control plane failed to handle the request", "api_error", "internal_error")
            }
            Self::Unauthorized(what) => ErrorBody::new(
                format!("invalid or missing {what}; send `Authorization: Bearer <token>`"),
                INVALID_REQUEST,
                "invalid_api_key",
            ),
            Self::BadRequest(m) => ErrorBody::new(m.clone(), INVALID_REQUEST, "invalid_request"),
            Self::PayloadTooLarge(_) => ErrorBody::new(self.to_string(), INVALID_REQUEST, "payload_too_large"),
            Self::RouteNotFound => ErrorBody::new(self.to_string(), INVALID_REQUEST, "not_found"),
            Self::Forbidden => ErrorBody::new(self.to_string(), INVALID_REQUEST, "permission_denied"),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Domain(DomainError::Invalid { .. }) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Domain(DomainError::NotFound(_)) | Self::RouteNotFound => StatusCode::NOT_FOUND,
            Self::Domain(DomainError::Conflict(_)) => StatusCode::CONFLICT,
            Self::Domain(DomainError::Unauthenticated) | Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::Domain(DomainError::Db(_) | DomainError::Crypto(_) | DomainError::Internal(_)) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = %error_chain(self), "request failed");
        } else {
            tracing::debug!(error = %self, status = status.as_u16(), "request refused");
        }
        HttpResponse::build(status).insert_header(ContentType::json()).body(self.body().to_json())
    }
}

pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default().limit(limit).error_handler(move |err, _req| {
        let api = match err {
            JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
                ApiError::PayloadTooLarge(limit)
            }
            JsonPayloadError::ContentType => {
                ApiError::BadRequest("expected `Content-Type: application/json`".to_owned())
            }
            JsonPayloadError::Deserialize(e) => ApiError::BadRequest(format!("invalid JSON body: {e}")),
            other => ApiError::BadRequest(format!("cannot read the request body: {other}")),
        };
        api.into()
    })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req| {
        let message = match err {
            QueryPayloadError::Deserialize(e) => format!("invalid query string: {e}"),
            other => format!("invalid query string: {other}"),
        };
        ApiError::BadRequest(message).into()
    })
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_err: PathError, _req| ApiError::RouteNotFound.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_cause() {
        let e = ApiError::Domain(DomainError::Internal("secret detail".into()));
        assert_eq!(e.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = e.body();
        assert!(!body.error.message.contains("secret detail"));
        assert_eq!(body.error.kind, "api_error");
    }

    #[test]
    fn validation_errors_name_the_parameter() {
        let e = ApiError::Domain(DomainError::invalid("targets", "needs one"));
        assert_eq!(e.status_code(), StatusCode::BAD_REQUEST);
        assert_eq!(e.body().error.param.as_deref(), Some("targets"));
    }
}
