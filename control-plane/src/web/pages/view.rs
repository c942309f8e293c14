//! What every page shares: the chrome around it (who is signed in, which sections they may open, the CSRF token
//! forms carry), form errors that keep their field, and the one function that turns a template into a response.

use std::collections::BTreeMap;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use askama::Template;

use super::error::PageError;
use super::session::Viewer;
use crate::domain::DomainError;

/// The layout's data: navigation by role, the signed-in user, the CSRF token of their session.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub signed_in: bool,
    pub email: String,
    pub role_label: &'static str,
    pub csrf: String,
    pub section: &'static str,
    pub operator: bool,
    pub sees_all: bool,
    /// Operators, finance and team admins read invoices.
    pub invoices: bool,
}

impl Chrome {
    pub fn new(viewer: &Viewer, section: &'static str) -> Self {
        Self {
            signed_in: true,
            email: viewer.user.email.clone(),
            role_label: viewer.user.role.label(),
            csrf: viewer.session.csrf.clone(),
            section,
            operator: viewer.is_operator(),
            sees_all: viewer.sees_all_teams(),
            invoices: viewer.sees_all_teams()
                || viewer.teams.values().any(|r| *r == crate::domain::memberships::TeamRole::Admin),
        }
    }

    /// Pages shown before login; `csrf` is the anonymous double-submit token.
    pub fn anonymous(csrf: String) -> Self {
        Self {
            signed_in: false,
            email: String::new(),
            role_label: "",
            csrf,
            section: "",
            operator: false,
            sees_all: false,
            invoices: false,
        }
    }

    /// `aria-current` for the navigation link of `section`.
    pub fn current(&self, section: &str) -> &'static str {
        if self.section == section { "page" } else { "false" }
    }
}

/// Validation messages of a form: one per field, plus a general one.
#[derive(Debug, Clone, Default)]
pub struct FormErrors {
    pub general: Option<String>,
    fields: BTreeMap<String, String>,
}

impl FormErrors {
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    pub fn has(&self, field: &str) -> bool {
        self.fields.contains_key(field)
    }

    pub fn is_empty(&self) -> bool {
        self.general.is_none() && self.fields.is_empty()
    }

    pub fn field(mut self, field: &str, message: impl Into<String>) -> Self {
        self.fields.insert(field.to_owned(), message.into());
        self
    }

    pub fn general(message: impl Into<String>) -> Self {
        Self { general: Some(message.into()), fields: BTreeMap::new() }
    }

    /// A domain refusal the user can fix becomes form errors (the field named by its `param`, mapped through
    /// `field_of` to the form's own field names); anything else stays an error page.
    pub fn from_domain(e: DomainError, field_of: impl Fn(&str) -> &str) -> Result<Self, PageError> {
        match e {
            DomainError::Invalid { param: Some(p), message } => {
                let field = field_of(&p).to_owned();
                Ok(Self { general: Some(message.clone()), fields: BTreeMap::from([(field, message)]) })
            }
            DomainError::Invalid { param: None, message } | DomainError::Conflict(message) => {
                Ok(Self::general(message))
            }
            other => Err(other.into()),
        }
    }
}

/// Renders a page with the console's headers: HTML, never cached (pages can hold a secret shown once), no
/// framing, scripts and styles from this origin only.
pub fn render(status: StatusCode, page: &impl Template) -> Result<HttpResponse, PageError> {
    let html = page.render()?;
    Ok(HttpResponse::build(status)
        .insert_header(ContentType::html())
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("x-frame-options", "DENY"))
        .insert_header(("referrer-policy", "same-origin"))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header((
            "content-security-policy",
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ))
        .body(html))
}

pub fn ok(page: &impl Template) -> Result<HttpResponse, PageError> {
    render(StatusCode::OK, page)
}

/// After a successful POST: back to a page with GET.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location.to_owned())).finish()
}

/// The search box and pager of a list page: where the list lives, what was searched, which page this is.
#[derive(Debug, Clone)]
pub struct ListNav {
    /// The page's path, e.g. `/console/teams`.
    pub path: String,
    /// A fragment to come back to (`#keys`), or empty.
    pub anchor: &'static str,
    /// The plural noun of the rows ("teams"), for labels.
    pub noun: &'static str,
    pub placeholder: &'static str,
    pub q: String,
    pub page: u64,
    pub pages: u64,
    pub total: u64,
}

/// The query string of a list page: `?q=&page=`.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub q: Option<String>,
    #[serde(default)]
    pub page: Option<u64>,
}

impl ListQuery {
    pub fn search(&self) -> crate::domain::listing::Search {
        crate::domain::listing::Search::new(self.q.as_deref().unwrap_or_default())
    }

    pub fn page(&self) -> u64 {
        self.page.unwrap_or(1)
    }
}

impl ListNav {
    pub fn new<T>(
        path: impl Into<String>,
        noun: &'static str,
        placeholder: &'static str,
        q: &crate::domain::listing::Search,
        paged: &crate::domain::listing::Paged<T>,
    ) -> Self {
        Self {
            path: path.into(),
            anchor: "",
            noun,
            placeholder,
            q: q.as_str().to_owned(),
            page: paged.page,
            pages: paged.pages,
            total: paged.total,
        }
    }

    pub fn with_anchor(mut self, anchor: &'static str) -> Self {
        self.anchor = anchor;
        self
    }

    pub fn href(&self, page: u64) -> String {
        let query = serde_urlencoded::to_string([("q", self.q.as_str()), ("page", &page.to_string())])
            .unwrap_or_else(|_| format!("page={page}"));
        format!("{}?{query}{}", self.path, self.anchor)
    }

    pub fn prev(&self) -> Option<String> {
        (self.page > 1).then(|| self.href(self.page - 1))
    }

    pub fn next(&self) -> Option<String> {
        (self.page < self.pages).then(|| self.href(self.page + 1))
    }

    /// The form's action: the list itself, back at the anchor.
    pub fn action(&self) -> String {
        format!("{}{}", self.path, self.anchor)
    }
}
