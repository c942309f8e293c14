//! Personal access tokens for every role on the admin API: a token acts with exactly its creator's platform role
//! and team scope. A team admin's token is refused on every route of the route table when aimed at another
//! team (404 for what it cannot see, 403 for what its role may not do) — the list comes from the same table that
//! registers the routes, so a new route cannot escape this test.

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard_control_plane::domain::keys::Key;
use switchyard_control_plane::domain::teams::Team;
use switchyard_control_plane::web::api::routes::ROUTES;

use crate::console_helpers::ConsoleSession;
use crate::helpers::{Backend, TestApp, expect_json, spawn_app};

/// A personal access token created in the console by `session`.
async fn token_of(session: &ConsoleSession, name: &str) -> String {
    let shown = session.submit("/console/account/tokens", &[("name", name)]).await;
    shown.assert_status(StatusCode::OK);
    shown.secret()
}

async fn call(app: &TestApp, token: &str, method: &str, path: &str, body: Option<&Value>) -> reqwest::Response {
    let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let mut req = app.client.request(method, app.url(&format!("/api/v1{path}"))).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(b);
    }
    req.send().await.unwrap()
}

/// A body each route's extractor accepts, so a refusal comes from the permission check, not from parsing.
fn body_for(type_name: &str) -> Option<Value> {
    match type_name {
        "" => None,
        "NewTeam" => Some(json!({ "name": "Rogue" })),
        "TeamUpdate" => Some(json!({ "markup_bp": -5_000 })),
        "NewKey" => Some(json!({ "name": "stolen" })),
        "Rotation" => Some(json!({ "grace_until": Utc::now() + chrono::Duration::hours(1) })),
        "Limits" => Some(json!({ "rpm": 1 })),
        "ProviderInput" => {
            Some(json!({ "name": "rogue", "kind": "openai_compatible", "base_url": "http://127.0.0.1:9" }))
        }
        "ModelInput" => Some(json!({ "name": "rogue" })),
        "NewPriceVersion" => Some(json!({
            "effective_from": Utc::now(), "input_per_mtok": 1, "output_per_mtok": 1
        })),
        "FromPreset" => Some(json!({ "preset": "deepseek", "api_key": "sk-rogue" })),
        other => panic!("no test body for `{other}`: add one"),
    }
}

async fn a_team_admins_token_cannot_touch_another_team_on_any_route(backend: Backend) {
    let app = spawn_app(backend).await;
    let op = ConsoleSession::operator(&app).await;
    let a = op.create_team("Team A").await;
    let b = op.create_team("Team B").await;
    let key_b = app.issue_key(b, &json!({ "name": "b-key" })).await;
    app.put_limits(&format!("/teams/{b}"), &json!({ "rpm": 50 })).await;
    let provider = app.create_provider("p", "http://127.0.0.1:9/v1", Some("sk-upstream-secret")).await;
    let model = app.create_simple_model("m", provider.id, "m", 1, 1).await;
    let ann = op.add_user(&app, a, "ann@example.com", "admin").await;
    let token = token_of(&ann, "ann-cli").await;

    for route in ROUTES {
        let path = route
            .path
            .replace("/teams/{id}", &format!("/teams/{b}"))
            .replace("/keys/{id}", &format!("/keys/{}", key_b.id))
            .replace("/providers/{id}", &format!("/providers/{}", provider.id))
            .replace("/models/{id}", &format!("/models/{}", model.id))
            .replace("{month}", "2026-11");
        assert!(!path.contains('{'), "no test id for {}", route.path);
        // Routes that read across teams are aimed at team B explicitly.
        let path = if route.query.contains(&"team_id") { format!("{path}?team_id={b}") } else { path };
        let res = call(&app, &token, route.method, &path, body_for(route.body).as_ref()).await;
        let status = res.status();
        let text = res.text().await.unwrap();
        match (route.method, route.path) {
            ("get", "/openapi.json") => assert_eq!(status, StatusCode::OK),
            // Lists are filtered to the caller's teams.
            ("get", "/teams") => {
                let teams: Vec<Team> = serde_json::from_str(&text).unwrap();
                assert_eq!(teams.iter().map(|t| t.id).collect::<Vec<_>>(), vec![a], "{text}");
            }
            _ => assert!(
                [StatusCode::FORBIDDEN, StatusCode::NOT_FOUND].contains(&status),
                "{} {path} answered {status}: {text}",
                route.method
            ),
        }
        assert!(
            !text.contains("b-key") && !text.contains("sk-upstream-secret"),
            "{} {path} leaked: {text}",
            route.method
        );
    }
    // Reading across every team needs a team.
    for path in ["/usage", "/alerts"] {
        assert_eq!(call(&app, &token, "get", path, None).await.status(), StatusCode::BAD_REQUEST, "{path}");
    }

    // Nothing of team B changed, and nothing was created.
    let keys_b = app.list_keys(b).await;
    assert_eq!(keys_b.len(), 1);
    assert!(keys_b[0].revoked_at.is_none() && keys_b[0].expires_at.is_none());
    assert_eq!(app.get_limits(&format!("/teams/{b}")).await.limits.rpm, Some(50));
    let team_b: Value = expect_json(app.api_get(&format!("/teams/{b}")).await, StatusCode::OK).await;
    assert_eq!(team_b["markup_bp"], 0, "{team_b}");
    let invoices: Vec<Value> = expect_json(app.api_get("/invoices?month=2026-11").await, StatusCode::OK).await;
    assert!(invoices.iter().all(|i| i["status"] == "draft"), "{invoices:?}");
    assert_eq!(app.list_teams().await.len(), 2);
    assert_eq!(app.list_models().await.len(), 1);
    assert_eq!(app.list_providers().await.len(), 1);

    // Her own team works with the same token, as far as her role goes.
    let get_a = call(&app, &token, "get", &format!("/teams/{a}"), None).await;
    assert_eq!(get_a.status(), StatusCode::OK);
    let issued: Value = expect_json(
        call(&app, &token, "post", &format!("/teams/{a}/keys"), Some(&json!({ "name": "a1" }))).await,
        StatusCode::CREATED,
    )
    .await;
    let key_a = issued["id"].as_i64().unwrap();
    let rotate = json!({ "grace_until": Utc::now() + chrono::Duration::hours(1) });
    let rotated = call(&app, &token, "post", &format!("/keys/{key_a}/rotate"), Some(&rotate)).await;
    assert_eq!(rotated.status(), StatusCode::CREATED);
    for path in [
        format!("/teams/{a}/keys"),
        format!("/teams/{a}/limits"),
        format!("/usage?team_id={a}"),
        format!("/alerts?team_id={a}"),
        format!("/teams/{a}/invoices/2026-11"),
        format!("/teams/{a}/invoices/2026-11.csv"),
    ] {
        assert_eq!(call(&app, &token, "get", &path, None).await.status(), StatusCode::OK, "{path}");
    }
    // Limits are what the operator grants.
    let put = call(&app, &token, "put", &format!("/teams/{a}/limits"), Some(&json!({ "rpm": 1_000_000 }))).await;
    assert_eq!(put.status(), StatusCode::FORBIDDEN);
}

