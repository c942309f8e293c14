//! `/console/account`: the signed-in user's settings — their roles and teams, password change (which ends
//! their other sessions), and personal access tokens for the admin API, which act with exactly this user's role
//! and teams.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;

use super::error::PageError;
use super::format;
use super::login::Empty;
use super::session::{self, Posted, Viewer};
use super::team::SecretView;
use super::view::{self, Chrome, FormErrors};
use crate::domain::{accounts, memberships, personal_tokens, sessions};
use crate::web::AppState;

#[derive(Template)]
#[template(path = "account/settings.html")]
pub struct AccountView {
    pub chrome: Chrome,
    pub email: String,
    pub role: &'static str,
    pub teams: Vec<(i64, String, &'static str)>,
    pub password_errors: FormErrors,
    pub password_changed: bool,
    pub tokens: Option<Vec<TokenRow>>,
    pub token_name: String,
    pub token_errors: FormErrors,
}

pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub created: String,
    pub last_used: String,
    pub revoked: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct AccountQuery {
    #[serde(default)]
    changed: Option<String>,
}

async fn page(
    state: &AppState,
    viewer: &Viewer,
    password_errors: FormErrors,
    token_name: String,
    token_errors: FormErrors,
) -> Result<AccountView, PageError> {
    let teams = memberships::teams_of_user(&state.store, viewer.user.id)
        .await?
        .into_iter()
        .map(|m| (m.team_id, m.team_name, m.role.label()))
        .collect();
    // Every role may hold tokens: the API applies the holder's own role and teams.
    let tokens = Some(
        personal_tokens::list(&state.store, viewer.user.id)
            .await?
            .into_iter()
            .map(|t| TokenRow {
                id: t.id,
                name: t.name,
                prefix: t.prefix,
                created: format::timestamp(t.created_at),
                last_used: t.last_used_at.map_or_else(|| "never".to_owned(), format::timestamp),
                revoked: t.revoked_at.is_some(),
            })
            .collect(),
    );
    Ok(AccountView {
        chrome: Chrome::new(viewer, "account"),
        email: viewer.user.email.clone(),
        role: viewer.user.role.label(),
        teams,
        password_errors,
        password_changed: false,
        tokens,
        token_name,
        token_errors,
    })
}

pub async fn show(
    state: web::Data<AppState>,
    viewer: Viewer,
    query: web::Query<AccountQuery>,
) -> Result<HttpResponse, PageError> {
    let mut page = page(&state, &viewer, FormErrors::default(), String::new(), FormErrors::default()).await?;
    page.password_changed = query.changed.is_some();
    view::ok(&page)
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm_password: String,
}

#[tracing::instrument(name = "console.account.password", skip_all, fields(user_id = posted.viewer.user.id))]
pub async fn change_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    posted: Posted<PasswordForm>,
) -> Result<HttpResponse, PageError> {
    let Posted { viewer, form } = posted;
    let result = accounts::change_password(
        &state.store,
        &viewer.actor(),
        viewer.user.id,
        &form.current_password,
        &form.new_password,
        &form.confirm_password,
    )
    .await;
    match result {
        Ok(user) => {
            // Every session of the user ended with the version bump; this one continues with a fresh cookie.
            let console = session::console_state(&req)?;
            let keys = console.keys(&state.store).await?;
            let (token, new_session) = sessions::issue(&keys, &user, Utc::now())?;
            let mut res = view::see_other("/console/account?changed=1");
            res.add_cookie(&session::session_cookie(&req, token, &new_session))
                .map_err(|e| PageError::BadRequest(e.to_string()))?;
            Ok(res)
        }
        Err(e) => {
            let errors = FormErrors::from_domain(e, |p| p)?;
            let page = page(&state, &viewer, errors, String::new(), FormErrors::default()).await?;
            view::render(StatusCode::BAD_REQUEST, &page)
        }
    }
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    name: String,
}

#[tracing::instrument(name = "console.account.token", skip_all, fields(user_id = posted.viewer.user.id))]
pub async fn create_token(state: web::Data<AppState>, posted: Posted<TokenForm>) -> Result<HttpResponse, PageError> {
    let Posted { viewer, form } = posted;
    match personal_tokens::create(&state.store, &viewer.principal, &form.name).await {
        Ok((token, secret)) => {
            let page = SecretView {
                chrome: Chrome::new(&viewer, "account"),
                title: format!("Token \u{201c}{}\u{201d} created", token.name),
                intro: "Use it as `Authorization: Bearer <token>` on /api/v1. It is shown only once.".to_owned(),
                label: "Personal access token",
                secret,
                back: "/console/account".to_owned(),
                back_label: "Back to account settings".to_owned(),
            };
            view::ok(&page)
        }
        Err(e) => {
            let errors = FormErrors::from_domain(e, |p| p)?;
            let page = page(&state, &viewer, FormErrors::default(), form.name, errors).await?;
            view::render(StatusCode::BAD_REQUEST, &page)
        }
    }
}

pub async fn revoke_token(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    posted: Posted<Empty>,
) -> Result<HttpResponse, PageError> {
    let viewer = posted.viewer;
    personal_tokens::revoke(&state.store, &viewer.principal, *id).await?;
    Ok(view::see_other("/console/account#tokens"))
}
