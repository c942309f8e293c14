//! Providers: upstream endpoints. Their credential is encrypted before it reaches the database and is never
//! answered back; only the snapshot carries it, decrypted, to the nodes.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait as _, EntityTrait as _, IntoActiveModel as _, QueryOrder as _, Set};
use serde::{Deserialize, Serialize};
use switchyard_shared::snapshot::{ProviderKind, TargetCaps, UpstreamTimeouts};

use super::audit::{Actor, AuditEntry};
use super::change::Change;
use super::{DomainError, Store};
use crate::entities::providers;

const MAX_NAME_LEN: usize = 100;
const MAX_URL_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provider {
    pub id: i64,
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    pub has_credential: bool,
    /// Overrides of the nodes' upstream time limits; absent fields use each node's defaults.
    pub timeouts: UpstreamTimeouts,
    /// The credential's capacity caps (requests/tokens per minute, requests in flight); absent: uncapped.
    pub caps: TargetCaps,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Body of create and update. On update an omitted `api_key` keeps the stored one and `""` removes it.
#[derive(Clone, Deserialize)]
pub struct ProviderInput {
    pub name: String,
    #[serde(default)]
    pub kind: Option<String>,
    pub base_url: String,
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub timeouts: UpstreamTimeouts,
    #[serde(default)]
    pub caps: TargetCaps,
}

impl std::fmt::Debug for ProviderInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderInput")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeouts", &self.timeouts)
            .field("caps", &self.caps)
            .finish()
    }
}

pub(crate) fn parse_kind(kind: &str) -> Option<ProviderKind> {
    match kind {
        "openai_compatible" => Some(ProviderKind::OpenaiCompatible),
        "azure_openai" => Some(ProviderKind::AzureOpenai),
        "anthropic" => Some(ProviderKind::Anthropic),
        _ => None,
    }
}

pub(crate) fn kind_str(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::OpenaiCompatible => "openai_compatible",
        ProviderKind::AzureOpenai => "azure_openai",
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::Unsupported => "unsupported",
    }
}

impl From<providers::Model> for Provider {
    fn from(m: providers::Model) -> Self {
        Self {
            kind: parse_kind(&m.kind).unwrap_or(ProviderKind::Unsupported),
            has_credential: m.credential_ciphertext.is_some(),
            timeouts: timeouts_of(&m),
            caps: caps_of(&m),
            id: m.id,
            name: m.name,
            base_url: m.base_url,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// The provider's time-limit overrides as the snapshot carries them.
pub(crate) fn timeouts_of(m: &providers::Model) -> UpstreamTimeouts {
    let ms = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
    UpstreamTimeouts {
        first_byte_ms: ms(m.first_byte_timeout_ms),
        idle_ms: ms(m.idle_timeout_ms),
        total_ms: ms(m.total_timeout_ms),
    }
}

/// The provider's capacity caps as the snapshot carries them.
pub(crate) fn caps_of(m: &providers::Model) -> TargetCaps {
    TargetCaps {
        rpm: m.cap_rpm.and_then(|v| u64::try_from(v).ok()),
        tpm: m.cap_tpm.and_then(|v| u64::try_from(v).ok()),
        max_concurrency: m.cap_max_concurrency.and_then(|v| u32::try_from(v).ok()),
        team_share_pct: m.cap_team_share_pct.and_then(|v| u8::try_from(v).ok()),
    }
}

/// Largest cap accepted in any dimension.
const MAX_CAP: u64 = 1_000_000_000;

/// Longest override accepted: one day.
const MAX_TIMEOUT_MS: u64 = 86_400_000;

struct Valid {
    name: String,
    kind: ProviderKind,
    base_url: String,
    timeouts: [Option<i64>; 3],
    /// rpm, tpm, max_concurrency.
    caps: [Option<i64>; 3],
    team_share_pct: Option<i16>,
}

fn validate(input: &ProviderInput) -> Result<Valid, DomainError> {
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(DomainError::invalid("name", format!("name must be 1-{MAX_NAME_LEN} characters")));
    }
    let kind = match input.kind.as_deref() {
        None => ProviderKind::OpenaiCompatible,
        Some(k) => parse_kind(k).ok_or_else(|| {
            DomainError::invalid(
                "kind",
                format!("unknown provider kind `{k}`; supported: openai_compatible, azure_openai, anthropic"),
            )
        })?,
    };
    let base_url = input.base_url.trim().trim_end_matches('/');
    let host = base_url.strip_prefix("https://").or_else(|| base_url.strip_prefix("http://")).unwrap_or_default();
    if host.is_empty()
        || host.starts_with('/')
        || base_url.len() > MAX_URL_LEN
        || base_url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(DomainError::invalid(
            "base_url",
            "base_url must be an http:// or https:// URL, e.g. https://api.openai.com/v1",
        ));
    }
    let t = input.timeouts;
    let mut timeouts = [None; 3];
    for (slot, (param, value)) in timeouts.iter_mut().zip([
        ("timeouts.first_byte_ms", t.first_byte_ms),
        ("timeouts.idle_ms", t.idle_ms),
        ("timeouts.total_ms", t.total_ms),
    ]) {
        if let Some(v) = value {
            if v == 0 || v > MAX_TIMEOUT_MS {
                return Err(DomainError::invalid(param, format!("{param} must be 1-{MAX_TIMEOUT_MS} milliseconds")));
            }
            *slot = i64::try_from(v).ok();
        }
    }
    let c = input.caps;
    let mut caps = [None; 3];
    for (slot, (param, value)) in caps.iter_mut().zip([
        ("caps.rpm", c.rpm),
        ("caps.tpm", c.tpm),
        ("caps.max_concurrency", c.max_concurrency.map(u64::from)),
    ]) {
        if let Some(v) = value {
            if v == 0 || v > MAX_CAP {
                return Err(DomainError::invalid(param, format!("{param} must be 1-{MAX_CAP}")));
            }
            *slot = i64::try_from(v).ok();
        }
    }
    if let Some(pct) = c.team_share_pct
        && !(1..=100).contains(&pct)
    {
        return Err(DomainError::invalid("caps.team_share_pct", "caps.team_share_pct must be 1-100 (percent)"));
    }
    let team_share_pct = c.team_share_pct.map(i16::from);
    Ok(Valid { name: name.to_owned(), kind, base_url: base_url.to_owned(), timeouts, caps, team_share_pct })
}

fn conflict(name: &str) -> impl FnOnce() -> String + '_ {
    move || format!("a provider named `{name}` already exists")
}

