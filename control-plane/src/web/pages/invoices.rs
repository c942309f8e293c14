//! `/console/invoices`: a month's invoices — every visible team with its draft or issued invoice and totals, the
//! Issue button (operators and finance), and the month's reconciliation (operators and finance). One team's invoice
//! for a month renders as a printable page (`/console/teams/{id}/invoices/{yyyy-mm}`; print to PDF from the
//! browser). Team admins see their own teams' invoices; another team's answers 404.

use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;

use super::error::PageError;
use super::format;
use super::login::Empty;
use super::session::{Posted, Viewer};
use super::view::{self, Chrome};
use crate::domain::invoices::{self, Invoice, Month};
use crate::domain::memberships::TeamRole;
use crate::domain::{DomainError, teams};
use crate::web::AppState;

#[derive(Template)]
#[template(path = "invoices/list.html")]
pub struct InvoicesView {
    pub chrome: Chrome,
    pub month: String,
    pub previous: String,
    pub next: String,
    /// Whether the month has ended in the reporting zone (only then can it be issued).
    pub ended: bool,
    pub can_issue: bool,
    pub rows: Vec<InvoiceRow>,
    pub reconciliation: Option<ReconciliationView>,
    pub issue_error: Option<String>,
}

pub struct InvoiceRow {
    pub team_id: i64,
    pub team_name: String,
    pub issued: bool,
    pub number: String,
    pub lines: usize,
    pub subtotal: String,
    pub markup: String,
    pub total: String,
}

pub struct ReconciliationView {
    pub ok: bool,
    /// `false`: the month's raw records were dropped by retention and the figures come from the rollups.
    pub records_retained: bool,
    pub teams: u64,
    pub issued_invoices: u64,
    pub issued: String,
    pub adjusted: String,
    pub unbilled: String,
    pub overbilled: String,
    pub invoice_total: String,
    pub records: String,
    pub records_cost: String,
    pub difference: String,
}

#[derive(Debug, Deserialize)]
pub struct MonthQuery {
    #[serde(default)]
    month: Option<String>,
}

/// Who may read a team's invoices: operators, finance, the team's admins.
fn may_read(viewer: &Viewer, team_id: i64) -> bool {
    viewer.sees_all_teams() || viewer.team_role(team_id) == Some(TeamRole::Admin)
}

/// A `yyyy-mm` from the path or query; a malformed one is a 400 page.
fn parse_month(m: &str) -> Result<Month, PageError> {
    Month::parse(m).map_err(|e| PageError::BadRequest(e.to_string()))
}

/// The month asked for, or the last one that has ended.
fn month_of(state: &AppState, q: Option<&str>) -> Result<Month, PageError> {
    match q.map(str::trim).filter(|m| !m.is_empty()) {
        Some(m) => parse_month(m),
        None => Ok(Month::containing(&state.store, Utc::now()).previous()),
    }
}

async fn list_page(
    state: &AppState,
    viewer: &Viewer,
    month: Month,
    issue_error: Option<String>,
) -> Result<InvoicesView, PageError> {
    let scope: Option<Vec<i64>> = (!viewer.sees_all_teams())
        .then(|| viewer.teams.iter().filter(|(_, r)| **r == TeamRole::Admin).map(|(t, _)| *t).collect());
    let rows = invoices::list(&state.store, month, scope.as_deref())
        .await?
        .into_iter()
        .map(|s| InvoiceRow {
            team_id: s.team_id,
            team_name: s.team_name,
            issued: s.status == "issued",
            number: s.number.unwrap_or_default(),
            lines: s.lines,
            subtotal: format::money_in(s.subtotal_micros, &s.currency),
            markup: markup_label(s.markup_bp, s.markup_micros, &s.currency),
            total: format::money_in(s.total_micros, &s.currency),
        })
        .collect();
    let reconciliation = if viewer.sees_all_teams() {
        let r = invoices::reconcile(&state.store, month).await?;
        let money = |micros: i64| format::money_in(micros, state.store.currency.as_str());
        Some(ReconciliationView {
            ok: r.difference_micros == 0 && r.overbilled_micros == 0,
            records_retained: r.records_retained,
            teams: r.teams,
            issued_invoices: r.issued_invoices,
            issued: money(r.issued_micros),
            adjusted: money(r.adjusted_micros),
            unbilled: money(r.unbilled_micros),
            overbilled: money(r.overbilled_micros),
            invoice_total: money(r.invoice_total_micros),
            records: format::int(r.usage_records),
            records_cost: money(r.records_cost_micros),
            difference: money(r.difference_micros),
        })
    } else {
        None
    };
    Ok(InvoicesView {
        chrome: Chrome::new(viewer, "invoices"),
        month: month.to_string(),
        previous: month.previous().to_string(),
        next: month.next().to_string(),
        ended: month.period(&state.store).end <= Utc::now(),
        can_issue: viewer.sees_all_teams(),
        rows,
        reconciliation,
        issue_error,
    })
}

/// `-10.00% (-$0.73)`, or `none`.
fn markup_label(bp: i32, micros: i64, currency: &str) -> String {
    match bp {
        0 => "none".to_owned(),
        bp => {
            let sign = if bp < 0 { "-" } else { "+" };
            format!("{sign}{} ({})", invoices::percent(bp), format::money_in(micros, currency))
        }
    }
}

