//! `providers`: upstream endpoints with their credential encrypted at rest.

use sea_orm::entity::prelude::*;

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "providers")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub name: String,
    pub kind: String,
    pub base_url: String,
    /// `base64(nonce || ciphertext)`, see `crate::crypto`.
    pub credential_ciphertext: Option<String>,
    /// Overrides of the nodes' upstream time limits in milliseconds (NULL: the node's default).
    pub first_byte_timeout_ms: Option<i64>,
    pub idle_timeout_ms: Option<i64>,
    pub total_timeout_ms: Option<i64>,
    /// Capacity caps of the credential (NULL: uncapped).
    pub cap_rpm: Option<i64>,
    pub cap_tpm: Option<i64>,
    pub cap_max_concurrency: Option<i64>,
    pub cap_team_share_pct: Option<i16>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("providers::Model")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("credential_ciphertext", &self.credential_ciphertext.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
