//! `/console/models`: public model names with their prices and routes (targets: provider, upstream model,
//! weight, priority). Operators edit; finance reads the price list. Prices are typed in dollars per million
//! tokens and stored exactly as micro-units.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;

use super::error::PageError;
use super::format;
use super::login::Empty;
use super::session::{Posted, Viewer};
use super::view::{self, Chrome, FormErrors, ListNav, ListQuery};
use crate::domain::models::{self, Model, ModelInput, TargetInput};
use crate::domain::{DomainError, listing, providers, teams};
use crate::web::AppState;

/// Empty target rows offered below the existing ones.
const SPARE_ROWS: usize = 2;

#[derive(Template)]
#[template(path = "models/list.html")]
pub struct ModelsView {
    pub chrome: Chrome,
    pub nav: ListNav,
    pub rows: Vec<ModelRow>,
    pub can_edit: bool,
}

pub struct ModelRow {
    pub id: i64,
    pub name: String,
    pub input_price: String,
    pub output_price: String,
    pub routes: Vec<String>,
    pub teams: String,
}

#[derive(Template)]
#[template(path = "models/edit.html")]
pub struct ModelEditView {
    pub chrome: Chrome,
    /// `None` for a new model.
    pub id: Option<i64>,
    pub form: ModelForm,
    pub providers: Vec<(i64, String)>,
    pub teams: Vec<(i64, String)>,
    pub errors: FormErrors,
}

#[derive(Debug, Clone, Default)]
pub struct ModelForm {
    pub name: String,
    pub input_price: String,
    pub output_price: String,
    pub targets: Vec<TargetRow>,
    /// Ids of the teams ticked; none ticked = every team.
    pub allowed_teams: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct TargetRow {
    pub provider_id: String,
    pub upstream_model: String,
    pub weight: String,
    pub priority: String,
}

impl ModelEditView {
    pub fn action(&self) -> String {
        self.id.map_or_else(|| "/console/models".to_owned(), |id| format!("/console/models/{id}"))
    }

    pub fn team_checked(&self, id: &i64) -> bool {
        let id = id.to_string();
        self.form.allowed_teams.contains(&id)
    }

    pub fn target_error(&self, i: &usize) -> Option<&str> {
        let i = *i;
        ["provider_id", "upstream_model", "weight", "priority"]
            .iter()
            .find_map(|f| self.errors.get(&format!("targets[{i}].{f}")))
    }
}

impl TargetRow {
    pub fn is_provider(&self, id: &i64) -> bool {
        self.provider_id == id.to_string()
    }
}

impl ModelForm {
    fn from_model(m: &Model) -> Self {
        let mut targets: Vec<TargetRow> = m
            .targets
            .iter()
            .map(|t| TargetRow {
                provider_id: t.provider_id.to_string(),
                upstream_model: t.upstream_model.clone(),
                weight: t.weight.to_string(),
                priority: t.priority.to_string(),
            })
            .collect();
        targets.extend((0..SPARE_ROWS).map(|_| TargetRow::default()));
        Self {
            name: m.name.clone(),
            input_price: format::decimal(m.input_price_per_mtok),
            output_price: format::decimal(m.output_price_per_mtok),
            targets,
            allowed_teams: m.allowed_teams.iter().flatten().map(i64::to_string).collect(),
        }
    }

    /// Reads the posted fields: `name`, `input_price`, `output_price`, and `target-{i}-{field}` per row.
    fn from_fields(fields: Vec<(String, String)>) -> Self {
        let mut form = Self::default();
        let mut rows: BTreeMap<usize, TargetRow> = BTreeMap::new();
        for (k, v) in fields {
            match k.as_str() {
                "name" => form.name = v,
                "input_price" => form.input_price = v,
                "output_price" => form.output_price = v,
                "team" => form.allowed_teams.push(v),
                _ => {
                    let Some(rest) = k.strip_prefix("target-") else { continue };
                    let Some((i, field)) = rest.split_once('-') else { continue };
                    let Ok(i) = i.parse::<usize>() else { continue };
                    if i >= 64 {
                        continue;
                    }
                    let row = rows.entry(i).or_default();
                    match field {
                        "provider" => row.provider_id = v,
                        "upstream" => row.upstream_model = v,
                        "weight" => row.weight = v,
                        "priority" => row.priority = v,
                        _ => {}
                    }
                }
            }
        }
        form.targets = rows.into_values().collect();
        form
    }

