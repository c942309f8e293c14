//! `/console/login` and `/console/logout`: email + password, throttled after repeated failures; a successful
//! login sets the session cookie and goes where the visitor was headed (on this console only).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;

use super::error::PageError;
use super::session::{self, AnonPosted, Posted};
use super::view::{self, Chrome};
use crate::domain::accounts::{self, LoginOutcome, ThrottlePolicy};
use crate::domain::sessions;
use crate::web::AppState;

#[derive(Template)]
#[template(path = "auth/login.html")]
pub struct LoginView {
    pub chrome: Chrome,
    pub email: String,
    pub next: String,
    pub error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: Option<String>,
}

/// Only paths of this console: never another site (`//host`), never a scheme.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/console") && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/console".to_owned(),
    }
}

fn with_cookie(mut res: HttpResponse, cookie: Option<actix_web::cookie::Cookie<'static>>) -> HttpResponse {
    if let Some(c) = cookie
        && let Err(e) = res.add_cookie(&c)
    {
        tracing::warn!(error = %e, "cannot set the CSRF cookie");
    }
    res
}

pub async fn form(req: HttpRequest, query: web::Query<NextQuery>) -> Result<HttpResponse, PageError> {
    let (csrf, cookie) = session::anon_csrf(&req);
    let page = LoginView {
        chrome: Chrome::anonymous(csrf),
        email: String::new(),
        next: safe_next(query.next.as_deref()),
        error: None,
    };
    Ok(with_cookie(view::ok(&page)?, cookie))
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
}

#[tracing::instrument(name = "console.login", skip_all)]
pub async fn submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    posted: AnonPosted<LoginForm>,
) -> Result<HttpResponse, PageError> {
    let form = posted.form;
    let console = session::console_state(&req)?;
    let now = Utc::now();
    let next = safe_next(form.next.as_deref());
    let outcome = accounts::login(&state.store, &form.email, &form.password, now, ThrottlePolicy::default()).await?;
    let (status, error) = match outcome {
        LoginOutcome::Ok(user) => {
            let keys = console.keys(&state.store).await?;
            let (token, session) = sessions::issue(&keys, &user, now)?;
            tracing::info!(user_id = user.id, "console login");
            let mut res = view::see_other(&next);
            res.add_cookie(&session::session_cookie(&req, token, &session))
                .map_err(|e| PageError::BadRequest(e.to_string()))?;
            return Ok(res);
        }
        LoginOutcome::Invalid => (StatusCode::UNAUTHORIZED, "The email or password is not correct.".to_owned()),
        LoginOutcome::Throttled { retry_after } => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many failed attempts for this address. Try again in {} minutes.",
                retry_after.num_minutes().max(1)
            ),
        ),
    };
    let (csrf, cookie) = session::anon_csrf(&req);
    let page = LoginView { chrome: Chrome::anonymous(csrf), email: form.email, next, error: Some(error) };
    Ok(with_cookie(view::render(status, &page)?, cookie))
}

#[derive(Deserialize)]
pub struct Empty {}

pub async fn logout(
    req: HttpRequest,
    state: web::Data<AppState>,
    posted: Posted<Empty>,
) -> Result<HttpResponse, PageError> {
    sessions::revoke(&state.store, &posted.viewer.session, Utc::now()).await?;
    let mut res = view::see_other("/console/login");
    res.add_cookie(&session::expired_session_cookie(&req)).map_err(|e| PageError::BadRequest(e.to_string()))?;
    Ok(res)
}