#[tracing::instrument(name = "console.invoices", skip_all, fields(user_id = viewer.user.id))]
pub async fn list(
    state: web::Data<AppState>,
    viewer: Viewer,
    query: web::Query<MonthQuery>,
) -> Result<HttpResponse, PageError> {
    viewer.require(viewer.sees_all_teams() || viewer.teams.values().any(|r| *r == TeamRole::Admin))?;
    let month = month_of(&state, query.month.as_deref())?;
    view::ok(&list_page(&state, &viewer, month, None).await?)
}

#[tracing::instrument(name = "console.invoices.issue", skip_all, fields(team_id = path.0))]
pub async fn issue(
    state: web::Data<AppState>,
    path: web::Path<(i64, String)>,
    posted: Posted<Empty>,
) -> Result<HttpResponse, PageError> {
    let viewer = posted.viewer;
    let (team_id, month) = path.into_inner();
    if !viewer.can_view_team(team_id) {
        return Err(PageError::NotFound);
    }
    viewer.require(viewer.sees_all_teams())?;
    let month = parse_month(&month)?;
    match invoices::issue(&state.store, &viewer.actor(), &viewer.user.email, team_id, month, Utc::now()).await {
        Ok(_) => Ok(view::see_other(&format!("/console/invoices?month={month}"))),
        Err(DomainError::Conflict(message)) => {
            let page = list_page(&state, &viewer, month, Some(message)).await?;
            view::render(actix_web::http::StatusCode::CONFLICT, &page)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "invoices/invoice.html")]
pub struct InvoiceView {
    pub chrome: Chrome,
    pub team_id: i64,
    pub team_name: String,
    pub team_slug: String,
    pub month: String,
    pub issued: bool,
    pub number: String,
    pub issued_at: String,
    pub issued_by: String,
    pub period: String,
    pub currency: String,
    pub lines: Vec<LineView>,
    pub subtotal: String,
    /// "Discount 10.00%" / "Markup 2.50%", or empty when there is none.
    pub markup_name: String,
    pub markup: String,
    pub total: String,
}

pub struct LineView {
    pub description: String,
    pub adjustment: bool,
    pub version: String,
    pub requests: String,
    pub input: String,
    pub cached: String,
    pub output: String,
    pub unit_prices: String,
    pub amount: String,
}

fn invoice_view(viewer: &Viewer, team: &teams::Team, inv: Invoice) -> InvoiceView {
    let money = |micros: i64| format::money_in(micros, &inv.currency);
    let per_m = |v: i64| format!("{}/M", money(v));
    let lines = inv
        .lines
        .iter()
        .map(|l| LineView {
            description: l.description.clone(),
            adjustment: l.kind == invoices::ADJUSTMENT,
            version: l.price_version_id.map_or_else(|| "—".to_owned(), |v| format!("v{v}")),
            requests: format::int(l.requests),
            input: format::int(l.prompt_tokens),
            cached: format::int(l.cached_input_tokens),
            output: format::int(l.completion_tokens),
            unit_prices: l.unit_prices.map_or_else(
                || "node cost".to_owned(),
                |p| {
                    let mut s = format!("in {} · out {}", per_m(p.input_per_mtok), per_m(p.output_per_mtok));
                    if let Some(c) = p.cached_input_per_mtok {
                        s.push_str(&format!(" · cached {}", per_m(c)));
                    }
                    if let Some(c) = p.cache_write_per_mtok {
                        s.push_str(&format!(" · cache write {}", per_m(c)));
                    }
                    s
                },
            ),
            amount: money(l.amount_micros),
        })
        .collect();
    let markup_name = match inv.markup_bp {
        0 => String::new(),
        bp if bp < 0 => format!("Discount {}", invoices::percent(bp)),
        bp => format!("Markup {}", invoices::percent(bp)),
    };
    InvoiceView {
        chrome: Chrome::new(viewer, "invoices"),
        team_id: team.id,
        team_name: inv.team_name.clone(),
        team_slug: team.slug.clone(),
        month: inv.month.clone(),
        issued: inv.is_issued(),
        number: inv.number.clone().unwrap_or_default(),
        issued_at: inv.issued_at.map(format::timestamp).unwrap_or_default(),
        issued_by: inv.issued_by.clone().unwrap_or_default(),
        period: format!("{} – {}", format::timestamp(inv.period_start), format::timestamp(inv.period_end)),
        currency: inv.currency.clone(),
        lines,
        subtotal: money(inv.subtotal_micros),
        markup_name,
        markup: money(inv.markup_micros),
        total: money(inv.total_micros),
    }
}

#[tracing::instrument(name = "console.invoice", skip_all, fields(team_id = path.0))]
pub async fn show(
    state: web::Data<AppState>,
    viewer: Viewer,
    path: web::Path<(i64, String)>,
) -> Result<HttpResponse, PageError> {
    let (team_id, month) = path.into_inner();
    if !viewer.can_view_team(team_id) {
        return Err(PageError::NotFound);
    }
    viewer.require(may_read(&viewer, team_id))?;
    let month = parse_month(&month)?;
    let team = teams::get(&state.store, team_id).await?;
    let inv = invoices::get(&state.store, team_id, month).await?;
    view::ok(&invoice_view(&viewer, &team, inv))
}