    /// The domain input; rows without an upstream model are left out. Indexes in errors refer to kept rows,
    /// so the kept rows come first when the form is shown again.
    fn input(&mut self) -> Result<ModelInput, DomainError> {
        let (kept, empty): (Vec<TargetRow>, Vec<TargetRow>) =
            std::mem::take(&mut self.targets).into_iter().partition(|t| !t.upstream_model.trim().is_empty());
        self.targets = kept;
        let mut targets = Vec::with_capacity(self.targets.len());
        for (i, t) in self.targets.iter().enumerate() {
            let number = |field: &str, s: &str| -> Result<Option<i64>, DomainError> {
                let s = s.trim();
                if s.is_empty() {
                    return Ok(None);
                }
                s.parse::<i64>().map(Some).map_err(|_| {
                    DomainError::invalid(format!("targets[{i}].{field}"), format!("{field} must be a whole number"))
                })
            };
            let provider_id = t
                .provider_id
                .trim()
                .parse::<i64>()
                .map_err(|_| DomainError::invalid(format!("targets[{i}].provider_id"), "choose a provider"))?;
            targets.push(TargetInput {
                provider_id,
                upstream_model: t.upstream_model.clone(),
                weight: number("weight", &t.weight)?,
                priority: number("priority", &t.priority)?,
            });
        }
        let mut allowed_teams = Vec::with_capacity(self.allowed_teams.len());
        for t in &self.allowed_teams {
            allowed_teams.push(
                t.trim()
                    .parse::<i64>()
                    .map_err(|_| DomainError::invalid("allowed_teams", "choose teams from the list"))?,
            );
        }
        self.targets.extend(empty);
        while self.targets.len() < targets.len() + SPARE_ROWS {
            self.targets.push(TargetRow::default());
        }
        Ok(ModelInput {
            name: self.name.clone(),
            input_price_per_mtok: Some(format::parse_money("input_price_per_mtok", &self.input_price)?),
            output_price_per_mtok: Some(format::parse_money("output_price_per_mtok", &self.output_price)?),
            targets,
            allowed_teams: (!allowed_teams.is_empty()).then_some(allowed_teams),
        })
    }
}

/// Form field names for the domain's parameter names.
fn field_of(param: &str) -> &str {
    match param {
        "input_price_per_mtok" => "input_price",
        "output_price_per_mtok" => "output_price",
        p => p,
    }
}

async fn provider_options(state: &AppState) -> Result<Vec<(i64, String)>, PageError> {
    Ok(providers::list(&state.store).await?.into_iter().map(|p| (p.id, p.name)).collect())
}

async fn team_options(state: &AppState) -> Result<Vec<(i64, String)>, PageError> {
    Ok(teams::list(&state.store).await?.into_iter().map(|t| (t.id, t.name)).collect())
}

async fn find(state: &AppState, id: i64) -> Result<Model, PageError> {
    models::list(&state.store).await?.into_iter().find(|m| m.id == id).ok_or(PageError::NotFound)
}

pub async fn list(
    state: web::Data<AppState>,
    viewer: Viewer,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, PageError> {
    viewer.require(viewer.sees_all_teams())?;
    let q = query.search();
    let paged = listing::models(&state.store, &q, query.page()).await?;
    let nav = ListNav::new("/console/models", "models", "Search by model name", &q, &paged);
    let providers: BTreeMap<i64, String> = provider_options(&state).await?.into_iter().collect();
    let team_names: BTreeMap<i64, String> = team_options(&state).await?.into_iter().collect();
    let rows = paged
        .rows
        .into_iter()
        .map(|m| ModelRow {
            id: m.id,
            name: m.name,
            input_price: format::money(m.input_price_per_mtok),
            output_price: format::money(m.output_price_per_mtok),
            routes: m
                .targets
                .iter()
                .map(|t| {
                    let provider = providers.get(&t.provider_id).map_or("?", String::as_str);
                    format!("{provider}/{} · weight {} · priority {}", t.upstream_model, t.weight, t.priority)
                })
                .collect(),
            teams: match &m.allowed_teams {
                None => "every team".to_owned(),
                Some(ids) => ids
                    .iter()
                    .map(|id| team_names.get(id).cloned().unwrap_or_else(|| format!("#{id}")))
                    .collect::<Vec<_>>()
                    .join(", "),
            },
        })
        .collect();
    view::ok(&ModelsView { chrome: Chrome::new(&viewer, "models"), nav, rows, can_edit: viewer.is_operator() })
}

pub async fn new(state: web::Data<AppState>, viewer: Viewer) -> Result<HttpResponse, PageError> {
    viewer.require(viewer.is_operator())?;
    let form = ModelForm { targets: vec![TargetRow::default(); SPARE_ROWS + 1], ..Default::default() };
    let page = ModelEditView {
        chrome: Chrome::new(&viewer, "models"),
        id: None,
        form,
        providers: provider_options(&state).await?,
        teams: team_options(&state).await?,
        errors: FormErrors::default(),
    };
    view::ok(&page)
}

pub async fn edit(state: web::Data<AppState>, viewer: Viewer, id: web::Path<i64>) -> Result<HttpResponse, PageError> {
    viewer.require(viewer.is_operator())?;
    let model = find(&state, *id).await?;
    let page = ModelEditView {
        chrome: Chrome::new(&viewer, "models"),
        id: Some(model.id),
        form: ModelForm::from_model(&model),
        providers: provider_options(&state).await?,
        teams: team_options(&state).await?,
        errors: FormErrors::default(),
    };
    view::ok(&page)
}

async fn save(
    state: &AppState,
    viewer: &Viewer,
    id: Option<i64>,
    fields: Vec<(String, String)>,
) -> Result<HttpResponse, PageError> {
    viewer.require(viewer.is_operator())?;
    if let Some(id) = id {
        find(state, id).await?;
    }
    let mut form = ModelForm::from_fields(fields);
    let result = match form.input() {
        Ok(input) => match id {
            Some(id) => models::replace(&state.store, &viewer.actor(), id, input).await,
            None => models::create(&state.store, &viewer.actor(), input).await,
        },
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Ok(view::see_other("/console/models")),
        Err(e) => {
            let page = ModelEditView {
                chrome: Chrome::new(viewer, "models"),
                id,
                errors: FormErrors::from_domain(e, field_of)?,
                form,
                providers: provider_options(state).await?,
                teams: team_options(state).await?,
            };
            view::render(StatusCode::BAD_REQUEST, &page)
        }
    }
}

#[tracing::instrument(name = "console.models.create", skip_all)]
pub async fn create(
    state: web::Data<AppState>,
    posted: Posted<Vec<(String, String)>>,
) -> Result<HttpResponse, PageError> {
    save(&state, &posted.viewer, None, posted.form).await
}

#[tracing::instrument(name = "console.models.update", skip_all, fields(model_id = *id))]
pub async fn update(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    posted: Posted<Vec<(String, String)>>,
) -> Result<HttpResponse, PageError> {
    save(&state, &posted.viewer, Some(*id), posted.form).await
}

#[tracing::instrument(name = "console.models.delete", skip_all, fields(model_id = *id))]
pub async fn delete(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    posted: Posted<Empty>,
) -> Result<HttpResponse, PageError> {
    let viewer = posted.viewer;
    viewer.require(viewer.is_operator())?;
    models::delete(&state.store, &viewer.actor(), *id).await?;
    Ok(view::see_other("/console/models"))
}
