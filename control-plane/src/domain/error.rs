//! The domain error: what went wrong in terms a caller can act on. The web layer maps it to HTTP in one place.

use sea_orm::{DbErr, SqlErr};

use crate::crypto::CryptoError;

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// The input breaks a rule; `param` names the offending field, OpenAI style.
    #[error("{message}")]
    Invalid { param: Option<String>, message: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness rule (slug, name) would be broken.
    #[error("{0}")]
    Conflict(String),
    #[error("invalid or revoked credentials")]
    Unauthenticated,
    #[error("database error")]
    Db(#[from] DbErr),
    #[error("credential encryption failed")]
    Crypto(#[from] CryptoError),
    #[error("{0}")]
    Internal(String),
}

impl DomainError {
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { param: Some(param.into()), message: message.into() }
    }

    /// Turns a unique-constraint violation into [`DomainError::Conflict`]; any other error stays a database error.
    pub fn on_unique(err: DbErr, conflict: impl FnOnce() -> String) -> Self {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => Self::Conflict(conflict()),
            _ => Self::Db(err),
        }
    }
}
