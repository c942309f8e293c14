//! Who is asking: the session cookie becomes a [`Viewer`] (the signed-in [`Principal`] and its session), and
//! every state-changing form is read through [`Posted`] (or [`AnonPosted`] before login), which refuses a body
//! without the right CSRF token or from another origin. A handler cannot get at a form any other way, so no
//! POST skips the check.

use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use chrono::Utc;
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use super::ConsoleState;
use super::error::PageError;
use crate::domain::access::Principal;
use crate::domain::sessions::{self, Session, SessionKeys};
use crate::domain::{DomainError, csrf};
use crate::web::AppState;

pub const SESSION_COOKIE: &str = "sy_session";
/// Double-submit CSRF cookie of the forms shown before login (login, invite acceptance).
pub const ANON_CSRF_COOKIE: &str = "sy_csrf";
const COOKIE_PATH: &str = "/console";

pub(super) fn app_state(req: &HttpRequest) -> Result<web::Data<AppState>, PageError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| PageError::Domain(DomainError::Internal("missing app state".into())))
}

pub(super) fn console_state(req: &HttpRequest) -> Result<web::Data<ConsoleState>, PageError> {
    req.app_data::<web::Data<ConsoleState>>()
        .cloned()
        .ok_or_else(|| PageError::Domain(DomainError::Internal("missing console state".into())))
}

/// The peer's address, for the audit log (the socket's, so it cannot be spoofed by a header).
pub(super) fn client_address(req: &HttpRequest) -> Option<String> {
    req.peer_addr().map(|a| a.ip().to_string())
}

fn is_tls(req: &HttpRequest) -> bool {
    req.connection_info().scheme() == "https"
}

/// The session cookie: HttpOnly, SameSite=Lax, Secure over TLS, expiring with the session.
pub fn session_cookie(req: &HttpRequest, token: String, session: &Session) -> Cookie<'static> {
    let max_age = (session.expires_at - Utc::now()).num_seconds().max(0);
    Cookie::build(SESSION_COOKIE, token)
        .path(COOKIE_PATH)
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(is_tls(req))
        .max_age(CookieDuration::seconds(max_age))
        .finish()
}

pub fn expired_session_cookie(req: &HttpRequest) -> Cookie<'static> {
    let mut c = Cookie::build(SESSION_COOKIE, "").path(COOKIE_PATH).http_only(true).secure(is_tls(req)).finish();
    c.make_removal();
    c
}

/// The anonymous CSRF cookie and its value: the one the browser holds, or a new one.
pub fn anon_csrf(req: &HttpRequest) -> (String, Option<Cookie<'static>>) {
    if let Some(c) = req.cookie(ANON_CSRF_COOKIE).filter(|c| c.value().len() >= 32) {
        return (c.value().to_owned(), None);
    }
    let token = csrf::new_token();
    let cookie = Cookie::build(ANON_CSRF_COOKIE, token.clone())
        .path(COOKIE_PATH)
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(is_tls(req))
        .finish();
    (token, Some(cookie))
}

/// A browser's POST names its origin; it must be this host. (Clients that send no `Origin` rely on the token.)
fn same_origin(req: &HttpRequest) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = req.connection_info().host().to_owned();
    origin.split_once("://").is_some_and(|(_, rest)| rest == host)
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub principal: Principal,
    pub session: Session,
}

impl std::ops::Deref for Viewer {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.principal
    }
}

impl FromRequest for Viewer {
    type Error = PageError;
    type Future = LocalBoxFuture<'static, Result<Self, PageError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let token = req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned()).filter(|t| !t.is_empty());
        let next = if req.method() == actix_web::http::Method::GET {
            req.uri().path_and_query().map_or_else(|| "/console".to_owned(), |p| p.as_str().to_owned())
        } else {
            "/console".to_owned()
        };
        let state = app_state(req);
        let console = console_state(req);
        let address = client_address(req);
        Box::pin(async move {
            let token = token.ok_or_else(|| PageError::LoginRequired { next: next.clone() })?;
            let (state, console) = (state?, console?);
            let keys = console.keys(&state.store).await?;
            let (user, session) = match sessions::resume(&state.store, &keys, &token, Utc::now()).await {
                Ok(found) => found,
                Err(DomainError::Unauthenticated) => return Err(PageError::LoginRequired { next }),
                Err(e) => return Err(e.into()),
            };
            let principal = Principal::load(&state.store, user, address).await?;
            Ok(Self { principal, session })
        })
    }
}

fn parse_form<T: DeserializeOwned>(body: &[u8]) -> Result<(T, String), PageError> {
    let fields: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|e| PageError::BadRequest(format!("unreadable form: {e}")))?;
    let presented = fields.into_iter().find(|(k, _)| k == "csrf").map(|(_, v)| v).unwrap_or_default();
    let form =
        serde_urlencoded::from_bytes(body).map_err(|e| PageError::BadRequest(format!("unreadable form: {e}")))?;
    Ok((form, presented))
}

fn read_body(req: &HttpRequest, payload: &mut Payload) -> LocalBoxFuture<'static, Result<web::Bytes, PageError>> {
    // The default payload limit (256 KiB) is far above any console form.
    let fut = web::Bytes::from_request(req, payload);
    Box::pin(async move { fut.await.map_err(|e| PageError::BadRequest(format!("cannot read the form: {e}"))) })
}

/// A form posted by a signed-in user, after its CSRF token was checked against the session's.
pub struct Posted<T> {
    pub viewer: Viewer,
    pub form: T,
}

impl<T: DeserializeOwned + 'static> FromRequest for Posted<T> {
    type Error = PageError;
    type Future = LocalBoxFuture<'static, Result<Self, PageError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let origin_ok = same_origin(req);
        let viewer = Viewer::from_request(req, payload);
        let body = read_body(req, payload);
        Box::pin(async move {
            if !origin_ok {
                return Err(PageError::Csrf);
            }
            let viewer = viewer.await?;
            let (form, presented) = parse_form::<T>(&body.await?)?;
            if !csrf::matches(&viewer.session.csrf, &presented) {
                return Err(PageError::Csrf);
            }
            Ok(Self { viewer, form })
        })
    }
}

/// A form posted before login, after its CSRF token was checked against the anonymous CSRF cookie.
pub struct AnonPosted<T> {
    pub form: T,
}

impl<T: DeserializeOwned + 'static> FromRequest for AnonPosted<T> {
    type Error = PageError;
    type Future = LocalBoxFuture<'static, Result<Self, PageError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let origin_ok = same_origin(req);
        let expected = req.cookie(ANON_CSRF_COOKIE).map(|c| c.value().to_owned()).unwrap_or_default();
        let body = read_body(req, payload);
        Box::pin(async move {
            if !origin_ok {
                return Err(PageError::Csrf);
            }
            let (form, presented) = parse_form::<T>(&body.await?)?;
            if !csrf::matches(&expected, &presented) {
                return Err(PageError::Csrf);
            }
            Ok(Self { form })
        })
    }
}

impl ConsoleState {
    /// The session signing key, loaded (or created) once per worker.
    pub async fn keys(&self, store: &crate::domain::Store) -> Result<SessionKeys, PageError> {
        Ok(self.keys.get_or_try_init(|| SessionKeys::load(store)).await?.clone())
    }
}
