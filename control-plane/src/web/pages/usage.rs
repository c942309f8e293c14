//! `/console/usage`: the usage explorer — filter by team, key, model and period, newest first, 50 per page
//! with totals over the whole filter. Users who do not read every team always see one of their own teams.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::NaiveDate;
use serde::Deserialize;
use switchyard_shared::period::Zone;
use uuid::Uuid;

use super::error::PageError;
use super::format;
use super::session::Viewer;
use super::view::{self, Chrome, FormErrors};
use crate::domain::usage::{self, UsageFilter};
use crate::domain::{DomainError, keys, teams};
use crate::web::AppState;

const PAGE_SIZE: u64 = 50;

#[derive(Template)]
#[template(path = "usage/explorer.html")]
pub struct UsageView {
    pub chrome: Chrome,
    pub query: UsageQuery,
    pub teams: Vec<(i64, String)>,
    pub all_teams_allowed: bool,
    pub keys: Vec<(i64, String)>,
    pub rows: Vec<UsageRow>,
    pub requests: String,
    pub tokens: String,
    pub spend: String,
    pub next: Option<String>,
    pub errors: FormErrors,
}

pub struct UsageRow {
    pub started: String,
    pub team: String,
    pub key_id: i64,
    pub model: String,
    pub status: u16,
    pub tokens: String,
    pub cost: String,
    pub duration_ms: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct UsageQuery {
    #[serde(default)]
    pub team_id: String,
    #[serde(default)]
    pub key_id: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub before_id: String,
}

impl UsageQuery {
    pub fn is_team(&self, id: &i64) -> bool {
        self.team_id == id.to_string()
    }

    pub fn is_key(&self, id: &i64) -> bool {
        self.key_id == id.to_string()
    }

    fn link(&self, before: Uuid) -> String {
        let pairs = [
            ("team_id", self.team_id.as_str()),
            ("key_id", self.key_id.as_str()),
            ("model", self.model.as_str()),
            ("from", self.from.as_str()),
            ("to", self.to.as_str()),
        ];
        let mut q: Vec<String> = pairs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", super::error::urlencode(v)))
            .collect();
        q.push(format!("before_id={before}"));
        format!("/console/usage?{}", q.join("&"))
    }
}

fn parse_id(field: &str, s: &str) -> Result<Option<i64>, DomainError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| DomainError::invalid(field, format!("{field} must be a number")))
}

fn parse_day(field: &str, s: &str) -> Result<Option<NaiveDate>, DomainError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| DomainError::invalid(field, "enter dates as YYYY-MM-DD"))
}

/// The domain filter for what the viewer asked, confined to teams they may read.
fn filter(viewer: &Viewer, q: &UsageQuery, visible: &[(i64, String)], zone: Zone) -> Result<UsageFilter, PageError> {
    let mut team_id = parse_id("team_id", &q.team_id)?;
    if !viewer.sees_all_teams() {
        match team_id {
            Some(id) if !viewer.can_view_team(id) => return Err(PageError::NotFound),
            Some(_) => {}
            // No team chosen: the first of the viewer's own teams, never "all".
            None => team_id = Some(visible.first().map(|t| t.0).ok_or(PageError::Forbidden)?),
        }
    }
    // Days of the reporting time zone, as the usage rollups count them; `to` is inclusive in the form.
    let from = parse_day("from", &q.from)?.map(|d| zone.midnight(d));
    let to = parse_day("to", &q.to)?.and_then(|d| d.succ_opt()).map(|d| zone.midnight(d));
    let before_id = match q.before_id.trim() {
        "" => None,
        s => Some(Uuid::parse_str(s).map_err(|_| DomainError::invalid("before_id", "invalid page marker"))?),
    };
    Ok(UsageFilter {
        team_id,
        key_id: parse_id("key_id", &q.key_id)?,
        model: Some(q.model.trim().to_owned()).filter(|m| !m.is_empty()),
        from,
        to,
        limit: Some(PAGE_SIZE),
        before_id,
    })
}

#[tracing::instrument(name = "console.usage", skip_all, fields(user_id = viewer.user.id))]
pub async fn explore(
    state: web::Data<AppState>,
    viewer: Viewer,
    query: web::Query<UsageQuery>,
) -> Result<HttpResponse, PageError> {
    let q = query.into_inner();
    let store = &state.store;
    let visible: Vec<(i64, String)> =
        teams::list(store).await?.into_iter().filter(|t| viewer.can_view_team(t.id)).map(|t| (t.id, t.name)).collect();
    let mut page = UsageView {
        chrome: Chrome::new(&viewer, "usage"),
        query: q.clone(),
        all_teams_allowed: viewer.sees_all_teams(),
        teams: visible.clone(),
        keys: Vec::new(),
        rows: Vec::new(),
        requests: "0".into(),
        tokens: "0".into(),
        spend: format::money(0),
        next: None,
        errors: FormErrors::default(),
    };
    let filter = match filter(&viewer, &q, &visible, store.reporting_zone) {
        Ok(f) => f,
        Err(PageError::Domain(e)) => {
            page.errors = FormErrors::from_domain(e, |p| p)?;
            return view::render(StatusCode::BAD_REQUEST, &page);
        }
        Err(e) => return Err(e),
    };
    if let Some(team_id) = filter.team_id {
        page.query.team_id = team_id.to_string();
        page.keys = keys::list_for_team(store, team_id)
            .await?
            .into_iter()
            .map(|k| (k.id, format!("{} ({})", k.name, k.prefix)))
            .collect();
    }
    let result = match usage::query(store, filter).await {
        Ok(r) => r,
        Err(e) => {
            page.errors = FormErrors::from_domain(e, |p| p)?;
            return view::render(StatusCode::BAD_REQUEST, &page);
        }
    };
    let names: std::collections::HashMap<i64, String> = visible.into_iter().collect();
    page.requests = format::int(result.totals.requests);
    page.tokens = format::int(result.totals.prompt_tokens + result.totals.completion_tokens);
    page.spend = format::money(result.totals.cost_micros);
    if result.data.len() as u64 == PAGE_SIZE {
        page.next = result.data.last().map(|r| q.link(r.record.id));
    }
    page.rows = result
        .data
        .into_iter()
        .map(|u| {
            let r = u.record;
            UsageRow {
                started: format::timestamp(r.started_at),
                team: names.get(&r.team_id).cloned().unwrap_or_else(|| format!("team {}", r.team_id)),
                key_id: r.key_id,
                model: r.model,
                status: r.status,
                tokens: format::int(i64::try_from(r.prompt_tokens + r.completion_tokens).unwrap_or(i64::MAX)),
                cost: format::money(r.cost_micros),
                duration_ms: format::int(i64::try_from(r.duration_us / 1000).unwrap_or(i64::MAX)),
            }
        })
        .collect();
    view::ok(&page)
}
