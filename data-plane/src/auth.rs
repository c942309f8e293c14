//! Bearer key → key context, from the in-memory catalog only: no database or control-plane call on the
//! request path. Revoked keys are simply absent from the catalog.

use actix_web::http::header::{AUTHORIZATION, HeaderMap};
use chrono::{DateTime, Utc};
use switchyard_shared::KeyHash;

use crate::catalog::{Catalog, KeyCtx};
use crate::error::ProxyError;

pub fn authenticate<'c>(
    catalog: &'c Catalog,
    headers: &HeaderMap,
    now: DateTime<Utc>,
) -> Result<&'c KeyCtx, ProxyError> {
    // Anthropic's SDK sends its key as `x-api-key`.
    let token = bearer(headers).or_else(|| x_api_key(headers)).ok_or(ProxyError::MissingKey)?;
    let key = catalog.key(&KeyHash::of(token)).ok_or(ProxyError::InvalidKey)?;
    if key.expired_at(now) {
        return Err(ProxyError::ExpiredKey);
    }
    Ok(key)
}

fn x_api_key(headers: &HeaderMap) -> Option<&str> {
    Some(headers.get("x-api-key")?.to_str().ok()?.trim()).filter(|t| !t.is_empty())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}
