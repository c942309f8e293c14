//! The admin console over HTTP, as a browser uses it: sessions (cookie flags, logout, password change and
//! disabling end sessions server-side), CSRF on every form, login throttling, role enforcement and tenant
//! isolation (a team admin of A gets 403/404 on every URL of team B), invites, keys shown once, personal
//! access tokens on the JSON API, and the operator's pages.

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::json;
use switchyard_shared::UsageBatch;

use crate::console_helpers::{ConsoleSession, form_post};
use crate::helpers::{Backend, spawn_app, usage_record};

async fn login_sets_a_hardened_cookie_and_logout_revokes_the_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = ConsoleSession::new(&app);
    s.get("/console/teams").await.assert_redirect_to("/console/login?next=/console/teams");

    let b = app.bootstrap.as_ref().unwrap();
    s.try_login(&b.email, "wrong password")
        .await
        .assert_status(StatusCode::UNAUTHORIZED)
        .assert_contains("not correct");
    let ok = s.try_login(&b.email, b.password.expose()).await;
    ok.assert_redirect_to("/console");
    let cookie = ok.set_cookies.iter().find(|c| c.starts_with("sy_session=")).expect("no session cookie");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/console", "Max-Age="] {
        assert!(cookie.contains(flag), "session cookie lacks {flag}: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP must not mark the cookie Secure: {cookie}");
    s.get("/console").await.assert_status(StatusCode::OK).assert_contains("Overview");
    let token = s.cookie("sy_session").unwrap();

    let csrf = s.csrf().await;
    s.post_raw("/console/logout", &[("csrf", &csrf)]).await.assert_redirect_to("/console/login");
    assert!(s.cookie("sy_session").is_none(), "logout must clear the cookie");
    // The old token is refused server-side even if a client kept it.
    s.set_cookie("sy_session", &token);
    s.get("/console").await.assert_redirect_to("/console/login");
    // A forged token too.
    s.set_cookie("sy_session", "eyJhbGciOiJIUzI1NiJ9.e30.bm90LWEtc2lnbmF0dXJl");
    s.get("/console").await.assert_redirect_to("/console/login");
}

async fn forms_without_the_csrf_token_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let op = ConsoleSession::operator(&app).await;
    op.post_raw("/console/teams", &[("name", "No token")]).await.assert_status(StatusCode::FORBIDDEN);
    op.post_raw("/console/teams", &[("name", "Bad token"), ("csrf", "x".repeat(43).as_str())])
        .await
        .assert_status(StatusCode::FORBIDDEN);
    // The token of another session does not work either.
    let other = ConsoleSession::operator(&app).await;
    let foreign = other.csrf().await;
    op.post_raw("/console/teams", &[("name", "Foreign"), ("csrf", &foreign)])
        .await
        .assert_status(StatusCode::FORBIDDEN);
    op.post_raw("/console/logout", &[]).await.assert_status(StatusCode::FORBIDDEN);
    assert!(app.list_teams().await.is_empty(), "no refused form may change anything");

    // The login form has its own (double-submit) token.
    let anon = ConsoleSession::new(&app);
    let b = app.bootstrap.as_ref().unwrap();
    anon.get("/console/login").await;
    anon.post_raw("/console/login", &[("email", &b.email), ("password", b.password.expose())])
        .await
        .assert_status(StatusCode::FORBIDDEN);

    // A cross-site POST (another Origin) is refused even with the right token.
    let csrf = op.csrf().await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res = form_post(&client, &app.url("/console/teams"), &[("csrf", csrf.as_str()), ("name", "Cross site")])
        .header("cookie", format!("sy_session={}", op.cookie("sy_session").unwrap()))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // With the token, it works.
    op.submit("/console/teams", &[("name", "With token")]).await.assert_redirect_to("/console/teams/");
}

async fn repeated_login_failures_lock_the_address(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = ConsoleSession::new(&app);
    let b = app.bootstrap.as_ref().unwrap();
    for _ in 0..5 {
        s.try_login(&b.email, "guess").await.assert_status(StatusCode::UNAUTHORIZED);
    }
    // Locked now, even with the right password; an unknown address is throttled the same way.
    s.try_login(&b.email, b.password.expose()).await.assert_status(StatusCode::TOO_MANY_REQUESTS);
    for _ in 0..5 {
        s.try_login("nobody@example.com", "guess").await.assert_status(StatusCode::UNAUTHORIZED);
    }
    s.try_login("nobody@example.com", "guess").await.assert_status(StatusCode::TOO_MANY_REQUESTS);
}

