//! `/console/providers`: upstream providers (operators only). Credentials are write-only: the form never shows
//! the stored one; leaving the field empty keeps it, ticking "remove" deletes it.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use switchyard_shared::protocol::CapUse;
use switchyard_shared::snapshot::{ModelCaps, TargetCaps, UpstreamTimeouts};

use super::error::PageError;
use super::format;
use super::session::{Posted, Viewer};
use super::view::{self, Chrome, FormErrors, ListNav, ListQuery};
use crate::domain::DomainError;
use crate::domain::listing;
use crate::domain::provider_presets::{self, FromPreset, PRESETS};
use crate::domain::providers::{self, Provider, ProviderInput};
use crate::domain::upstream_status::{self, TargetState, TargetView, UpstreamStatus};
use crate::web::AppState;

#[derive(Template)]
#[template(path = "providers/list.html")]
pub struct ProvidersView {
    pub chrome: Chrome,
    pub nav: ListNav,
    pub rows: Vec<ProviderRow>,
    pub form: ProviderForm,
    pub errors: FormErrors,
    pub presets: Vec<PresetOption>,
    pub preset_form: PresetForm,
    pub preset_errors: FormErrors,
}

/// One choice of the "from a preset" form, with the parameters it takes spelled out for the hint.
pub struct PresetOption {
    pub id: &'static str,
    pub name: &'static str,
    pub params: String,
}

/// The "from a preset" form: the preset fills base URL, kind and auth style; the operator pastes the credential.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct PresetForm {
    #[serde(default)]
    pub preset: String,
    #[serde(default)]
    pub name: String,
    /// Never echoed back into the page.
    #[serde(default)]
    pub api_key: String,
    /// `name=value`, one per line (e.g. Azure's `resource`, `deployment`, `api_version`).
    #[serde(default)]
    pub params: String,
}

impl PresetForm {
    fn input(&self) -> FromPreset {
        let params = self
            .params
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .filter(|(k, _)| !k.is_empty())
            .collect();
        let name = Some(self.name.trim().to_owned()).filter(|n| !n.is_empty());
        FromPreset { preset: self.preset.clone(), name, api_key: Some(self.api_key.clone()), params }
    }
}