async fn members_finance_and_disabled_users_get_exactly_their_role(backend: Backend) {
    let app = spawn_app(backend).await;
    let op = ConsoleSession::operator(&app).await;
    let team = op.create_team("Crew").await;
    let admin_key = app.issue_key(team, &json!({ "name": "admin-key" })).await;
    let mia = op.add_user(&app, team, "mia@example.com", "member").await;
    let mia_token = token_of(&mia, "mia").await;

    // A member issues keys and sees only her own; she cannot revoke one she did not issue.
    let own: Value = expect_json(
        call(&app, &mia_token, "post", &format!("/teams/{team}/keys"), Some(&json!({ "name": "mine" }))).await,
        StatusCode::CREATED,
    )
    .await;
    let listed: Vec<Key> =
        expect_json(call(&app, &mia_token, "get", &format!("/teams/{team}/keys"), None).await, StatusCode::OK).await;
    assert_eq!(listed.iter().map(|k| k.id).collect::<Vec<_>>(), vec![own["id"].as_i64().unwrap()]);
    let revoke = call(&app, &mia_token, "post", &format!("/keys/{}/revoke", admin_key.id), None).await;
    assert_eq!(revoke.status(), StatusCode::FORBIDDEN);
    let revoke_own = call(&app, &mia_token, "post", &format!("/keys/{}/revoke", own["id"]), None).await;
    assert_eq!(revoke_own.status(), StatusCode::OK);
    assert_eq!(
        call(&app, &mia_token, "post", "/teams", Some(&json!({ "name": "x" }))).await.status(),
        StatusCode::FORBIDDEN
    );

    // Finance reads every team's usage and the price list, and changes nothing.
    let csrf = op.csrf().await;
    let invite = op
        .post_raw(
            "/console/invites",
            &[("csrf", &csrf), ("email", "fin@example.com"), ("platform_role", "finance"), ("team_id", "")],
        )
        .await;
    let fin = ConsoleSession::accept_invite(&app, &invite.secret(), "finance passphrase").await;
    let fin_token = token_of(&fin, "fin").await;
    for path in ["/usage", "/models", "/teams", "/alerts", "/reconciliation?month=2026-11"] {
        assert_eq!(call(&app, &fin_token, "get", path, None).await.status(), StatusCode::OK, "{path}");
    }
    let create = call(&app, &fin_token, "post", &format!("/teams/{team}/keys"), Some(&json!({ "name": "f" }))).await;
    assert_eq!(create.status(), StatusCode::FORBIDDEN);
    assert_eq!(call(&app, &fin_token, "get", "/providers", None).await.status(), StatusCode::FORBIDDEN);

    // Disabling the user stops her token at once.
    let mia_id = {
        use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
        use switchyard_control_plane::entities::users;
        users::Entity::find()
            .filter(users::Column::Email.eq("mia@example.com"))
            .one(&app.db_pool)
            .await
            .unwrap()
            .unwrap()
            .id
    };
    op.submit(&format!("/console/users/{mia_id}/disable"), &[]).await;
    assert_eq!(call(&app, &mia_token, "get", "/teams", None).await.status(), StatusCode::UNAUTHORIZED);
}

backend_tests!(
    a_team_admins_token_cannot_touch_another_team_on_any_route,
    members_finance_and_disabled_users_get_exactly_their_role,
);
