//! `/console`: the overview dashboard — requests, tokens, spend and errors per day over the last two weeks, as
//! server-rendered SVG, over every team the viewer may read.

use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::{Duration, Utc};

use super::charts;
use super::error::PageError;
use super::format;
use super::session::Viewer;
use super::view::{self, Chrome};
use crate::domain::dashboard::{self, Scope, Totals};
use crate::domain::{nodes, teams};
use crate::web::AppState;

const DAYS: u32 = 14;

#[derive(Template)]
#[template(path = "overview/index.html")]
pub struct OverviewView {
    pub chrome: Chrome,
    pub scope_label: String,
    pub requests: String,
    pub tokens: String,
    pub spend: String,
    pub errors: String,
    pub error_rate: String,
    pub charts: Vec<(&'static str, String)>,
    pub top_models: Vec<ModelRow>,
    pub lagging_nodes: Option<usize>,
}

pub struct ModelRow {
    pub model: String,
    pub requests: String,
    pub tokens: String,
    pub spend: String,
}

pub fn model_rows(rows: Vec<dashboard::ModelUsage>) -> Vec<ModelRow> {
    rows.into_iter()
        .map(|m| ModelRow {
            model: m.model,
            requests: format::int(m.totals.requests),
            tokens: format::int(m.totals.tokens),
            spend: format::money(m.totals.cost_micros),
        })
        .collect()
}

/// The four daily charts of a scope, each with its caption.
pub fn daily_charts(days: &[dashboard::Day], id: &str) -> Vec<(&'static str, String)> {
    let chart =
        |suffix: &str, title: &str, value: fn(&dashboard::Day) -> i64, label: fn(i64) -> String, class: &str| {
            charts::daily_bars(&format!("{id}-{suffix}"), title, days, value, label, class)
        };
    vec![
        ("Requests per day", chart("req", "Requests per day", |d| d.totals.requests, format::int, "c1")),
        ("Tokens per day", chart("tok", "Tokens per day", |d| d.totals.tokens, format::int, "c2")),
        ("Spend per day", chart("spend", "Spend per day", |d| d.totals.cost_micros, format::money, "c3")),
        ("Errors per day", chart("err", "Errors per day", |d| d.totals.errors, format::int, "c4")),
    ]
}

#[tracing::instrument(name = "console.overview", skip_all, fields(user_id = viewer.user.id))]
pub async fn show(state: web::Data<AppState>, viewer: Viewer) -> Result<HttpResponse, PageError> {
    let store = &state.store;
    let scope = Scope::from_usage_scope(viewer.usage_scope());
    let now = Utc::now();
    let first = store.reporting_zone.date_of(now) - Duration::days(i64::from(DAYS) - 1);
    let (days, models) = dashboard::summary(&store.db, &scope, first, DAYS).await?;
    let sum = days.iter().fold(Totals::default(), |a, d| Totals {
        requests: a.requests + d.totals.requests,
        errors: a.errors + d.totals.errors,
        tokens: a.tokens + d.totals.tokens,
        cost_micros: a.cost_micros + d.totals.cost_micros,
    });
    let top_models = model_rows(models);
    let scope_label = match &scope {
        Scope::All => match teams::list(store).await?.len() {
            1 => "the one team".to_owned(),
            n => format!("all {n} teams"),
        },
        Scope::Teams(ids) if ids.len() == 1 => "your team".to_owned(),
        Scope::Teams(ids) => format!("your {} teams", ids.len()),
    };
    let lagging_nodes = if viewer.is_operator() {
        Some(nodes::list(store).await?.data.iter().filter(|n| n.lagging).count())
    } else {
        None
    };
    let error_rate = if sum.requests == 0 {
        "0%".to_owned()
    } else {
        format!("{:.1}%", (sum.errors as f64) * 100.0 / (sum.requests as f64))
    };
    let page = OverviewView {
        chrome: Chrome::new(&viewer, "overview"),
        scope_label,
        requests: format::int(sum.requests),
        tokens: format::int(sum.tokens),
        spend: format::money(sum.cost_micros),
        errors: format::int(sum.errors),
        error_rate,
        charts: daily_charts(&days, "overview"),
        top_models,
        lagging_nodes,
    };
    view::ok(&page)
}