async fn password_change_and_disabling_end_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let op = ConsoleSession::operator(&app).await;
    let team = op.create_team("Alpha").await;
    let alice = op.add_user(&app, team, "alice@example.com", "member").await;
    let alice_laptop = ConsoleSession::login(&app, "alice@example.com", "correct horse battery").await;

    // Wrong current password, too short, mismatch: clear messages, nothing changes.
    alice
        .submit(
            "/console/account/password",
            &[
                ("current_password", "nope"),
                ("new_password", "long enough pass"),
                ("confirm_password", "long enough pass"),
            ],
        )
        .await
        .assert_status(StatusCode::BAD_REQUEST)
        .assert_contains("current password is not correct");
    alice
        .submit(
            "/console/account/password",
            &[("current_password", "correct horse battery"), ("new_password", "short"), ("confirm_password", "short")],
        )
        .await
        .assert_status(StatusCode::BAD_REQUEST)
        .assert_contains("at least 12");
    alice
        .submit(
            "/console/account/password",
            &[
                ("current_password", "correct horse battery"),
                ("new_password", "a brand new passphrase"),
                ("confirm_password", "a brand new passphrase"),
            ],
        )
        .await
        .assert_redirect_to("/console/account?changed=1");
    alice.get("/console").await.assert_status(StatusCode::OK);
    alice_laptop.get("/console").await.assert_redirect_to("/console/login");
    ConsoleSession::new(&app)
        .try_login("alice@example.com", "correct horse battery")
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
    let alice = ConsoleSession::login(&app, "alice@example.com", "a brand new passphrase").await;

    // Disabling signs her out at once and keeps her out.
    let users = op.get("/console/users").await;
    users.assert_status(StatusCode::OK).assert_contains("alice@example.com");
    let alice_id = alice_user_id(&app).await;
    op.submit(&format!("/console/users/{alice_id}/disable"), &[]).await.assert_redirect_to("/console/users");
    alice.get("/console").await.assert_redirect_to("/console/login");
    ConsoleSession::new(&app)
        .try_login("alice@example.com", "a brand new passphrase")
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
    op.submit(&format!("/console/users/{alice_id}/enable"), &[]).await.assert_redirect_to("/console/users");
    ConsoleSession::login(&app, "alice@example.com", "a brand new passphrase").await;
}

async fn alice_user_id(app: &crate::helpers::TestApp) -> i64 {
    use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
    use switchyard_control_plane::entities::users;
    users::Entity::find()
        .filter(users::Column::Email.eq("alice@example.com"))
        .one(&app.db_pool)
        .await
        .unwrap()
        .unwrap()
        .id
}

