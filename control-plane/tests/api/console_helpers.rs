//! Console test helpers: a browser-like HTTP session (a small cookie jar, redirects not followed so tests see
//! every 303), CSRF tokens and shown-once secrets read from the pages, and the console flows tests repeat
//! (log in, create a team, invite someone and accept as them).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use crate::helpers::TestApp;

/// One answer of the console.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: String,
}

/// Undoes askama's HTML escaping of attribute values.
pub fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#47;", "/")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

impl Page {
    /// The value of the first `name="<name>" value="…"` input.
    pub fn input_value(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')? + start;
        Some(unescape(&self.body[start..end]))
    }

    pub fn csrf(&self) -> String {
        self.input_value("csrf").unwrap_or_else(|| panic!("no CSRF token in the page: {}", self.body))
    }

    /// The secret a "shown once" page displays.
    pub fn secret(&self) -> String {
        let marker = "readonly value=\"";
        let start =
            self.body.find(marker).unwrap_or_else(|| panic!("no secret in the page: {}", self.body)) + marker.len();
        let end = self.body[start..].find('"').unwrap() + start;
        unescape(&self.body[start..end])
    }

    pub fn assert_status(&self, status: StatusCode) -> &Self {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.body);
        self
    }

    pub fn assert_redirect_to(&self, prefix: &str) -> &Self {
        assert_eq!(self.status, StatusCode::SEE_OTHER, "expected a redirect; body: {}", self.body);
        let location = self.location.as_deref().unwrap_or_default();
        assert!(location.starts_with(prefix), "redirected to {location}, expected {prefix}…");
        self
    }

    pub fn assert_contains(&self, text: &str) -> &Self {
        assert!(self.body.contains(text), "the page does not contain {text:?}: {}", self.body);
        self
    }
}

/// A POST of URL-encoded form fields.
pub fn form_post(client: &reqwest::Client, url: &str, fields: &[(&str, &str)]) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(fields).unwrap())
}

/// A browser-like session on the console of one app.
pub struct ConsoleSession {
    pub base: String,
    client: reqwest::Client,
    jar: Mutex<BTreeMap<String, String>>,
}

impl ConsoleSession {
    pub fn new(app: &TestApp) -> Self {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Self { base: app.address.clone(), client, jar: Mutex::new(BTreeMap::new()) }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar.lock().unwrap().get(name).cloned()
    }

    pub fn set_cookie(&self, name: &str, value: &str) {
        self.jar.lock().unwrap().insert(name.to_owned(), value.to_owned());
    }

    fn cookie_header(&self) -> String {
        self.jar.lock().unwrap().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Page {
        let req = match self.cookie_header() {
            h if h.is_empty() => req,
            h => req.header(COOKIE, h),
        };
        let res = req.send().await.expect("console request failed");
        let status = res.status();
        let location = res.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let set_cookies: Vec<String> =
            res.headers().get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect();
        for c in &set_cookies {
            let pair = c.split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                let mut jar = self.jar.lock().unwrap();
                if v.is_empty() || c.contains("Max-Age=0") {
                    jar.remove(k.trim());
                } else {
                    jar.insert(k.trim().to_owned(), v.trim().to_owned());
                }
            }
        }
        Page { status, location, set_cookies, body: res.text().await.unwrap_or_default() }
    }

    pub async fn get(&self, path: &str) -> Page {
        self.send(self.client.get(format!("{}{path}", self.base))).await
    }

    /// POSTs the fields as they are: no CSRF token is added.
    pub async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.send(form_post(&self.client, &format!("{}{path}", self.base), fields)).await
    }

    /// The CSRF token of the current session, read from a page.
    pub async fn csrf(&self) -> String {
        self.get("/console/account").await.assert_status(StatusCode::OK).csrf()
    }

    /// POSTs a form with the session's CSRF token, as the browser would.
    pub async fn submit(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.csrf().await;
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    /// Fills in the login form; returns the answer to the POST.
    pub async fn try_login(&self, email: &str, password: &str) -> Page {
        let form = self.get("/console/login").await;
        form.assert_status(StatusCode::OK);
        let csrf = form.csrf();
        self.post_raw("/console/login", &[("csrf", &csrf), ("email", email), ("password", password)]).await
    }

    pub async fn login(app: &TestApp, email: &str, password: &str) -> Self {
        let s = Self::new(app);
        s.try_login(email, password).await.assert_redirect_to("/console");
        s
    }

    /// The bootstrap operator, signed in.
    pub async fn operator(app: &TestApp) -> Self {
        let b = app.bootstrap.as_ref().expect("this app did not bootstrap");
        Self::login(app, &b.email, b.password.expose()).await
    }

    /// Creates a team through the console form; returns its id.
    pub async fn create_team(&self, name: &str) -> i64 {
        let page = self.submit("/console/teams", &[("name", name)]).await;
        page.assert_redirect_to("/console/teams/");
        page.location.unwrap().rsplit('/').next().unwrap().parse().unwrap()
    }

    /// Creates an invite link into a team.
    pub async fn invite(&self, team_id: i64, email: &str, role: &str) -> String {
        let page =
            self.submit(&format!("/console/teams/{team_id}/invites"), &[("email", email), ("team_role", role)]).await;
        page.assert_status(StatusCode::OK);
        page.secret()
    }

    /// Accepts an invite link as a new user, who ends up signed in.
    pub async fn accept_invite(app: &TestApp, link: &str, password: &str) -> Self {
        let path = link.strip_prefix(&app.address).unwrap_or_else(|| panic!("link {link} is not on {}", app.address));
        let s = Self::new(app);
        let form = s.get(path).await;
        form.assert_status(StatusCode::OK);
        let csrf = form.csrf();
        s.post_raw(path, &[("csrf", &csrf), ("password", password), ("confirm_password", password)])
            .await
            .assert_redirect_to("/console");
        s
    }

    /// A new user in `team_id` with `role`, invited by `self` and signed in.
    pub async fn add_user(&self, app: &TestApp, team_id: i64, email: &str, role: &str) -> Self {
        let link = self.invite(team_id, email, role).await;
        Self::accept_invite(app, &link, "correct horse battery").await
    }

    /// Issues a key in a team through the console; returns the page that shows the secret.
    pub async fn issue_key(&self, team_id: i64, name: &str) -> Page {
        self.submit(&format!("/console/teams/{team_id}/keys"), &[("name", name)]).await
    }
}
