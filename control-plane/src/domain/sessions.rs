//! Console sessions: HS256 JWTs carried in an HttpOnly cookie. A token names the user, the session version it
//! began with, its own id (`jti`), its CSRF token and its expiry. It is accepted only while it has not
//! expired, its user exists and is enabled, the user's session version is unchanged (password change and
//! disabling bump it) and its id is not in `revoked_sessions` (logout).
//!
//! The signing key is random, made once and stored encrypted with the credential key in `console_secrets`, so
//! every replica shares it and the database alone does not reveal it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng as _;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _, Set};
use serde::{Deserialize, Serialize};

use super::accounts::User;
use super::{DomainError, Store, csrf};
use crate::entities::{console_secrets, revoked_sessions, users};

pub const SESSION_TTL: Duration = Duration::hours(8);
const SIGNING_KEY_NAME: &str = "session_signing_key";
const AUDIENCE: &str = "switchyard-console";

/// The session signing key. Its `Debug` never shows it.
#[derive(Clone)]
pub struct SessionKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(<redacted>)")
    }
}

impl SessionKeys {
    pub fn from_secret(secret: &[u8]) -> Self {
        Self { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret) }
    }

    /// Loads the shared signing key, creating it on first use (the first replica to insert wins).
    pub async fn load(store: &Store) -> Result<Self, DomainError> {
        if let Some(row) = console_secrets::Entity::find_by_id(SIGNING_KEY_NAME.to_owned()).one(&store.db).await? {
            return Self::decrypt(store, &row.ciphertext);
        }
        let mut secret = [0u8; 32];
        rand::rng().fill(&mut secret);
        let row = console_secrets::ActiveModel {
            name: Set(SIGNING_KEY_NAME.to_owned()),
            ciphertext: Set(store.cipher.encrypt(&BASE64.encode(secret))?),
            created_at: Set(Utc::now()),
        };
        console_secrets::Entity::insert(row)
            .on_conflict(OnConflict::column(console_secrets::Column::Name).do_nothing().to_owned())
            .exec_without_returning(&store.db)
            .await?;
        let row = console_secrets::Entity::find_by_id(SIGNING_KEY_NAME.to_owned())
            .one(&store.db)
            .await?
            .ok_or_else(|| DomainError::Internal("the session signing key vanished".into()))?;
        Self::decrypt(store, &row.ciphertext)
    }

    fn decrypt(store: &Store, ciphertext: &str) -> Result<Self, DomainError> {
        let encoded = store.cipher.decrypt(ciphertext)?;
        let secret = BASE64.decode(encoded).map_err(|e| DomainError::Internal(format!("session key: {e}")))?;
        Ok(Self::from_secret(&secret))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claims {
    sub: String,
    aud: String,
    /// The user's session version when the session began.
    sv: i64,
    jti: String,
    csrf: String,
    iat: i64,
    exp: i64,
}

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user_id: i64,
    pub id: String,
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

/// Signs a new session for `user`; returns the cookie value and the session.
pub fn issue(keys: &SessionKeys, user: &User, now: DateTime<Utc>) -> Result<(String, Session), DomainError> {
    let expires_at = now + SESSION_TTL;
    let claims = Claims {
        sub: user.id.to_string(),
        aud: AUDIENCE.to_owned(),
        sv: user.session_version,
        jti: uuid::Uuid::new_v4().to_string(),
        csrf: csrf::new_token(),
        iat: now.timestamp(),
        exp: expires_at.timestamp(),
    };
    let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding)
        .map_err(|e| DomainError::Internal(format!("cannot sign a session: {e}")))?;
    Ok((token, Session { user_id: user.id, id: claims.jti, csrf: claims.csrf, expires_at }))
}

fn decode(keys: &SessionKeys, token: &str, now: DateTime<Utc>) -> Result<Claims, DomainError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[AUDIENCE]);
    // Expiry is checked below against `now`, so that time stays a parameter.
    validation.validate_exp = false;
    validation.set_required_spec_claims(&["exp", "sub", "aud"]);
    let claims = jsonwebtoken::decode::<Claims>(token, &keys.decoding, &validation)
        .map_err(|_| DomainError::Unauthenticated)?
        .claims;
    if claims.exp <= now.timestamp() {
        return Err(DomainError::Unauthenticated);
    }
    Ok(claims)
}

/// The user and session a cookie stands for, or [`DomainError::Unauthenticated`].
pub async fn resume(
    store: &Store,
    keys: &SessionKeys,
    token: &str,
    now: DateTime<Utc>,
) -> Result<(User, Session), DomainError> {
    let claims = decode(keys, token, now)?;
    let user_id: i64 = claims.sub.parse().map_err(|_| DomainError::Unauthenticated)?;
    let user = users::Entity::find_by_id(user_id).one(&store.db).await?.ok_or(DomainError::Unauthenticated)?;
    if user.disabled_at.is_some() || user.session_version != claims.sv {
        return Err(DomainError::Unauthenticated);
    }
    if revoked_sessions::Entity::find_by_id(claims.jti.clone()).one(&store.db).await?.is_some() {
        return Err(DomainError::Unauthenticated);
    }
    let expires_at = DateTime::from_timestamp(claims.exp, 0).ok_or(DomainError::Unauthenticated)?;
    Ok((user.into(), Session { user_id, id: claims.jti, csrf: claims.csrf, expires_at }))
}

/// Ends one session (logout). Rows of sessions that have expired anyway are cleared on the way.
pub async fn revoke(store: &Store, session: &Session, now: DateTime<Utc>) -> Result<(), DomainError> {
    revoked_sessions::Entity::delete_many().filter(revoked_sessions::Column::ExpiresAt.lt(now)).exec(&store.db).await?;
    let row = revoked_sessions::ActiveModel {
        jti: Set(session.id.clone()),
        user_id: Set(session.user_id),
        expires_at: Set(session.expires_at),
    };
    revoked_sessions::Entity::insert(row)
        .on_conflict(OnConflict::column(revoked_sessions::Column::Jti).do_nothing().to_owned())
        .exec_without_returning(&store.db)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::accounts::PlatformRole;

    fn user() -> User {
        User {
            id: 7,
            email: "a@b.c".into(),
            role: PlatformRole::Member,
            created_at: Utc::now(),
            disabled_at: None,
            session_version: 3,
        }
    }

    #[test]
    fn tokens_expire_and_are_bound_to_their_key() {
        let keys = SessionKeys::from_secret(&[1; 32]);
        let now = Utc::now();
        let (token, session) = issue(&keys, &user(), now).unwrap();
        let claims = decode(&keys, &token, now).unwrap();
        assert_eq!(claims.sv, 3);
        assert_eq!(claims.csrf, session.csrf);
        assert!(decode(&keys, &token, now + SESSION_TTL).is_err());
        assert!(decode(&SessionKeys::from_secret(&[2; 32]), &token, now).is_err());
        assert!(decode(&keys, &format!("{token}x"), now).is_err());
    }
}