/// Every URL of team B, as a team admin of team A: each answers 403 or 404 and changes nothing.
async fn a_team_admin_of_one_team_cannot_reach_another(backend: Backend) {
    let app = spawn_app(backend).await;
    let op = ConsoleSession::operator(&app).await;
    let a = op.create_team("Team A").await;
    let b = op.create_team("Team B").await;
    let key_b = app.issue_key(b, &json!({ "name": "b-key" })).await;
    let key_a = app.issue_key(a, &json!({ "name": "a-key" })).await;
    let bob = op.add_user(&app, b, "bob@example.com", "admin").await;
    let _ = bob;
    let bob_id = {
        use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
        use switchyard_control_plane::entities::users;
        users::Entity::find()
            .filter(users::Column::Email.eq("bob@example.com"))
            .one(&app.db_pool)
            .await
            .unwrap()
            .unwrap()
            .id
    };
    let admin_a = op.add_user(&app, a, "ann@example.com", "admin").await;

    // Her own team works.
    admin_a.get(&format!("/console/teams/{a}")).await.assert_status(StatusCode::OK).assert_contains("a-key");
    admin_a.get(&format!("/console/usage?team_id={a}")).await.assert_status(StatusCode::OK);

    let gets = [
        format!("/console/teams/{b}"),
        format!("/console/usage?team_id={b}"),
        format!("/console/usage?team_id={b}&key_id={}", key_b.id),
        "/console/providers".to_owned(),
        "/console/providers/1".to_owned(),
        "/console/models".to_owned(),
        "/console/models/new".to_owned(),
        "/console/models/1".to_owned(),
        "/console/nodes".to_owned(),
        "/console/audit".to_owned(),
        "/console/users".to_owned(),
    ];
    for url in &gets {
        let page = admin_a.get(url).await;
        assert!(
            [StatusCode::FORBIDDEN, StatusCode::NOT_FOUND].contains(&page.status),
            "GET {url} answered {}: {}",
            page.status,
            page.body
        );
        assert!(!page.body.contains("b-key") && !page.body.contains(&key_b.prefix), "GET {url} leaked team B's key");
    }
    let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
        (format!("/console/teams/{b}/keys"), vec![("name", "stolen")]),
        (format!("/console/teams/{b}/keys/{}/revoke", key_b.id), vec![]),
        // Team B's key through team A's URL.
        (format!("/console/teams/{a}/keys/{}/revoke", key_b.id), vec![]),
        (format!("/console/teams/{b}/keys/{}/rotate", key_b.id), vec![("grace_until", "2030-01-01T00:00")]),
        (format!("/console/teams/{a}/keys/{}/rotate", key_b.id), vec![("grace_until", "2030-01-01T00:00")]),
        (format!("/console/teams/{b}/invites"), vec![("email", "mole@example.com"), ("team_role", "admin")]),
        (format!("/console/teams/{b}/members/{bob_id}"), vec![("role", "viewer")]),
        (format!("/console/teams/{b}/members/{bob_id}/remove"), vec![]),
        ("/console/teams".to_owned(), vec![("name", "Rogue")]),
        ("/console/providers".to_owned(), vec![("name", "rogue"), ("base_url", "http://127.0.0.1:1")]),
        ("/console/providers/1".to_owned(), vec![("name", "rogue"), ("base_url", "http://127.0.0.1:1")]),
        ("/console/providers/from-preset".to_owned(), vec![("preset", "deepseek"), ("api_key", "sk-rogue")]),
        ("/console/models".to_owned(), vec![("name", "rogue")]),
        ("/console/models/1".to_owned(), vec![("name", "rogue")]),
        ("/console/models/1/delete".to_owned(), vec![]),
        (format!("/console/users/{bob_id}/disable"), vec![]),
        ("/console/invites".to_owned(), vec![("email", "x@example.com"), ("platform_role", "operator")]),
    ];
    for (url, fields) in &posts {
        let page = admin_a.submit(url, fields).await;
        assert!(
            [StatusCode::FORBIDDEN, StatusCode::NOT_FOUND].contains(&page.status),
            "POST {url} answered {}: {}",
            page.status,
            page.body
        );
    }
    // Nothing of team B changed.
    let keys_b = app.list_keys(b).await;
    assert_eq!(keys_b.len(), 1);
    assert!(keys_b[0].revoked_at.is_none());
    assert_eq!(app.list_teams().await.len(), 2);
    bob.get(&format!("/console/teams/{b}")).await.assert_status(StatusCode::OK).assert_contains("bob@example.com");
    // Her own team's key is hers to revoke.
    admin_a
        .submit(&format!("/console/teams/{a}/keys/{}/revoke", key_a.id), &[])
        .await
        .assert_redirect_to(&format!("/console/teams/{a}"));
    assert!(app.list_keys(a).await[0].revoked_at.is_some());
}

async fn members_manage_their_own_keys_and_viewers_only_read(backend: Backend) {
    let app = spawn_app(backend).await;
    let op = ConsoleSession::operator(&app).await;
    let team = op.create_team("Gamma").await;
    let admin_key = app.issue_key(team, &json!({ "name": "admin-made" })).await;
    let member = op.add_user(&app, team, "mia@example.com", "member").await;
    let viewer = op.add_user(&app, team, "vic@example.com", "viewer").await;

    let shown = member.issue_key(team, "mia-key").await;
    shown.assert_status(StatusCode::OK);
    let secret = shown.secret();
    assert!(secret.starts_with("sk-sy-"), "not an API key: {secret}");
    // The secret is shown once: the team page lists the prefix only.
    let page = member.get(&format!("/console/teams/{team}")).await;
    page.assert_status(StatusCode::OK).assert_contains("mia-key");
    assert!(!page.body.contains(&secret));
    assert!(!page.body.contains("admin-made"), "members see their own keys only");
    member
        .submit(&format!("/console/teams/{team}/keys/{}/revoke", admin_key.id), &[])
        .await
        .assert_status(StatusCode::FORBIDDEN);
    // Members do not manage members.
    member
        .submit(&format!("/console/teams/{team}/invites"), &[("email", "x@example.com"), ("team_role", "admin")])
        .await
        .assert_status(StatusCode::FORBIDDEN);

    viewer.get(&format!("/console/teams/{team}")).await.assert_status(StatusCode::OK);
    viewer.issue_key(team, "nope").await.assert_status(StatusCode::FORBIDDEN);
    viewer.get(&format!("/console/usage?team_id={team}")).await.assert_status(StatusCode::OK);
    assert_eq!(app.list_keys(team).await.len(), 2);
}

