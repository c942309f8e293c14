//! The console in a real headless Chromium (Debian's `chromium` + `chromium-driver`, driven over WebDriver
//! with fantoccini): log in, create a team, invite a member, create a key and see it once, edit a route, view
//! usage, a form without its CSRF token refused, log out, and the invited member joining. Every main page is
//! saved as a screenshot under `<target dir>/console-screenshots/` for review.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use chrono::Utc;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use switchyard_shared::UsageBatch;
use tokio::process::{Child, Command};

use crate::helpers::{Backend, TestApp, spawn_app, usage_record};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// chromedriver on a free local port, killed when dropped.
struct Driver {
    _child: Child,
    url: String,
}

async fn start_chromedriver() -> Driver {
    assert!(
        std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
        "browser tests need Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}); run `make services`"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    // Ready when /status answers; bounded, polled at a short interval.
    for _ in 0..200 {
        if client.get(format!("{url}/status")).send().await.is_ok_and(|r| r.status().is_success()) {
            return Driver { _child: child, url };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("chromedriver did not become ready on port {port}");
}

async fn open_browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let args = vec![
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--window-size=1280,900".to_owned(),
        format!("--user-data-dir={}", profile.display()),
    ];
    let caps = json!({ "goog:chromeOptions": { "binary": CHROMIUM, "args": args } });
    let serde_json::Value::Object(caps) = caps else { unreachable!() };
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("cannot open Chromium")
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("screenshot failed");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

async fn fill(browser: &Client, css: &str, text: &str) {
    let field = browser.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no field {css}: {e}"));
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn click(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("nothing to click at {css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Waits (bounded) until the page's `h1` starts with `expected`: a click that submits a form returns before the
/// next page has replaced the current one.
async fn expect_heading(browser: &Client, expected: &str) -> String {
    let mut seen = String::new();
    for _ in 0..200 {
        if let Ok(h1) = browser.find(Locator::Css("h1")).await
            && let Ok(text) = h1.text().await
        {
            if text.starts_with(expected) {
                return text;
            }
            seen = text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected a page titled {expected:?}, still on {seen:?}");
}

async fn goto(browser: &Client, app: &TestApp, path: &str) {
    browser.goto(&app.url(path)).await.unwrap();
}

async fn value_of(browser: &Client, css: &str) -> String {
    browser.find(Locator::Css(css)).await.unwrap().prop("value").await.unwrap().unwrap_or_default()
}

async fn run(backend: Backend) {
    let app = spawn_app(backend).await;
    let driver = start_chromedriver().await;
    let profile = tempfile::tempdir().unwrap();
    let browser = open_browser(&driver, profile.path()).await;
    let b = app.bootstrap.clone().unwrap();

    // Log in.
    goto(&browser, &app, "/console").await;
    expect_heading(&browser, "Sign in").await;
    fill(&browser, "#email", &b.email).await;
    fill(&browser, "#password", b.password.expose()).await;
    shot(&browser, "01-login").await;
    click(&browser, "form[action='/console/login'] button").await;
    expect_heading(&browser, "Overview").await;

    // Create a team.
    goto(&browser, &app, "/console/teams").await;
    fill(&browser, "#team-name", "Browser Team").await;
    click(&browser, "form[method=post][action='/console/teams'] button").await;
    expect_heading(&browser, "Browser Team").await;
    let team_url = browser.current_url().await.unwrap().to_string();
    let team_id: i64 = team_url.rsplit('/').next().unwrap().parse().unwrap();

    // Invite a member.
    fill(&browser, "#invite-email", "member@example.com").await;
    browser.find(Locator::Css("#invite-role")).await.unwrap().select_by_value("member").await.unwrap();
    click(&browser, "form[action$='/invites'] button").await;
    expect_heading(&browser, "Invite for member@example.com").await;
    let invite_link = value_of(&browser, "#secret").await;
    assert!(invite_link.contains("/console/invite/syinv-"), "{invite_link}");

    // Create a key and see it once.
    goto(&browser, &app, &format!("/console/teams/{team_id}")).await;
    fill(&browser, "#key-name", "browser key").await;
    click(&browser, "form[action$='/keys'] button").await;
    expect_heading(&browser, "Key \u{201c}browser key\u{201d} created").await;
    let secret = value_of(&browser, "#secret").await;
    assert!(secret.starts_with("sk-sy-"));
    click(&browser, "button[data-copy]").await;
    // The clipboard write settles asynchronously (a promise on secure origins): wait for the status line.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let status = browser.find(Locator::Css("[data-copy-status]")).await.unwrap().text().await.unwrap();
        if status == "Copied to the clipboard." {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the copy button never reported: {status:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    shot(&browser, "04-key-created").await;
    goto(&browser, &app, &format!("/console/teams/{team_id}")).await;
    let source = browser.source().await.unwrap();
    assert!(source.contains("browser key") && !source.contains(&secret), "the key must be shown only once");

    // A form stripped of its CSRF token is refused.
    browser
        .execute("document.querySelector(\"form[action$='/keys'] input[name=csrf]\").remove();", vec![])
        .await
        .unwrap();
    fill(&browser, "#key-name", "forged").await;
    click(&browser, "form[action$='/keys'] button").await;
    expect_heading(&browser, "Not allowed").await;
    assert_eq!(app.list_keys(team_id).await.len(), 1);

    // A provider, a model, then edit its route.
    goto(&browser, &app, "/console/providers").await;
    fill(&browser, "#p-name", "mock").await;
    fill(&browser, "#p-url", "http://127.0.0.1:9/v1").await;
    fill(&browser, "#p-key", "sk-upstream").await;
    click(&browser, "form[method=post][action='/console/providers'] button").await;
    browser.wait().for_element(Locator::Css("table a[href^='/console/providers/']")).await.unwrap();
    shot(&browser, "06-providers").await;
    goto(&browser, &app, "/console/models/new").await;
    fill(&browser, "#m-name", "browser-chat").await;
    fill(&browser, "#m-in", "0.15").await;
    fill(&browser, "#m-out", "0.60").await;
    browser.find(Locator::Css("#t0-p")).await.unwrap().select_by_value("1").await.unwrap();
    fill(&browser, "#t0-u", "mock-model").await;
    click(&browser, "form.card button[type=submit]").await;
    expect_heading(&browser, "Models and routes").await;
    let model_id = app.list_models().await[0].id;
    goto(&browser, &app, &format!("/console/models/{model_id}")).await;
    fill(&browser, "#t0-w", "5").await;
    browser.find(Locator::Css("#t1-p")).await.unwrap().select_by_value("1").await.unwrap();
    fill(&browser, "#t1-u", "fallback-model").await;
    fill(&browser, "#t1-r", "1").await;
    shot(&browser, "07-model-edit").await;
    click(&browser, "form.card button[type=submit]").await;
    expect_heading(&browser, "Models and routes").await;
    let model = app.list_models().await.remove(0);
    assert_eq!(model.targets.len(), 2);
    assert_eq!(model.targets[0].weight, 5);
    assert_eq!(model.output_price_per_mtok, 600_000);
    shot(&browser, "08-models").await;

    // Usage, nodes, audit, account, overview on a laptop and on a phone.
    let key_id = app.list_keys(team_id).await[0].id;
    let now = Utc::now();
    let records = (0..12)
        .map(|i| {
            let mut r = usage_record(
                team_id,
                key_id,
                "browser-chat",
                now - chrono::Duration::hours(i * 20),
                1000 + 37 * i as u64,
                400,
                900 + 11 * i,
            );
            if i == 3 {
                r.status = 502;
            }
            r
        })
        .collect();
    app.post_usage(&UsageBatch { node_id: "node-a".into(), records }).await;
    app.poll_snapshot("node-a", 0, 0).await;
    app.poll_snapshot("node-b", 1, 0).await;
    goto(&browser, &app, &format!("/console/usage?team_id={team_id}")).await;
    expect_heading(&browser, "Usage explorer").await;
    assert_eq!(browser.find_all(Locator::Css("tbody tr")).await.unwrap().len(), 12);
    shot(&browser, "09-usage").await;
    goto(&browser, &app, &format!("/console/teams/{team_id}")).await;
    shot(&browser, "03-team").await;
    // Rotate the key with a grace period, through the keyboard-usable disclosure on its row.
    click(&browser, "details.rotate summary").await;
    browser
        .execute("document.querySelector('details.rotate').scrollIntoView({block: 'center'});", vec![])
        .await
        .unwrap();
    shot(&browser, "16-key-rotate").await;
    click(&browser, "details.rotate button[type=submit]").await;
    expect_heading(&browser, "Key \u{201c}browser key\u{201d} rotated").await;
    assert!(value_of(&browser, "#secret").await.starts_with("sk-sy-"));
    shot(&browser, "17-key-rotated").await;
    assert_eq!(app.list_keys(team_id).await.len(), 2);
    goto(&browser, &app, "/console/teams?q=browser").await;
    shot(&browser, "18-teams-search").await;
    goto(&browser, &app, "/console/nodes").await;
    shot(&browser, "10-nodes").await;
    goto(&browser, &app, "/console/audit").await;
    shot(&browser, "11-audit").await;
    goto(&browser, &app, "/console/users").await;
    shot(&browser, "12-users").await;
    goto(&browser, &app, "/console/account").await;
    shot(&browser, "13-account").await;
    goto(&browser, &app, "/console").await;
    shot(&browser, "02-overview").await;
    browser.set_window_size(390, 844).await.unwrap();
    shot(&browser, "14-overview-phone").await;
    browser.set_window_size(1280, 900).await.unwrap();

    // Log out.
    click(&browser, "form[action='/console/logout'] button").await;
    expect_heading(&browser, "Sign in").await;
    goto(&browser, &app, "/console/teams").await;
    expect_heading(&browser, "Sign in").await;

    // The invited member joins and sees their team.
    browser.goto(&invite_link).await.unwrap();
    expect_heading(&browser, "Join Browser Team as member").await;
    fill(&browser, "#password", "member passphrase").await;
    fill(&browser, "#confirm_password", "member passphrase").await;
    shot(&browser, "15-invite").await;
    click(&browser, "form button[type=submit]").await;
    expect_heading(&browser, "Overview").await;
    goto(&browser, &app, "/console/teams").await;
    let teams = browser.source().await.unwrap();
    assert!(teams.contains("Browser Team"));
    click(&browser, "form[action='/console/logout'] button").await;
    expect_heading(&browser, "Sign in").await;

    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser() {
    run(Backend::Sqlite).await;
}