pub async fn create(store: &Store, actor: &Actor, input: ProviderInput) -> Result<Provider, DomainError> {
    let valid = validate(&input)?;
    let ciphertext = match input.api_key.as_deref() {
        None | Some("") => None,
        Some(k) => Some(store.cipher.encrypt(k)?),
    };
    let now = Utc::now();
    let change = Change::begin(store).await?;
    let row = providers::ActiveModel {
        name: Set(valid.name.clone()),
        kind: Set(kind_str(valid.kind).to_owned()),
        base_url: Set(valid.base_url),
        credential_ciphertext: Set(ciphertext),
        first_byte_timeout_ms: Set(valid.timeouts[0]),
        idle_timeout_ms: Set(valid.timeouts[1]),
        total_timeout_ms: Set(valid.timeouts[2]),
        cap_rpm: Set(valid.caps[0]),
        cap_tpm: Set(valid.caps[1]),
        cap_max_concurrency: Set(valid.caps[2]),
        cap_team_share_pct: Set(valid.team_share_pct),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&*change)
    .await
    .map_err(|e| DomainError::on_unique(e, conflict(&valid.name)))?;
    let entry = AuditEntry::new(
        "provider.create",
        "provider",
        row.id,
        serde_json::json!({
            "name": row.name,
            "kind": row.kind,
            "base_url": row.base_url,
            "has_credential": row.credential_ciphertext.is_some(),
            "timeouts_ms": [row.first_byte_timeout_ms, row.idle_timeout_ms, row.total_timeout_ms],
            "caps": [row.cap_rpm, row.cap_tpm, row.cap_max_concurrency],
            "team_share_pct": row.cap_team_share_pct,
        }),
    );
    change.commit(store, actor, entry).await?;
    Ok(row.into())
}

pub async fn update(store: &Store, actor: &Actor, id: i64, input: ProviderInput) -> Result<Provider, DomainError> {
    let valid = validate(&input)?;
    let ciphertext = match input.api_key.as_deref() {
        None => None,
        Some("") => Some(None),
        Some(k) => Some(Some(store.cipher.encrypt(k)?)),
    };
    let change = Change::begin(store).await?;
    let row = providers::Entity::find_by_id(id).one(&*change).await?.ok_or(DomainError::NotFound("provider"))?;
    let mut active = row.into_active_model();
    active.name = Set(valid.name.clone());
    active.kind = Set(kind_str(valid.kind).to_owned());
    active.base_url = Set(valid.base_url);
    // A replace: overrides left out fall back to the nodes' defaults.
    active.first_byte_timeout_ms = Set(valid.timeouts[0]);
    active.idle_timeout_ms = Set(valid.timeouts[1]);
    active.total_timeout_ms = Set(valid.timeouts[2]);
    active.cap_rpm = Set(valid.caps[0]);
    active.cap_tpm = Set(valid.caps[1]);
    active.cap_max_concurrency = Set(valid.caps[2]);
    active.cap_team_share_pct = Set(valid.team_share_pct);
    let credential_changed = ciphertext.is_some();
    if let Some(c) = ciphertext {
        active.credential_ciphertext = Set(c);
    }
    active.updated_at = Set(Utc::now());
    let row = active.update(&*change).await.map_err(|e| DomainError::on_unique(e, conflict(&valid.name)))?;
    let entry = AuditEntry::new(
        "provider.update",
        "provider",
        row.id,
        serde_json::json!({
            "name": row.name,
            "kind": row.kind,
            "base_url": row.base_url,
            "credential_changed": credential_changed,
            "has_credential": row.credential_ciphertext.is_some(),
            "timeouts_ms": [row.first_byte_timeout_ms, row.idle_timeout_ms, row.total_timeout_ms],
            "caps": [row.cap_rpm, row.cap_tpm, row.cap_max_concurrency],
            "team_share_pct": row.cap_team_share_pct,
        }),
    );
    change.commit(store, actor, entry).await?;
    Ok(row.into())
}

pub async fn list(store: &Store) -> Result<Vec<Provider>, DomainError> {
    let rows = providers::Entity::find().order_by_asc(providers::Column::Id).all(&store.db).await?;
    Ok(rows.into_iter().map(Provider::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(base_url: &str) -> ProviderInput {
        ProviderInput {
            name: "openai".into(),
            kind: None,
            base_url: base_url.into(),
            api_key: Some("sk-secret".into()),
            timeouts: Default::default(),
            caps: Default::default(),
        }
    }

    #[test]
    fn base_urls_are_checked_and_normalised() {
        assert_eq!(validate(&input("https://api.openai.com/v1/")).unwrap().base_url, "https://api.openai.com/v1");
        assert!(validate(&input("ftp://x")).is_err());
        assert!(validate(&input("https://")).is_err());
        assert!(validate(&input("http://a b")).is_err());
    }

    #[test]
    fn debug_output_hides_the_credential() {
        assert!(!format!("{:?}", input("http://x")).contains("sk-secret"));
    }
}
