//! Who may call: users on the admin API (a bearer token looked up by hash — [`ApiCaller`] carries the token's
//! user as a [`Principal`] with their role and teams), data-plane nodes
//! on the node API (the shared node token, compared in constant time before the body is read).

use std::fmt;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpRequest, web};
use chrono::Utc;
use futures_util::future::LocalBoxFuture;
use subtle::ConstantTimeEq as _;
use switchyard_shared::KeyHash;

use super::AppState;
use super::error::ApiError;
use crate::domain::access::Principal;
use crate::domain::audit::Actor;
use crate::domain::operators;

/// The bearer token of a request, if it has one.
fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim()).filter(|t| !t.is_empty())
}

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Domain(crate::domain::DomainError::Internal("missing app state".into())))
}

/// The caller of an admin API route: the user a token (bootstrap or personal access token) belongs to, with
/// exactly that user's platform role and team roles. Handlers ask it before calling the domain: a team the
/// caller cannot see is "not found", a visible thing the caller may not change is "forbidden".
#[derive(Debug, Clone)]
pub struct ApiCaller {
    pub principal: Principal,
    pub token_prefix: String,
}

impl std::ops::Deref for ApiCaller {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.principal
    }
}

impl ApiCaller {
    /// The audit actor: the token, so a log line names the credential that acted.
    pub fn actor(&self) -> Actor {
        Actor::token(&self.token_prefix)
    }

    /// Refuses with 403 unless `allowed`.
    pub fn require(&self, allowed: bool) -> Result<(), ApiError> {
        if allowed { Ok(()) } else { Err(ApiError::Forbidden) }
    }

    /// Refuses with 404 a team the caller cannot see.
    pub fn visible_team(&self, team_id: i64) -> Result<(), ApiError> {
        if self.can_view_team(team_id) {
            Ok(())
        } else {
            Err(ApiError::Domain(crate::domain::DomainError::NotFound("team")))
        }
    }
}

impl FromRequest for ApiCaller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let token = bearer(req).map(str::to_owned);
        let state = state(req);
        Box::pin(async move {
            let token = token.ok_or(ApiError::Unauthorized("access token"))?;
            let state = state?;
            let unauthorized = |e| match e {
                crate::domain::DomainError::Unauthenticated => ApiError::Unauthorized("access token"),
                other => ApiError::Domain(other),
            };
            let (op, user) =
                operators::authenticate_user(&state.store, &token, Utc::now()).await.map_err(unauthorized)?;
            let principal = Principal::load(&state.store, user, None).await.map_err(ApiError::Domain)?;
            Ok(ApiCaller { principal, token_prefix: op.prefix })
        })
    }
}

/// The node token, kept as its SHA-256 so that comparison is over fixed-length digests.
#[derive(Clone)]
pub struct NodeToken(KeyHash);

impl NodeToken {
    pub fn new(token: &str) -> Self {
        Self(KeyHash::of(token))
    }

    pub fn matches(&self, presented: &str) -> bool {
        KeyHash::of(presented).0.ct_eq(&self.0.0).into()
    }
}

impl fmt::Debug for NodeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NodeToken(<redacted>)")
    }
}

/// Middleware of the node scope: refuses a request without the node token before anything else runs.
pub async fn require_node_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = state(req.request())?;
    let ok = bearer(req.request()).is_some_and(|t| state.node_token.matches(t));
    if !ok {
        return Err(ApiError::Unauthorized("node token").into());
    }
    next.call(req).await
}
