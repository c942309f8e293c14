//! The one place where console failures become HTML: a status, a plain page with a clear message, and a log
//! line with the whole cause chain for server-side failures. (The JSON API has its own renderer,
//! `web::error`.) Signed-out visitors are sent to the login page instead.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

use crate::domain::DomainError;
use crate::domain::access::Denied;
use crate::domain::invites::InviteError;
use crate::domain::snapshot::error_chain;

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("sign in first")]
    LoginRequired { next: String },
    #[error("you do not have access to this page or action")]
    Forbidden,
    #[error("this page does not exist, or you do not have access to it")]
    NotFound,
    #[error("the form was stale or did not come from this site; reload the page and try again")]
    Csrf,
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("the page could not be rendered")]
    Render(#[from] askama::Error),
}

impl From<Denied> for PageError {
    fn from(_: Denied) -> Self {
        Self::Forbidden
    }
}

impl From<InviteError> for PageError {
    fn from(e: InviteError) -> Self {
        match e {
            InviteError::Denied => Self::Forbidden,
            InviteError::Domain(d) => Self::Domain(d),
        }
    }
}

#[derive(Template)]
#[template(path = "errors/error.html")]
struct ErrorView<'a> {
    status: u16,
    title: &'a str,
    message: String,
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::LoginRequired { .. } => StatusCode::SEE_OTHER,
            Self::Forbidden | Self::Csrf => StatusCode::FORBIDDEN,
            Self::NotFound | Self::Domain(DomainError::NotFound(_)) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) | Self::Domain(DomainError::Invalid { .. }) => StatusCode::BAD_REQUEST,
            Self::Domain(DomainError::Conflict(_)) => StatusCode::CONFLICT,
            Self::Domain(DomainError::Unauthenticated) => StatusCode::UNAUTHORIZED,
            Self::Domain(DomainError::Db(_) | DomainError::Crypto(_) | DomainError::Internal(_)) | Self::Render(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if let Self::LoginRequired { next } = self {
            let target = format!("/console/login?next={}", urlencode(next));
            return HttpResponse::SeeOther().insert_header((header::LOCATION, target)).finish();
        }
        let (title, message) = if status.is_server_error() {
            tracing::error!(error = %error_chain(self), "console request failed");
            ("Something went wrong", "The control plane failed to handle this request. Try again later.".to_owned())
        } else {
            tracing::debug!(error = %self, status = status.as_u16(), "console request refused");
            let title = match status {
                StatusCode::FORBIDDEN => "Not allowed",
                StatusCode::NOT_FOUND => "Not found",
                StatusCode::CONFLICT => "Conflict",
                _ => "Cannot do that",
            };
            (title, self.to_string())
        };
        let view = ErrorView { status: status.as_u16(), title, message };
        let body = view.render().unwrap_or_else(|_| title.to_owned());
        HttpResponse::build(status)
            .insert_header(ContentType::html())
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(body)
    }
}

/// Percent-encodes everything but unreserved characters and `/`.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