fn preset_options() -> Vec<PresetOption> {
    PRESETS
        .iter()
        .map(|p| PresetOption {
            id: p.id,
            name: p.name,
            params: p.params.iter().map(|q| q.name).collect::<Vec<_>>().join(", "),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "providers/edit.html")]
pub struct ProviderEditView {
    pub chrome: Chrome,
    pub id: i64,
    pub has_credential: bool,
    pub form: ProviderForm,
    pub errors: FormErrors,
    /// The provider's upstream targets as the nodes report them.
    pub targets: Vec<TargetRow>,
}

pub struct ProviderRow {
    pub id: i64,
    pub name: String,
    pub base_url: String,
    pub credential: &'static str,
    pub updated: String,
    /// `("cooling", "cooling down until …")`, `("saturated", "saturated")` or none, over the provider's targets.
    pub limits: Option<(&'static str, String)>,
}

/// One upstream target on the provider detail page.
pub struct TargetRow {
    pub upstream_model: String,
    /// Configured caps, e.g. `500 rpm · 30,000 tpm`, and whose they are (`model` or `provider`).
    pub configured: String,
    pub scope: String,
    /// The provider's advertised limits, e.g. `500 rpm · 30,000 tpm`.
    pub learned: String,
    /// `12 / 500 rpm`, … (the busiest node).
    pub utilisation: String,
    pub throttled: u64,
    /// `cooling`, `saturated` or `ok` (the badge's class), and the badge text.
    pub state: &'static str,
    pub badge: String,
    pub nodes: usize,
}

fn count(v: u64) -> String {
    format::int(i64::try_from(v).unwrap_or(i64::MAX))
}

fn dims(rpm: Option<u64>, tpm: Option<u64>, conc: Option<u64>) -> String {
    let parts: Vec<String> = [(rpm, "rpm"), (tpm, "tpm"), (conc, "in flight")]
        .into_iter()
        .filter_map(|(v, unit)| v.map(|v| format!("{} {unit}", count(v))))
        .collect();
    if parts.is_empty() { "—".to_owned() } else { parts.join(" · ") }
}

fn badge(t: &TargetView) -> String {
    match (t.state, t.cooling_until) {
        (TargetState::Cooling, Some(until)) => format!("cooling down until {}", format::timestamp(until)),
        (TargetState::Saturated, _) => "saturated".to_owned(),
        _ => "ok".to_owned(),
    }
}

fn target_row(t: &TargetView) -> TargetRow {
    let used = |u: Option<CapUse>, unit: &str| u.map(|u| format!("{} / {} {unit}", count(u.used), count(u.cap)));
    let utilisation: Vec<String> = [used(t.requests, "rpm"), used(t.tokens, "tpm"), used(t.concurrency, "in flight")]
        .into_iter()
        .flatten()
        .collect();
    let c = &t.configured;
    TargetRow {
        upstream_model: t.upstream_model.clone(),
        configured: dims(c.rpm, c.tpm, c.max_concurrency.map(u64::from)),
        scope: c.scope.clone(),
        learned: dims(t.learned.requests, t.learned.tokens, None),
        utilisation: if utilisation.is_empty() { "—".to_owned() } else { utilisation.join(" · ") },
        throttled: t.throttled,
        state: t.state.as_str(),
        badge: badge(t),
        nodes: t.nodes.len(),
    }
}

/// The worst state over a provider's targets, for the list page.
fn provider_badge(status: &UpstreamStatus, provider_id: i64) -> Option<(&'static str, String)> {
    let targets = || status.targets.iter().filter(move |t| t.provider_id == provider_id);
    if let Some(until) = targets().filter(|t| t.state == TargetState::Cooling).filter_map(|t| t.cooling_until).max() {
        return Some(("cooling", format!("cooling down until {}", format::timestamp(until))));
    }
    targets().any(|t| t.state == TargetState::Saturated).then(|| ("saturated", "saturated".to_owned()))
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct ProviderForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub base_url: String,
    /// Never echoed back into the page.
    #[serde(default, skip_serializing)]
    pub api_key: String,
    #[serde(default)]
    pub remove_credential: Option<String>,
    /// Caps of the credential; a field left out of the post keeps the stored value, an empty one removes it.
    #[serde(default)]
    pub cap_rpm: Option<String>,
    #[serde(default)]
    pub cap_tpm: Option<String>,
    #[serde(default)]
    pub cap_max_concurrency: Option<String>,
    #[serde(default)]
    pub cap_team_share_pct: Option<String>,
    /// Per upstream model, one per line: `gpt-4o rpm=500 tpm=30000 concurrency=10`.
    #[serde(default)]
    pub model_caps: Option<String>,
}

/// `n` as a cap: empty means none.
fn parse_cap<T: std::str::FromStr>(
    param: &str,
    v: Option<&String>,
    current: Option<T>,
) -> Result<Option<T>, DomainError> {
    match v.map(|s| s.trim()) {
        None => Ok(current),
        Some("") => Ok(None),
        Some(s) => s
            .replace([',', '_'], "")
            .parse()
            .map(Some)
            .map_err(|_| DomainError::invalid(param, format!("{param} must be a whole number (or empty for none)"))),
    }
}

/// The model caps textarea: `upstream-model rpm=N tpm=N concurrency=N` per line.
fn parse_model_caps(text: &str) -> Result<Vec<ModelCaps>, DomainError> {
    let bad = |line: &str, why: &str| {
        DomainError::invalid(
            "model_caps",
            format!("`{line}`: {why}; write `upstream-model rpm=500 tpm=30000 concurrency=10`"),
        )
    };
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut words = line.split_whitespace();
        let Some(model) = words.next() else { continue };
        let mut caps = ModelCaps { upstream_model: model.to_owned(), ..Default::default() };
        for w in words {
            let (k, v) = w.split_once('=').ok_or_else(|| bad(line, "each cap is name=value"))?;
            let n: u64 = v.replace([',', '_'], "").parse().map_err(|_| bad(line, "a cap is a whole number"))?;
            match k {
                "rpm" => caps.rpm = Some(n),
                "tpm" => caps.tpm = Some(n),
                "concurrency" | "max_concurrency" => {
                    caps.max_concurrency = Some(u32::try_from(n).map_err(|_| bad(line, "concurrency is too large"))?);
                }
                _ => return Err(bad(line, "caps are rpm, tpm and concurrency")),
            }
        }
        out.push(caps);
    }
    Ok(out)
}

fn model_caps_text(caps: &[ModelCaps]) -> String {
    caps.iter()
        .map(|c| {
            let mut line = c.upstream_model.clone();
            for (k, v) in [("rpm", c.rpm), ("tpm", c.tpm), ("concurrency", c.max_concurrency.map(u64::from))] {
                if let Some(v) = v {
                    line.push_str(&format!(" {k}={v}"));
                }
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn opt(v: Option<impl ToString>) -> Option<String> {
    Some(v.map(|v| v.to_string()).unwrap_or_default())
}

impl ProviderForm {
    /// The form's fields for a stored provider (never its credential).
    fn of(p: &Provider) -> Self {
        Self {
            name: p.name.clone(),
            base_url: p.base_url.clone(),
            api_key: String::new(),
            remove_credential: None,
            cap_rpm: opt(p.caps.rpm),
            cap_tpm: opt(p.caps.tpm),
            cap_max_concurrency: opt(p.caps.max_concurrency),
            cap_team_share_pct: opt(p.caps.team_share_pct),
            model_caps: Some(model_caps_text(&p.model_caps)),
        }
    }

    /// The domain input; `timeouts` are the provider's current settings (the form does not edit them), and caps
    /// fields missing from the post keep `caps` / `model_caps`.
    fn input(
        &self,
        editing: bool,
        timeouts: UpstreamTimeouts,
        caps: TargetCaps,
        model_caps: Vec<ModelCaps>,
    ) -> Result<ProviderInput, DomainError> {
        let caps = TargetCaps {
            rpm: parse_cap("caps.rpm", self.cap_rpm.as_ref(), caps.rpm)?,
            tpm: parse_cap("caps.tpm", self.cap_tpm.as_ref(), caps.tpm)?,
            max_concurrency: parse_cap(
                "caps.max_concurrency",
                self.cap_max_concurrency.as_ref(),
                caps.max_concurrency,
            )?,
            team_share_pct: parse_cap("caps.team_share_pct", self.cap_team_share_pct.as_ref(), caps.team_share_pct)?,
        };
        let model_caps = match &self.model_caps {
            Some(text) => parse_model_caps(text)?,
            None => model_caps,
        };
        let api_key = if self.remove_credential.is_some() {
            Some(String::new())
        } else if self.api_key.is_empty() {
            // On create an empty field means "no credential"; on update it keeps the stored one.
            if editing { None } else { Some(String::new()) }
        } else {
            Some(self.api_key.clone())
        };
        Ok(ProviderInput {
            name: self.name.clone(),
            kind: None,
            base_url: self.base_url.clone(),
            api_key,
            timeouts,
            caps,
            model_caps,
        })
    }

    /// What the page may show again: everything but the credential.
    fn without_secret(mut self) -> Self {
        self.api_key.clear();
        self
    }
}

fn row(p: Provider, status: &UpstreamStatus) -> ProviderRow {
    ProviderRow {
        limits: provider_badge(status, p.id),
        id: p.id,
        name: p.name,
        base_url: p.base_url,
        credential: if p.has_credential { "set" } else { "none" },
        updated: format::timestamp(p.updated_at),
    }
}

async fn list_page(
    state: &AppState,
    viewer: &Viewer,
    query: &ListQuery,
    form: ProviderForm,
    errors: FormErrors,
    preset_form: PresetForm,
    preset_errors: FormErrors,
) -> Result<ProvidersView, PageError> {
    let q = query.search();
    let paged = listing::providers(&state.store, &q, query.page()).await?;
    let nav = ListNav::new("/console/providers", "providers", "Search by name or URL", &q, &paged);
    let status = upstream_status::read(&state.store, &state.upstream).await?;
    let rows = paged.rows.into_iter().map(|p| row(p, &status)).collect();
    Ok(ProvidersView {
        chrome: Chrome::new(viewer, "providers"),
        nav,
        rows,
        form: form.without_secret(),
        errors,
        presets: preset_options(),
        preset_form: PresetForm { api_key: String::new(), ..preset_form },
        preset_errors,
    })
}

pub async fn list(
    state: web::Data<AppState>,
    viewer: Viewer,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, PageError> {
    viewer.require(viewer.is_operator())?;
    let page = list_page(
        &state,
        &viewer,
        &query,
        ProviderForm::default(),
        FormErrors::default(),
        PresetForm::default(),
        FormErrors::default(),
    )
    .await?;
    view::ok(&page)
}

#[tracing::instrument(name = "console.providers.create", skip_all)]
pub async fn create(state: web::Data<AppState>, posted: Posted<ProviderForm>) -> Result<HttpResponse, PageError> {
    let Posted { viewer, form } = posted;
    viewer.require(viewer.is_operator())?;
    let input = form.input(false, UpstreamTimeouts::default(), TargetCaps::default(), Vec::new());
    let created = match input {
        Ok(input) => providers::create(&state.store, &viewer.actor(), input).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(_) => Ok(view::see_other("/console/providers")),
        Err(e) => {
            let errors = FormErrors::from_domain(e, |p| p)?;
            let page = list_page(
                &state,
                &viewer,
                &ListQuery::default(),
                form,
                errors,
                PresetForm::default(),
                FormErrors::default(),
            )
            .await?;
            view::render(StatusCode::BAD_REQUEST, &page)
        }
    }
}

#[tracing::instrument(name = "console.providers.create_from_preset", skip_all)]
pub async fn create_from_preset(
    state: web::Data<AppState>,
    posted: Posted<PresetForm>,
) -> Result<HttpResponse, PageError> {
    let Posted { viewer, form } = posted;
    viewer.require(viewer.is_operator())?;
    match provider_presets::create(&state.store, &viewer.actor(), form.input()).await {
        Ok(_) => Ok(view::see_other("/console/providers")),
        Err(e) => {
            let errors = FormErrors::from_domain(e, |p| if p.starts_with("params.") { "params" } else { p })?;
            let page = list_page(
                &state,
                &viewer,
                &ListQuery::default(),
                ProviderForm::default(),
                FormErrors::default(),
                form,
                errors,
            )
            .await?;
            view::render(StatusCode::BAD_REQUEST, &page)
        }
    }
}

async fn find(state: &AppState, id: i64) -> Result<Provider, PageError> {
    match providers::get(&state.store, id).await {
        Ok(p) => Ok(p),
        Err(DomainError::NotFound(_)) => Err(PageError::NotFound),
        Err(e) => Err(e.into()),
    }
}

/// The provider's targets as the nodes report them, for the detail page.
async fn target_rows(state: &AppState, provider_id: i64) -> Result<Vec<TargetRow>, PageError> {
    let status = upstream_status::read(&state.store, &state.upstream).await?;
    Ok(status.targets.iter().filter(|t| t.provider_id == provider_id).map(target_row).collect())
}

pub async fn edit(state: web::Data<AppState>, viewer: Viewer, id: web::Path<i64>) -> Result<HttpResponse, PageError> {
    viewer.require(viewer.is_operator())?;
    let p = find(&state, *id).await?;
    let page = ProviderEditView {
        chrome: Chrome::new(&viewer, "providers"),
        id: p.id,
        has_credential: p.has_credential,
        form: ProviderForm::of(&p),
        errors: FormErrors::default(),
        targets: target_rows(&state, p.id).await?,
    };
    view::ok(&page)
}

#[tracing::instrument(name = "console.providers.update", skip_all, fields(provider_id = *id))]
pub async fn update(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    posted: Posted<ProviderForm>,
) -> Result<HttpResponse, PageError> {
    let Posted { viewer, form } = posted;
    viewer.require(viewer.is_operator())?;
    let existing = find(&state, *id).await?;
    let input = form.input(true, existing.timeouts, existing.caps, existing.model_caps.clone());
    let updated = match input {
        Ok(input) => providers::update(&state.store, &viewer.actor(), existing.id, input).await,
        Err(e) => Err(e),
    };
    match updated {
        Ok(_) => Ok(view::see_other("/console/providers")),
        Err(e) => {
            let page = ProviderEditView {
                chrome: Chrome::new(&viewer, "providers"),
                id: existing.id,
                has_credential: existing.has_credential,
                errors: FormErrors::from_domain(e, |p| if p.starts_with("model_caps") { "model_caps" } else { p })?,
                form: form.without_secret(),
                targets: target_rows(&state, existing.id).await?,
            };
            view::render(StatusCode::BAD_REQUEST, &page)
        }
    }
}
