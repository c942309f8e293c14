//! `/console/users`: every account (operators only) — platform role, teams, status; disable and re-enable
//! (disabling ends the user's sessions and tokens at once); invite a new user with a platform role and,
//! optionally, a team.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;

use super::error::PageError;
use super::format;
use super::login::Empty;
use super::session::{Posted, Viewer};
use super::team::{SecretView, absolute_url};
use super::view::{self, Chrome, FormErrors, ListNav, ListQuery};
use crate::domain::accounts::{self, PlatformRole};
use crate::domain::invites::{self, InviteError, NewInvite};
use crate::domain::listing;
use crate::domain::memberships::{self, TeamRole};
use crate::domain::teams;
use crate::web::AppState;

#[derive(Template)]
#[template(path = "users/list.html")]
pub struct UsersView {
    pub chrome: Chrome,
    pub nav: ListNav,
    pub rows: Vec<UserRow>,
    pub teams: Vec<(i64, String)>,
    pub form: InviteForm,
    pub errors: FormErrors,
    pub platform_roles: [PlatformRole; 3],
    pub team_roles: [TeamRole; 3],
    pub me: i64,
}

pub struct UserRow {
    pub id: i64,
    pub email: String,
    pub role: &'static str,
    pub teams: String,
    pub created: String,
    pub disabled: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub platform_role: String,
    #[serde(default)]
    pub team_id: String,
    #[serde(default)]
    pub team_role: String,
}

impl InviteForm {
    pub fn is_team(&self, id: &i64) -> bool {
        self.team_id == id.to_string()
    }
}

async fn page(
    state: &AppState,
    viewer: &Viewer,
    query: &ListQuery,
    form: InviteForm,
    errors: FormErrors,
) -> Result<UsersView, PageError> {
    let q = query.search();
    let paged = listing::users(&state.store, &q, query.page()).await?;
    let nav = ListNav::new("/console/users", "users", "Search by email", &q, &paged);
    let mut rows = Vec::new();
    for u in paged.rows {
        let teams: Vec<String> = memberships::teams_of_user(&state.store, u.id)
            .await?
            .into_iter()
            .map(|m| format!("{} ({})", m.team_name, m.role.as_str()))
            .collect();
        rows.push(UserRow {
            id: u.id,
            email: u.email,
            role: u.role.label(),
            teams: if teams.is_empty() { "—".to_owned() } else { teams.join(", ") },
            created: format::timestamp(u.created_at),
            disabled: u.disabled_at.is_some(),
        });
    }
    let teams = teams::list(&state.store).await?.into_iter().map(|t| (t.id, t.name)).collect();
    Ok(UsersView {
        chrome: Chrome::new(viewer, "users"),
        nav,
        rows,
        teams,
        form,
        errors,
        platform_roles: PlatformRole::ALL,
        team_roles: TeamRole::ALL,
        me: viewer.user.id,
    })
}

pub async fn list(
    state: web::Data<AppState>,
    viewer: Viewer,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, PageError> {
    viewer.require(viewer.is_operator())?;
    let form = InviteForm { platform_role: "member".into(), team_role: "member".into(), ..Default::default() };
    view::ok(&page(&state, &viewer, &query, form, FormErrors::default()).await?)
}

async fn set_disabled(state: &AppState, viewer: &Viewer, id: i64, disabled: bool) -> Result<HttpResponse, PageError> {
    viewer.require(viewer.is_operator())?;
    accounts::set_disabled(&state.store, &viewer.actor(), viewer.user.id, id, disabled).await?;
    Ok(view::see_other("/console/users"))
}

pub async fn disable(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    posted: Posted<Empty>,
) -> Result<HttpResponse, PageError> {
    set_disabled(&state, &posted.viewer, *id, true).await
}

pub async fn enable(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    posted: Posted<Empty>,
) -> Result<HttpResponse, PageError> {
    set_disabled(&state, &posted.viewer, *id, false).await
}

#[tracing::instrument(name = "console.users.invite", skip_all)]
pub async fn invite(
    req: HttpRequest,
    state: web::Data<AppState>,
    posted: Posted<InviteForm>,
) -> Result<HttpResponse, PageError> {
    let Posted { viewer, form } = posted;
    viewer.require(viewer.is_operator())?;
    let parsed = (|| {
        let role = PlatformRole::parse(&form.platform_role)?;
        let team = match form.team_id.trim() {
            "" => None,
            id => Some((
                id.parse::<i64>().map_err(|_| crate::domain::DomainError::invalid("team_id", "choose a team"))?,
                TeamRole::parse(&form.team_role)?,
            )),
        };
        Ok::<_, crate::domain::DomainError>(NewInvite { email: form.email.clone(), platform_role: role, team })
    })();
    let errors = match parsed {
        Err(e) => FormErrors::from_domain(e, |p| p)?,
        Ok(new) => match invites::create(&state.store, &viewer.principal, new, Utc::now()).await {
            Ok(issued) => {
                let page = SecretView {
                    chrome: Chrome::new(&viewer, "users"),
                    title: format!("Invite for {}", issued.email),
                    intro: format!(
                        "Send this link to {}. It works once, until {}, and is shown only now.",
                        issued.email,
                        format::timestamp(issued.expires_at)
                    ),
                    label: "Invite link",
                    secret: absolute_url(&req, &format!("/console/invite/{}", issued.token)),
                    back: "/console/users".to_owned(),
                    back_label: "Back to users".to_owned(),
                };
                return view::ok(&page);
            }
            Err(InviteError::Domain(e)) => FormErrors::from_domain(e, |p| p)?,
            Err(e) => return Err(e.into()),
        },
    };
    view::render(StatusCode::BAD_REQUEST, &page(&state, &viewer, &ListQuery::default(), form, errors).await?)
}
