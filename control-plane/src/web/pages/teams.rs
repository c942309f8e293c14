//! `/console/teams`: the teams the viewer may read, searchable and paginated; operators create teams here.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::error::PageError;
use super::format;
use super::session::{Posted, Viewer};
use super::view::{self, Chrome, FormErrors, ListNav, ListQuery};
use crate::domain::listing;
use crate::domain::teams::{self, NewTeam};
use crate::web::AppState;

#[derive(Template)]
#[template(path = "teams/list.html")]
pub struct TeamsView {
    pub chrome: Chrome,
    pub nav: ListNav,
    pub rows: Vec<TeamRow>,
    pub can_create: bool,
    pub new_name: String,
    pub new_slug: String,
    pub errors: FormErrors,
}

pub struct TeamRow {
    pub id: i64,
    pub name: String,
    pub slug: String,
    pub role: &'static str,
    pub created: String,
}

async fn page(
    state: &AppState,
    viewer: &Viewer,
    query: ListQuery,
    new_name: String,
    new_slug: String,
    errors: FormErrors,
) -> Result<TeamsView, PageError> {
    let q = query.search();
    let mine: Vec<i64> = viewer.teams.keys().copied().collect();
    let only = (!viewer.sees_all_teams()).then_some(mine.as_slice());
    let paged = listing::teams(&state.store, only, &q, query.page()).await?;
    let nav = ListNav::new("/console/teams", "teams", "Search by name or slug", &q, &paged);
    let rows = paged
        .rows
        .into_iter()
        .map(|t| TeamRow {
            role: viewer
                .team_role(t.id)
                .map_or(if viewer.is_operator() { "operator" } else { "read-only" }, |r| r.label()),
            id: t.id,
            name: t.name,
            slug: t.slug,
            created: format::timestamp(t.created_at),
        })
        .collect();
    Ok(TeamsView {
        chrome: Chrome::new(viewer, "teams"),
        nav,
        rows,
        can_create: viewer.is_operator(),
        new_name,
        new_slug,
        errors,
    })
}

pub async fn list(
    state: web::Data<AppState>,
    viewer: Viewer,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, PageError> {
    let page = page(&state, &viewer, query.into_inner(), String::new(), String::new(), FormErrors::default()).await?;
    view::ok(&page)
}

#[derive(Deserialize)]
pub struct NewTeamForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    slug: String,
}

#[tracing::instrument(name = "console.teams.create", skip_all, fields(user_id = posted.viewer.user.id))]
pub async fn create(state: web::Data<AppState>, posted: Posted<NewTeamForm>) -> Result<HttpResponse, PageError> {
    let Posted { viewer, form } = posted;
    viewer.require(viewer.is_operator())?;
    let slug = Some(form.slug.trim().to_owned()).filter(|s| !s.is_empty());
    match teams::create(&state.store, &viewer.actor(), NewTeam { name: form.name.clone(), slug }).await {
        Ok(team) => Ok(view::see_other(&format!("/console/teams/{}", team.id))),
        Err(e) => {
            let errors = FormErrors::from_domain(e, |p| p)?;
            let page = page(&state, &viewer, ListQuery::default(), form.name, form.slug, errors).await?;
            view::render(StatusCode::BAD_REQUEST, &page)
        }
    }
}
