//! `/console/providers`: upstream providers (operators only). Credentials are write-only: the form never shows
//! the stored one; leaving the field empty keeps it, ticking "remove" deletes it.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use switchyard_shared::snapshot::{TargetCaps, UpstreamTimeouts};

use super::error::PageError;
use super::format;
use super::session::{Posted, Viewer};
use super::view::{self, Chrome, FormErrors, ListNav, ListQuery};
use crate::domain::listing;
use crate::domain::provider_presets::{self, FromPreset, PRESETS};
use crate::domain::providers::{self, Provider, ProviderInput};
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
}

pub struct ProviderRow {
    pub id: i64,
    pub name: String,
    pub base_url: String,
    pub credential: &'static str,
    pub updated: String,
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
}

impl ProviderForm {
    /// The domain input; `timeouts` and `caps` are the provider's current settings (the form does not edit them).
    fn input(&self, editing: bool, timeouts: UpstreamTimeouts, caps: TargetCaps) -> ProviderInput {
        let api_key = if self.remove_credential.is_some() {
            Some(String::new())
        } else if self.api_key.is_empty() {
            // On create an empty field means "no credential"; on update it keeps the stored one.
            if editing { None } else { Some(String::new()) }
        } else {
            Some(self.api_key.clone())
        };
        ProviderInput { name: self.name.clone(), kind: None, base_url: self.base_url.clone(), api_key, timeouts, caps }
    }

    /// What the page may show again: everything but the credential.
    fn without_secret(mut self) -> Self {
        self.api_key.clear();
        self
    }
}

fn row(p: Provider) -> ProviderRow {
    ProviderRow {
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
    let rows = paged.rows.into_iter().map(row).collect();
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
    match providers::create(
        &state.store,
        &viewer.actor(),
        form.input(false, UpstreamTimeouts::default(), TargetCaps::default()),
    )
    .await
    {
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
    providers::list(&state.store).await?.into_iter().find(|p| p.id == id).ok_or(PageError::NotFound)
}

pub async fn edit(state: web::Data<AppState>, viewer: Viewer, id: web::Path<i64>) -> Result<HttpResponse, PageError> {
    viewer.require(viewer.is_operator())?;
    let p = find(&state, *id).await?;
    let page = ProviderEditView {
        chrome: Chrome::new(&viewer, "providers"),
        id: p.id,
        has_credential: p.has_credential,
        form: ProviderForm { name: p.name, base_url: p.base_url, api_key: String::new(), remove_credential: None },
        errors: FormErrors::default(),
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
    match providers::update(
        &state.store,
        &viewer.actor(),
        existing.id,
        form.input(true, existing.timeouts, existing.caps),
    )
    .await
    {
        Ok(_) => Ok(view::see_other("/console/providers")),
        Err(e) => {
            let page = ProviderEditView {
                chrome: Chrome::new(&viewer, "providers"),
                id: existing.id,
                has_credential: existing.has_credential,
                errors: FormErrors::from_domain(e, |p| p)?,
                form: form.without_secret(),
            };
            view::render(StatusCode::BAD_REQUEST, &page)
        }
    }
}
