//! Providers: upstream endpoints. Their credential is encrypted before it reaches the database and is never
//! answered back; only the snapshot carries it, decrypted, to the nodes.

use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashSet};

use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, ConnectionTrait, EntityTrait as _, IntoActiveModel as _, QueryFilter as _,
    QueryOrder as _, Set,
};
use serde::{Deserialize, Serialize};
use switchyard_shared::snapshot::{ModelCaps, ProviderKind, TargetCaps, UpstreamTimeouts};

use super::audit::{Actor, AuditEntry};
use super::change::Change;
use super::{DomainError, Store};
use crate::entities::{provider_model_caps, providers};

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
    /// Caps of single upstream models on this credential (each set dimension replaces the credential-wide one
    /// for that model).
    #[serde(default)]
    pub model_caps: Vec<ModelCaps>,
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
    /// Replaces the provider's per-upstream-model caps; omitted: none.
    #[serde(default)]
    pub model_caps: Vec<ModelCaps>,
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
            .field("model_caps", &self.model_caps)
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
            model_caps: Vec::new(),
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

/// Every provider's per-upstream-model caps, by provider id (models in name order).
pub(crate) async fn model_caps_by_provider(
    db: &impl ConnectionTrait,
    provider: Option<i64>,
) -> Result<BTreeMap<i64, Vec<ModelCaps>>, DomainError> {
    let mut q = provider_model_caps::Entity::find()
        .order_by_asc(provider_model_caps::Column::ProviderId)
        .order_by_asc(provider_model_caps::Column::UpstreamModel);
    if let Some(id) = provider {
        q = q.filter(provider_model_caps::Column::ProviderId.eq(id));
    }
    let mut out: BTreeMap<i64, Vec<ModelCaps>> = BTreeMap::new();
    for r in q.all(db).await? {
        out.entry(r.provider_id).or_default().push(ModelCaps {
            upstream_model: r.upstream_model,
            rpm: r.rpm.and_then(|v| u64::try_from(v).ok()),
            tpm: r.tpm.and_then(|v| u64::try_from(v).ok()),
            max_concurrency: r.max_concurrency.and_then(|v| u32::try_from(v).ok()),
        });
    }
    Ok(out)
}

/// Replaces a provider's per-upstream-model caps (inside the caller's change).
async fn replace_model_caps(
    db: &impl ConnectionTrait,
    provider_id: i64,
    caps: &[ModelCaps],
) -> Result<(), DomainError> {
    provider_model_caps::Entity::delete_many()
        .filter(provider_model_caps::Column::ProviderId.eq(provider_id))
        .exec(db)
        .await?;
    let to_i64 = |v: Option<u64>| v.and_then(|v| i64::try_from(v).ok());
    for c in caps {
        provider_model_caps::ActiveModel {
            provider_id: Set(provider_id),
            upstream_model: Set(c.upstream_model.clone()),
            rpm: Set(to_i64(c.rpm)),
            tpm: Set(to_i64(c.tpm)),
            max_concurrency: Set(to_i64(c.max_concurrency.map(u64::from))),
            ..Default::default()
        }
        .insert(db)
        .await?;
    }
    Ok(())
}

/// Most per-upstream-model cap entries on one provider.
const MAX_MODEL_CAPS: usize = 1000;
const MAX_UPSTREAM_MODEL_LEN: usize = 200;

/// Checks and normalises (trimmed names) the per-upstream-model caps.
fn validate_model_caps(caps: &[ModelCaps]) -> Result<Vec<ModelCaps>, DomainError> {
    if caps.len() > MAX_MODEL_CAPS {
        return Err(DomainError::invalid("model_caps", format!("at most {MAX_MODEL_CAPS} model_caps entries")));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(caps.len());
    for (i, c) in caps.iter().enumerate() {
        let name = c.upstream_model.trim();
        if name.is_empty() || name.chars().count() > MAX_UPSTREAM_MODEL_LEN {
            return Err(DomainError::invalid(
                "model_caps.upstream_model",
                format!("model_caps[{i}].upstream_model must be 1-{MAX_UPSTREAM_MODEL_LEN} characters"),
            ));
        }
        if !seen.insert(name.to_owned()) {
            return Err(DomainError::invalid(
                "model_caps.upstream_model",
                format!("upstream model `{name}` is listed twice in model_caps"),
            ));
        }
        if c.rpm.is_none() && c.tpm.is_none() && c.max_concurrency.is_none() {
            return Err(DomainError::invalid(
                "model_caps",
                format!("model_caps entry for `{name}` sets none of rpm, tpm, max_concurrency"),
            ));
        }
        for (param, value) in [
            ("model_caps.rpm", c.rpm),
            ("model_caps.tpm", c.tpm),
            ("model_caps.max_concurrency", c.max_concurrency.map(u64::from)),
        ] {
            if value.is_some_and(|v| v == 0 || v > MAX_CAP) {
                return Err(DomainError::invalid(param, format!("{param} of `{name}` must be 1-{MAX_CAP}")));
            }
        }
        out.push(ModelCaps { upstream_model: name.to_owned(), ..c.clone() });
    }
    Ok(out)
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
    model_caps: Vec<ModelCaps>,
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
    let model_caps = validate_model_caps(&input.model_caps)?;
    Ok(Valid { name: name.to_owned(), kind, base_url: base_url.to_owned(), timeouts, caps, team_share_pct, model_caps })
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
    replace_model_caps(&*change, row.id, &valid.model_caps).await?;
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
            "model_caps": valid.model_caps,
        }),
    );
    change.commit(store, actor, entry).await?;
    Ok(Provider { model_caps: valid.model_caps, ..row.into() })
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
    replace_model_caps(&*change, row.id, &valid.model_caps).await?;
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
            "model_caps": valid.model_caps,
        }),
    );
    change.commit(store, actor, entry).await?;
    Ok(Provider { model_caps: valid.model_caps, ..row.into() })
}

pub async fn list(store: &Store) -> Result<Vec<Provider>, DomainError> {
    let rows = providers::Entity::find().order_by_asc(providers::Column::Id).all(&store.db).await?;
    let mut model_caps = model_caps_by_provider(&store.db, None).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let caps = model_caps.remove(&r.id).unwrap_or_default();
            Provider { model_caps: caps, ..Provider::from(r) }
        })
        .collect())
}

/// One provider with its per-upstream-model caps.
pub async fn get(store: &Store, id: i64) -> Result<Provider, DomainError> {
    let row = providers::Entity::find_by_id(id).one(&store.db).await?.ok_or(DomainError::NotFound("provider"))?;
    let model_caps = model_caps_by_provider(&store.db, Some(id)).await?.remove(&id).unwrap_or_default();
    Ok(Provider { model_caps, ..Provider::from(row) })
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
            model_caps: Vec::new(),
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
