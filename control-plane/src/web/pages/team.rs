//! `/console/teams/{id}`: one team — usage by model and per day, limits and budget used, members (team admins
//! and operators manage them and send invites), and API keys (issued with the secret shown once, rotated with a
//! grace period for the old secret, revoked).
//! A team the viewer may not read answers 404, whatever the URL under it.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{Duration, NaiveDate, Utc};
use serde::Deserialize;
use switchyard_shared::snapshot::LimitScope;

use super::error::PageError;
use super::format;
use super::login::Empty;
use super::overview::{self, ModelRow};
use super::session::{Posted, Viewer};
use super::view::{self, Chrome, FormErrors, ListNav, ListQuery};
use crate::domain::dashboard::{self, Scope};
use crate::domain::invites::{self, NewInvite};
use crate::domain::keys::{self, NewKey};
use crate::domain::memberships::{self, TeamRole};
use crate::domain::{accounts::PlatformRole, key_owners, limits, listing, teams};
use crate::web::AppState;

const DAYS: u32 = 30;
/// What a `datetime-local` input posts.
const GRACE_FORMAT: &str = "%Y-%m-%dT%H:%M";

#[derive(Template)]
#[template(path = "teams/detail.html")]
pub struct TeamView {
    pub chrome: Chrome,
    pub id: i64,
    pub name: String,
    pub slug: String,
    pub my_role: String,
    pub charts: Vec<(&'static str, String)>,
    pub models: Vec<ModelRow>,
    pub limits: Vec<(&'static str, String)>,
    pub budget: Option<String>,
    pub members: Option<Vec<MemberRow>>,
    pub keys: Option<Vec<KeyRow>>,
    /// Search and pages of the key list.
    pub nav: ListNav,
    pub can_issue: bool,
    pub key_form: KeyForm,
    pub key_errors: FormErrors,
    /// Why the last rotation was refused, shown above the key list.
    pub rotate_error: Option<String>,
    /// The default end of a rotation's grace period (`datetime-local`, UTC): a day from now.
    pub default_grace: String,
    pub invite_form: InviteForm,
    pub invite_errors: FormErrors,
    pub roles: [TeamRole; 3],
    pub me: i64,
    /// The team's invoice discount (negative) or markup, basis points; operators change it.
    pub markup_bp: i32,
    pub can_set_markup: bool,
    /// Operators, finance and the team's admins see its billing (discount/markup, invoices).
    pub show_billing: bool,
    /// The last month that has ended, for the link to its invoice.
    pub last_month: String,
}

pub struct MemberRow {
    pub user_id: i64,
    pub email: String,
    pub role: TeamRole,
    pub disabled: bool,
}

pub struct KeyRow {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub models: String,
    pub created: String,
    pub expires: String,
    pub status: &'static str,
    pub can_revoke: bool,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub allowed_models: String,
    #[serde(default)]
    pub expires_on: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub team_role: String,
}

#[derive(Template)]
#[template(path = "shared/secret_once.html")]
pub struct SecretView {
    pub chrome: Chrome,
    pub title: String,
    pub intro: String,
    pub label: &'static str,
    pub secret: String,
    pub back: String,
    pub back_label: String,
}

/// The team, if the viewer may read it; 404 otherwise, so that other teams' ids reveal nothing.
async fn visible_team(state: &AppState, viewer: &Viewer, team_id: i64) -> Result<teams::Team, PageError> {
    if !viewer.can_view_team(team_id) {
        return Err(PageError::NotFound);
    }
    Ok(teams::get(&state.store, team_id).await?)
}

#[allow(clippy::too_many_arguments)]
async fn page(
    state: &AppState,
    viewer: &Viewer,
    team: teams::Team,
    keys_query: &ListQuery,
    key_form: KeyForm,
    key_errors: FormErrors,
    invite_form: InviteForm,
    invite_errors: FormErrors,
) -> Result<TeamView, PageError> {
    let store = &state.store;
    let now = Utc::now();
    let first = store.reporting_zone.date_of(now) - Duration::days(i64::from(DAYS) - 1);
    let scope = Scope::Teams(vec![team.id]);
    let (days, models) = dashboard::summary(&store.db, &scope, first, DAYS).await?;
    let models = overview::model_rows(models);
    let view = limits::get(store, LimitScope::Team, team.id).await?;
    let mut limit_rows = Vec::new();
    if let Some(v) = view.limits.rpm {
        limit_rows.push(("Requests per minute", v.to_string()));
    }
    if let Some(v) = view.limits.tpm {
        limit_rows.push(("Tokens per minute", v.to_string()));
    }
    if let Some(v) = view.limits.max_concurrent {
        limit_rows.push(("Concurrent requests", v.to_string()));
    }
    let budget = view.budget_status.map(|b| {
        let cap = b.cap_micros.map_or_else(|| "no money cap".to_owned(), format::money);
        format!(
            "{} spent of {} ({} tokens) from {} to {}",
            format::money(b.spent_micros),
            cap,
            format::int(b.spent_tokens),
            format::timestamp(b.period_start),
            format::timestamp(b.period_end)
        )
    });
    let members = if viewer.can_manage_members(team.id) {
        Some(
            memberships::members(store, team.id)
                .await?
                .into_iter()
                .map(|m| MemberRow { user_id: m.user_id, email: m.email, role: m.role, disabled: m.disabled })
                .collect(),
        )
    } else {
        None
    };
    let mut nav = None;
    let keys = if viewer.can_use_keys(team.id) {
        let every = viewer.sees_every_key(team.id);
        let own = if every { None } else { Some(key_owners::owned_by(store, viewer.user.id).await?) };
        let q = keys_query.search();
        let paged = listing::keys(store, team.id, own.as_deref(), &q, keys_query.page()).await?;
        nav = Some(
            ListNav::new(format!("/console/teams/{}", team.id), "keys", "Search by name or prefix", &q, &paged)
                .with_anchor("#keys"),
        );
        let ids: Vec<i64> = paged.rows.iter().map(|k| k.id).collect();
        let owners = key_owners::owners(store, &ids).await?;
        Some(
            paged
                .rows
                .into_iter()
                .map(|k| {
                    let status = if k.revoked_at.is_some() {
                        "revoked"
                    } else if k.expires_at.is_some_and(|e| e <= now) {
                        "expired"
                    } else {
                        "active"
                    };
                    KeyRow {
                        can_revoke: k.revoked_at.is_none()
                            && viewer.can_revoke_key(team.id, owners.get(&k.id).copied()),
                        id: k.id,
                        name: k.name,
                        prefix: k.prefix,
                        models: k.allowed_models.map_or_else(|| "all models".to_owned(), |m| m.join(", ")),
                        created: format::timestamp(k.created_at),
                        expires: k.expires_at.map_or_else(|| "never".to_owned(), format::timestamp),
                        status,
                    }
                })
                .collect(),
        )
    } else {
        None
    };
    let my_role = match viewer.team_role(team.id) {
        Some(r) => r.label().to_owned(),
        None => viewer.user.role.label().to_owned(),
    };
    Ok(TeamView {
        chrome: Chrome::new(viewer, "teams"),
        id: team.id,
        name: team.name,
        slug: team.slug,
        my_role,
        charts: overview::daily_charts(&days, "team"),
        models,
        limits: limit_rows,
        budget,
        members,
        can_issue: viewer.can_use_keys(team.id),
        keys,
        nav: nav.unwrap_or_else(|| ListNav {
            path: String::new(),
            anchor: "",
            noun: "keys",
            placeholder: "",
            q: String::new(),
            page: 1,
            pages: 1,
            total: 0,
        }),
        key_form,
        key_errors,
        rotate_error: None,
        default_grace: (now + Duration::days(1)).format(GRACE_FORMAT).to_string(),
        invite_form,
        invite_errors,
        roles: TeamRole::ALL,
        me: viewer.user.id,
        markup_bp: team.markup_bp,
        can_set_markup: viewer.is_operator(),
        show_billing: viewer.sees_all_teams() || viewer.team_role(team.id) == Some(TeamRole::Admin),
        last_month: crate::domain::invoices::Month::containing(store, now).previous().to_string(),
    })
}

#[tracing::instrument(name = "console.team", skip_all, fields(team_id = *team_id, user_id = viewer.user.id))]
pub async fn show(
    state: web::Data<AppState>,
    viewer: Viewer,
    team_id: web::Path<i64>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, PageError> {
    let team = visible_team(&state, &viewer, *team_id).await?;
    let page = page(
        &state,
        &viewer,
        team,
        &query,
        KeyForm::default(),
        FormErrors::default(),
        InviteForm { team_role: "member".into(), ..Default::default() },
        FormErrors::default(),
    )
    .await?;
    view::ok(&page)
}

fn parse_key_form(form: &KeyForm) -> Result<NewKey, FormErrors> {
    let models: Vec<String> = form
        .allowed_models
        .split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect();
    let expires_at = match form.expires_on.trim() {
        "" => None,
        d => match NaiveDate::parse_from_str(d, "%Y-%m-%d") {
            Ok(day) => day.and_hms_opt(0, 0, 0).map(|t| t.and_utc()),
            Err(_) => {
                return Err(FormErrors::general("Enter the expiry date as YYYY-MM-DD.")
                    .field("expires_on", "Enter the expiry date as YYYY-MM-DD."));
            }
        },
    };
    Ok(NewKey { name: form.name.clone(), allowed_models: (!models.is_empty()).then_some(models), expires_at })
}

#[tracing::instrument(name = "console.keys.issue", skip_all, fields(team_id = path.0))]
pub async fn issue_key(
    state: web::Data<AppState>,
    path: web::Path<(i64,)>,
    posted: Posted<KeyForm>,
) -> Result<HttpResponse, PageError> {
    let Posted { viewer, form } = posted;
    let team = visible_team(&state, &viewer, path.0).await?;
    viewer.require(viewer.can_use_keys(team.id))?;
    let errors = match parse_key_form(&form) {
        Err(errors) => errors,
        Ok(new) => match keys::issue(&state.store, &viewer.actor(), team.id, new).await {
            Ok(issued) => {
                key_owners::record(&state.store, issued.key.id, viewer.user.id).await?;
                let page = SecretView {
                    chrome: Chrome::new(&viewer, "teams"),
                    title: format!("Key \u{201c}{}\u{201d} created", issued.key.name),
                    intro: "Copy this key now: it is shown only once. Switchyard keeps only its hash.".to_owned(),
                    label: "API key",
                    secret: issued.secret,
                    back: format!("/console/teams/{}", team.id),
                    back_label: format!("Back to {}", team.name),
                };
                return view::ok(&page);
            }
            Err(e) => FormErrors::from_domain(e, |p| match p {
                p if p.starts_with("allowed_models") => "allowed_models",
                "expires_at" => "expires_on",
                p => p,
            })?,
        },
    };
    let page =
        page(&state, &viewer, team, &ListQuery::default(), form, errors, InviteForm::default(), FormErrors::default())
            .await?;
    view::render(StatusCode::BAD_REQUEST, &page)
}

#[tracing::instrument(name = "console.keys.revoke", skip_all, fields(team_id = path.0, key_id = path.1))]
pub async fn revoke_key(
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
    posted: Posted<Empty>,
) -> Result<HttpResponse, PageError> {
    let viewer = posted.viewer;
    let (team_id, key_id) = path.into_inner();
    let team = visible_team(&state, &viewer, team_id).await?;
    viewer.require(viewer.can_use_keys(team.id))?;
    // The key must belong to this team: a key id of another team is "not found" here.
    if !keys::list_for_team(&state.store, team.id).await?.iter().any(|k| k.id == key_id) {
        return Err(PageError::NotFound);
    }
    let owner = key_owners::owners(&state.store, &[key_id]).await?.get(&key_id).copied();
    viewer.require(viewer.can_revoke_key(team.id, owner))?;
    keys::revoke(&state.store, &viewer.actor(), key_id).await?;
    Ok(view::see_other(&format!("/console/teams/{}#keys", team.id)))
}

#[derive(Debug, Default, Deserialize)]
pub struct RotateForm {
    #[serde(default)]
    pub grace_until: String,
}

#[tracing::instrument(name = "console.keys.rotate", skip_all, fields(team_id = path.0, key_id = path.1))]
pub async fn rotate_key(
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
    posted: Posted<RotateForm>,
) -> Result<HttpResponse, PageError> {
    let Posted { viewer, form } = posted;
    let (team_id, key_id) = path.into_inner();
    let team = visible_team(&state, &viewer, team_id).await?;
    viewer.require(viewer.can_use_keys(team.id))?;
    let key = keys::get(&state.store, key_id).await.map_err(|_| PageError::NotFound)?;
    if key.team_id != team.id {
        return Err(PageError::NotFound);
    }
    let owner = key_owners::owners(&state.store, &[key_id]).await?.get(&key_id).copied();
    viewer.require(viewer.can_revoke_key(team.id, owner))?;
    let now = Utc::now();
    let refusal = match chrono::NaiveDateTime::parse_from_str(form.grace_until.trim(), GRACE_FORMAT) {
        Err(_) => "Enter when the old key stops working as a date and time (UTC).".to_owned(),
        Ok(t) => {
            let rotation = keys::Rotation { grace_until: t.and_utc() };
            match keys::rotate(&state.store, &viewer.actor(), key_id, rotation, now).await {
                Ok(rotated) => {
                    let page = SecretView {
                        chrome: Chrome::new(&viewer, "teams"),
                        title: format!("Key \u{201c}{}\u{201d} rotated", rotated.issued.key.name),
                        intro: format!(
                            "Copy the new key now: it is shown only once. The old key ({}\u{2026}) keeps working until {}.",
                            rotated.previous.prefix,
                            rotated.previous.expires_at.map_or_else(|| "now".to_owned(), format::timestamp)
                        ),
                        label: "New API key",
                        secret: rotated.issued.secret,
                        back: format!("/console/teams/{}#keys", team.id),
                        back_label: format!("Back to {}", team.name),
                    };
                    return view::ok(&page);
                }
                Err(e) => FormErrors::from_domain(e, |p| p)?
                    .general
                    .unwrap_or_else(|| "The key could not be rotated.".to_owned()),
            }
        }
    };
    let mut page = page(
        &state,
        &viewer,
        team,
        &ListQuery::default(),
        KeyForm::default(),
        FormErrors::default(),
        InviteForm::default(),
        FormErrors::default(),
    )
    .await?;
    page.rotate_error = Some(refusal);
    // Keep what was typed, so a near miss is fixed rather than retyped.
    if !form.grace_until.trim().is_empty() {
        page.default_grace = form.grace_until.trim().chars().take(32).collect();
    }
    view::render(StatusCode::BAD_REQUEST, &page)
}

/// The absolute URL of a console path, as the visitor reached this server.
pub fn absolute_url(req: &HttpRequest, path: &str) -> String {
    let info = req.connection_info();
    format!("{}://{}{}", info.scheme(), info.host(), path)
}

#[tracing::instrument(name = "console.team.invite", skip_all, fields(team_id = path.0))]
pub async fn invite(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(i64,)>,
    posted: Posted<InviteForm>,
) -> Result<HttpResponse, PageError> {
    let Posted { viewer, form } = posted;
    let team = visible_team(&state, &viewer, path.0).await?;
    viewer.require(viewer.can_manage_members(team.id))?;
    let errors = match TeamRole::parse(&form.team_role) {
        Err(e) => FormErrors::from_domain(e, |p| p)?,
        Ok(role) => {
            let new = NewInvite {
                email: form.email.clone(),
                platform_role: PlatformRole::Member,
                team: Some((team.id, role)),
            };
            match invites::create(&state.store, &viewer.principal, new, Utc::now()).await {
                Ok(issued) => {
                    let page = SecretView {
                        chrome: Chrome::new(&viewer, "teams"),
                        title: format!("Invite for {}", issued.email),
                        intro: format!(
                            "Send this link to {}. It works once, until {}, and is shown only now.",
                            issued.email,
                            format::timestamp(issued.expires_at)
                        ),
                        label: "Invite link",
                        secret: absolute_url(&req, &format!("/console/invite/{}", issued.token)),
                        back: format!("/console/teams/{}", team.id),
                        back_label: format!("Back to {}", team.name),
                    };
                    return view::ok(&page);
                }
                Err(invites::InviteError::Domain(e)) => FormErrors::from_domain(e, |p| p)?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    let page =
        page(&state, &viewer, team, &ListQuery::default(), KeyForm::default(), FormErrors::default(), form, errors)
            .await?;
    view::render(StatusCode::BAD_REQUEST, &page)
}

#[derive(Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    role: String,
}

#[tracing::instrument(name = "console.team.member_role", skip_all, fields(team_id = path.0, user_id = path.1))]
pub async fn set_member_role(
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
    posted: Posted<RoleForm>,
) -> Result<HttpResponse, PageError> {
    let Posted { viewer, form } = posted;
    let (team_id, user_id) = path.into_inner();
    let team = visible_team(&state, &viewer, team_id).await?;
    viewer.require(viewer.can_manage_members(team.id))?;
    let role = TeamRole::parse(&form.role)?;
    memberships::set_role(&state.store, &viewer.actor(), team.id, user_id, role).await?;
    Ok(view::see_other(&format!("/console/teams/{}#members", team.id)))
}

#[tracing::instrument(name = "console.team.member_remove", skip_all, fields(team_id = path.0, user_id = path.1))]
pub async fn remove_member(
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
    posted: Posted<Empty>,
) -> Result<HttpResponse, PageError> {
    let viewer = posted.viewer;
    let (team_id, user_id) = path.into_inner();
    let team = visible_team(&state, &viewer, team_id).await?;
    viewer.require(viewer.can_manage_members(team.id))?;
    memberships::remove(&state.store, &viewer.actor(), team.id, user_id).await?;
    Ok(view::see_other(&format!("/console/teams/{}#members", team.id)))
}

#[derive(Deserialize)]
pub struct MarkupForm {
    #[serde(default)]
    markup_bp: String,
}

/// Sets the team's invoice discount or markup (operators): basis points, negative = discount.
#[tracing::instrument(name = "console.team.markup", skip_all, fields(team_id = path.0))]
pub async fn set_markup(
    state: web::Data<AppState>,
    path: web::Path<(i64,)>,
    posted: Posted<MarkupForm>,
) -> Result<HttpResponse, PageError> {
    let Posted { viewer, form } = posted;
    let team = visible_team(&state, &viewer, path.0).await?;
    viewer.require(viewer.is_operator())?;
    let bp: i32 = form.markup_bp.trim().parse().map_err(|_| {
        PageError::BadRequest("Enter the discount or markup as whole basis points, e.g. -1000 for 10 % off.".into())
    })?;
    let update = teams::TeamUpdate { name: None, markup_bp: Some(bp) };
    match teams::update(&state.store, &viewer.actor(), team.id, update).await {
        Ok(_) => Ok(view::see_other(&format!("/console/teams/{}#billing", team.id))),
        Err(crate::domain::DomainError::Invalid { message, .. }) => Err(PageError::BadRequest(message)),
        Err(e) => Err(e.into()),
    }
}