async fn invite_links_work_once_and_only_until_accepted(backend: Backend) {
    let app = spawn_app(backend).await;
    let op = ConsoleSession::operator(&app).await;
    let team = op.create_team("Delta").await;
    let link = op.invite(team, "dan@example.com", "member").await;
    let path = link.strip_prefix(&app.address).unwrap().to_owned();
    let dan = ConsoleSession::new(&app);
    let form = dan.get(&path).await;
    form.assert_status(StatusCode::OK).assert_contains("dan@example.com");
    let csrf = form.csrf();
    // Mismatched passwords keep the invite usable.
    dan.post_raw(&path, &[("csrf", &csrf), ("password", "long enough pw"), ("confirm_password", "different pw!")])
        .await
        .assert_status(StatusCode::BAD_REQUEST)
        .assert_contains("differ");
    dan.post_raw(&path, &[("csrf", &csrf), ("password", "long enough pw"), ("confirm_password", "long enough pw")])
        .await
        .assert_redirect_to("/console");
    dan.get(&format!("/console/teams/{team}")).await.assert_status(StatusCode::OK);
    // Used: gone.
    ConsoleSession::new(&app).get(&path).await.assert_status(StatusCode::NOT_FOUND);
    ConsoleSession::new(&app).get("/console/invite/syinv-made-up").await.assert_status(StatusCode::NOT_FOUND);
}

async fn operators_run_the_platform_from_the_console(backend: Backend) {
    let app = spawn_app(backend).await;
    let op = ConsoleSession::operator(&app).await;
    let team = op.create_team("Research").await;

    // Provider: the credential is write-only.
    op.submit("/console/providers", &[("name", "upstream"), ("base_url", "not a url")])
        .await
        .assert_status(StatusCode::BAD_REQUEST)
        .assert_contains("not a url");
    op.submit(
        "/console/providers",
        &[("name", "upstream"), ("base_url", "http://127.0.0.1:9/v1"), ("api_key", "sk-upstream-secret")],
    )
    .await
    .assert_redirect_to("/console/providers");
    let provider = app.list_providers().await.remove(0);
    assert!(provider.has_credential);

    // A provider from a preset: the operator picks it and pastes the credential; a missing parameter is refused
    // with a clear message and the form keeps what was typed (never the key).
    let page = op.get("/console/providers").await;
    page.assert_status(StatusCode::OK).assert_contains("Azure OpenAI").assert_contains("DeepSeek");
    op.submit(
        "/console/providers/from-preset",
        &[("preset", "azure_openai"), ("name", "azure-east"), ("api_key", "az-secret-key"), ("params", "resource=r1")],
    )
    .await
    .assert_status(StatusCode::BAD_REQUEST)
    .assert_contains("deployment is required")
    .assert_contains("azure-east")
    .assert_contains("resource=r1");
    op.submit("/console/providers/from-preset", &[("preset", "deepseek"), ("api_key", "sk-deepseek-secret")])
        .await
        .assert_redirect_to("/console/providers");
    let deepseek = app.list_providers().await.into_iter().find(|p| p.name == "DeepSeek").unwrap();
    assert_eq!(deepseek.base_url, "https://api.deepseek.com/v1");
    assert!(deepseek.has_credential);
    let edit = op.get(&format!("/console/providers/{}", provider.id)).await;
    edit.assert_status(StatusCode::OK);
    assert!(!edit.body.contains("sk-upstream-secret"));
    let pid = provider.id.to_string();

    // Model: a bad price keeps what was typed and says what is wrong.
    let bad = op
        .submit(
            "/console/models",
            &[
                ("name", "chat-large"),
                ("input_price", "2.5"),
                ("output_price", "ten"),
                ("target-0-provider", &pid),
                ("target-0-upstream", "big-model"),
                ("target-0-weight", "3"),
            ],
        )
        .await;
    bad.assert_status(StatusCode::BAD_REQUEST).assert_contains("value=\"chat-large\"").assert_contains("value=\"ten\"");
    op.submit(
        "/console/models",
        &[
            ("name", "chat-large"),
            ("input_price", "2.5"),
            ("output_price", "10"),
            ("target-0-provider", &pid),
            ("target-0-upstream", "big-model"),
            ("target-0-weight", "3"),
            ("target-1-provider", &pid),
            ("target-1-upstream", "backup-model"),
            ("target-1-priority", "1"),
        ],
    )
    .await
    .assert_redirect_to("/console/models");
    let model = app.list_models().await.remove(0);
    assert_eq!((model.input_price_per_mtok, model.output_price_per_mtok), (2_500_000, 10_000_000));
    assert_eq!(model.targets.len(), 2);
    assert_eq!(model.targets[0].weight, 3);
    op.get("/console/models")
        .await
        .assert_status(StatusCode::OK)
        .assert_contains("$2.50")
        .assert_contains("backup-model");

    // Key: shown once, then listed by prefix; it is the team's key on the API too.
    let shown = op.issue_key(team, "ci").await;
    let secret = shown.secret();
    let keys = app.list_keys(team).await;
    assert!(secret.starts_with(&keys[0].prefix));

    // Usage, nodes and the audit log.
    let now = Utc::now();
    app.post_usage(&UsageBatch {
        node_id: "node-1".into(),
        records: vec![usage_record(team, keys[0].id, "chat-large", now, 1000, 500, 7_500)],
    })
    .await;
    app.poll_snapshot("node-1", 0, 0).await;
    op.get(&format!("/console/usage?team_id={team}")).await.assert_status(StatusCode::OK).assert_contains("1,500");
    op.get("/console").await.assert_status(StatusCode::OK).assert_contains("<svg").assert_contains("chat-large");
    op.get(&format!("/console/teams/{team}")).await.assert_status(StatusCode::OK).assert_contains("chat-large");
    op.get("/console/nodes").await.assert_status(StatusCode::OK).assert_contains("node-1");
    op.get("/console/audit")
        .await
        .assert_status(StatusCode::OK)
        .assert_contains("user:admin@localhost from 127.0.0.1")
        .assert_contains("model.create");
}

