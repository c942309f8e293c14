//! `/console/invite/{token}`: accepting an invite — a new user sets a password, an existing one confirms theirs
//! — then signs in straight away. An unknown, used or expired link is "not found".

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;

use super::error::PageError;
use super::format;
use super::session::{self, AnonPosted};
use super::view::{self, Chrome, FormErrors};
use crate::domain::invites::{self, PendingInvite};
use crate::domain::{accounts, sessions};
use crate::web::AppState;

#[derive(Template)]
#[template(path = "auth/invite.html")]
pub struct InviteView {
    pub chrome: Chrome,
    pub token: String,
    pub email: String,
    pub joins: String,
    pub expires: String,
    pub account_exists: bool,
    pub min_len: usize,
    pub errors: FormErrors,
}

fn view_of(chrome: Chrome, token: String, p: PendingInvite, errors: FormErrors) -> InviteView {
    let joins = match (&p.team_name, p.team_role) {
        (Some(team), Some(role)) => format!("{team} as {}", role.label().to_lowercase()),
        _ => format!("Switchyard as {}", p.platform_role.label().to_lowercase()),
    };
    InviteView {
        chrome,
        token,
        email: p.email,
        joins,
        expires: format::timestamp(p.expires_at),
        account_exists: p.account_exists,
        min_len: accounts::MIN_PASSWORD_LEN,
        errors,
    }
}

async fn pending(state: &AppState, token: &str) -> Result<PendingInvite, PageError> {
    invites::find(&state.store, token, Utc::now()).await.map_err(|e| match e {
        crate::domain::DomainError::NotFound(_) => PageError::NotFound,
        other => other.into(),
    })
}

pub async fn form(
    req: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let invite = pending(&state, &token).await?;
    let (csrf, cookie) = session::anon_csrf(&req);
    let page = view_of(Chrome::anonymous(csrf), token.into_inner(), invite, FormErrors::default());
    let mut res = view::ok(&page)?;
    if let Some(c) = cookie {
        res.add_cookie(&c).map_err(|e| PageError::BadRequest(e.to_string()))?;
    }
    Ok(res)
}

#[derive(Deserialize)]
pub struct AcceptForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm_password: String,
}

#[tracing::instrument(name = "console.invite.accept", skip_all)]
pub async fn accept(
    req: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
    posted: AnonPosted<AcceptForm>,
) -> Result<HttpResponse, PageError> {
    let form = posted.form;
    let address = session::client_address(&req);
    let now = Utc::now();
    match invites::accept(&state.store, &token, &form.password, &form.confirm_password, address.as_deref(), now).await {
        Ok(user) => {
            let console = session::console_state(&req)?;
            let keys = console.keys(&state.store).await?;
            let (cookie_value, s) = sessions::issue(&keys, &user, now)?;
            let mut res = view::see_other("/console");
            res.add_cookie(&session::session_cookie(&req, cookie_value, &s))
                .map_err(|e| PageError::BadRequest(e.to_string()))?;
            Ok(res)
        }
        Err(crate::domain::DomainError::NotFound(_)) => Err(PageError::NotFound),
        Err(e) => {
            let errors = FormErrors::from_domain(e, |p| match p {
                "new_password" => "password",
                p => p,
            })?;
            let invite = pending(&state, &token).await?;
            let (csrf, _) = session::anon_csrf(&req);
            let page = view_of(Chrome::anonymous(csrf), token.into_inner(), invite, errors);
            view::render(StatusCode::BAD_REQUEST, &page)
        }
    }
}
