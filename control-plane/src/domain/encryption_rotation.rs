//! Re-encrypting every stored secret under the current encryption key: provider credentials and the console's
//! shared secrets. Run by `switchyard-control-plane rotate-encryption-key` with the new key as
//! `SWITCHYARD_ENCRYPTION_KEY` and the old one as `SWITCHYARD_ENCRYPTION_KEY_PREVIOUS`; one transaction, so a
//! failure changes nothing. Plaintexts do not change, so neither does the snapshot or its version.

use chrono::Utc;
use sea_orm::{ActiveModelTrait as _, ColumnTrait as _, EntityTrait as _, IntoActiveModel as _, QueryFilter as _, Set};

use super::audit::{self, Actor, AuditEntry};
use super::change::begin_write;
use super::{DomainError, Store};
use crate::entities::{console_secrets, providers};

/// How many values were re-encrypted, and how many were already under the current key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rotation {
    pub reencrypted: usize,
    pub already_current: usize,
}

pub async fn reencrypt_all(store: &Store) -> Result<Rotation, DomainError> {
    let txn = begin_write(&store.db).await?;
    let mut done = Rotation::default();
    let rows =
        providers::Entity::find().filter(providers::Column::CredentialCiphertext.is_not_null()).all(&txn).await?;
    for row in rows {
        let Some(stored) = row.credential_ciphertext.clone() else { continue };
        if store.cipher.is_current(&stored) {
            done.already_current += 1;
            continue;
        }
        let fresh = store.cipher.encrypt(&store.cipher.decrypt(&stored)?)?;
        let mut active = row.into_active_model();
        active.credential_ciphertext = Set(Some(fresh));
        active.update(&txn).await?;
        done.reencrypted += 1;
    }
    for row in console_secrets::Entity::find().all(&txn).await? {
        if store.cipher.is_current(&row.ciphertext) {
            done.already_current += 1;
            continue;
        }
        let fresh = store.cipher.encrypt(&store.cipher.decrypt(&row.ciphertext)?)?;
        let mut active = row.into_active_model();
        active.ciphertext = Set(fresh);
        active.update(&txn).await?;
        done.reencrypted += 1;
    }
    audit::record(
        &txn,
        &Actor::system(),
        AuditEntry::new(
            "encryption_key.rotate",
            "encryption_key",
            "current",
            serde_json::json!({ "reencrypted": done.reencrypted, "already_current": done.already_current }),
        ),
        Utc::now(),
    )
    .await?;
    txn.commit().await?;
    Ok(done)
}