async fn personal_access_tokens_work_on_the_json_api(backend: Backend) {
    let app = spawn_app(backend).await;
    let op = ConsoleSession::operator(&app).await;
    let shown = op.submit("/console/account/tokens", &[("name", "laptop")]).await;
    shown.assert_status(StatusCode::OK);
    let token = shown.secret();
    let res = app.client.get(app.url("/api/v1/teams")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let account = op.get("/console/account").await;
    account.assert_contains("laptop");
    let id = {
        use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
        use switchyard_control_plane::entities::admin_tokens;
        admin_tokens::Entity::find()
            .filter(admin_tokens::Column::Name.eq("laptop"))
            .one(&app.db_pool)
            .await
            .unwrap()
            .unwrap()
            .id
    };
    op.submit(&format!("/console/account/tokens/{id}/revoke"), &[]).await.assert_redirect_to("/console/account");
    let res = app.client.get(app.url("/api/v1/teams")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

async fn finance_reads_every_team_but_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let op = ConsoleSession::operator(&app).await;
    let team = op.create_team("Epsilon").await;
    let csrf = op.csrf().await;
    let invite = op
        .post_raw(
            "/console/invites",
            &[("csrf", &csrf), ("email", "fin@example.com"), ("platform_role", "finance"), ("team_id", "")],
        )
        .await;
    invite.assert_status(StatusCode::OK);
    let fin = ConsoleSession::accept_invite(&app, &invite.secret(), "finance passphrase").await;
    fin.get("/console/teams").await.assert_status(StatusCode::OK).assert_contains("Epsilon");
    fin.get(&format!("/console/teams/{team}")).await.assert_status(StatusCode::OK);
    fin.get("/console/usage").await.assert_status(StatusCode::OK);
    fin.get("/console/models").await.assert_status(StatusCode::OK);
    fin.issue_key(team, "nope").await.assert_status(StatusCode::FORBIDDEN);
    fin.submit("/console/teams", &[("name", "nope")]).await.assert_status(StatusCode::FORBIDDEN);
    fin.get("/console/providers").await.assert_status(StatusCode::FORBIDDEN);
}

backend_tests!(
    login_sets_a_hardened_cookie_and_logout_revokes_the_session,
    forms_without_the_csrf_token_are_refused,
    repeated_login_failures_lock_the_address,
    password_change_and_disabling_end_sessions,
    a_team_admin_of_one_team_cannot_reach_another,
    members_manage_their_own_keys_and_viewers_only_read,
    invite_links_work_once_and_only_until_accepted,
    operators_run_the_platform_from_the_console,
    personal_access_tokens_work_on_the_json_api,
    finance_reads_every_team_but_changes_nothing,
);
