//! Key rotation with a grace period, end to end through a real node: the successor works at once, the old key
//! keeps working until the chosen time and is refused after it; the rotation is audited; the console rotates
//! the same way and shows the new secret once.

use std::time::Duration;

use chrono::{SubsecRound as _, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::console_helpers::ConsoleSession;
use crate::helpers::{Backend, expect_error, expect_json, spawn_app};
use crate::node::{chat_body, spawn_node, start_mock};

async fn the_old_key_works_until_the_grace_end_then_stops(backend: Backend) {
    let app = spawn_app(backend).await;
    let mock = start_mock().await;
    let tenant = app.setup_tenant(&mock.base_url(), "chat-small").await;
    app.put_limits(&format!("/keys/{}", tenant.key_id), &json!({ "rpm": 1000 })).await;
    let dir = tempfile::tempdir().unwrap();
    let node = spawn_node(&app, dir.path()).await;
    node.wait_for_config(&app).await;
    assert_eq!(node.chat(&tenant.key, &chat_body("chat-small", false)).await.status(), StatusCode::OK);

    let grace_until = Utc::now() + chrono::Duration::seconds(3);
    let res = app.api_post(&format!("/keys/{}/rotate", tenant.key_id), &json!({ "grace_until": grace_until })).await;
    let rotated: Value = expect_json(res, StatusCode::CREATED).await;
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, tenant.key);
    assert_eq!(rotated["name"], "test key");
    assert_eq!(rotated["team_id"], tenant.team.id);
    assert_eq!(rotated["previous"]["id"], tenant.key_id);
    let old_end: chrono::DateTime<Utc> = serde_json::from_value(rotated["previous"]["expires_at"].clone()).unwrap();
    assert_eq!(old_end, grace_until.trunc_subsecs(6));
    let new_id = rotated["id"].as_i64().unwrap();
    // The successor inherits the old key's limits.
    assert_eq!(app.get_limits(&format!("/keys/{new_id}")).await.limits.rpm, Some(1000));

    node.wait_for_config(&app).await;
    // Inside the grace period both secrets work.
    assert!(Utc::now() < grace_until, "the test machine is too slow for a 3 s grace period");
    assert_eq!(node.chat(&tenant.key, &chat_body("chat-small", false)).await.status(), StatusCode::OK);
    assert_eq!(node.chat(&new_key, &chat_body("chat-small", false)).await.status(), StatusCode::OK);

    // After the grace end the old key is refused by the node; nothing needed to be published for that.
    let left = (grace_until - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(50)).await;
    let refused = node.chat(&tenant.key, &chat_body("chat-small", false)).await;
    let body = expect_error(refused, StatusCode::UNAUTHORIZED).await;
    assert_eq!(body.error.code.as_deref(), Some("expired_api_key"));
    assert_eq!(node.chat(&new_key, &chat_body("chat-small", false)).await.status(), StatusCode::OK);

    // An expired key cannot be rotated again; the audit log names both keys.
    let again = app.api_post(&format!("/keys/{}/rotate", tenant.key_id), &json!({ "grace_until": Utc::now() })).await;
    expect_error(again, StatusCode::CONFLICT).await;
    let op = ConsoleSession::operator(&app).await;
    op.get("/console/audit").await.assert_status(StatusCode::OK).assert_contains("key.rotate");
    node.stop().await;
}

async fn rotation_refuses_bad_grace_periods(backend: Backend) {
    let app = spawn_app(backend).await;
    let team = app.create_team("Rot").await;
    let key = app.issue_key(team.id, &json!({ "name": "k" })).await;
    for (grace, why) in [
        (Utc::now() - chrono::Duration::hours(1), "in the past"),
        (Utc::now() + chrono::Duration::days(400), "too far"),
    ] {
        let res = app.api_post(&format!("/keys/{}/rotate", key.id), &json!({ "grace_until": grace })).await;
        let body = expect_error(res, StatusCode::BAD_REQUEST).await;
        assert_eq!(body.error.param.as_deref(), Some("grace_until"), "{why}");
    }
    let missing = app.api_post(&format!("/keys/{}/rotate", key.id), &json!({})).await;
    expect_error(missing, StatusCode::BAD_REQUEST).await;
    expect_error(
        app.api_post("/keys/999999/rotate", &json!({ "grace_until": Utc::now() })).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    // Nothing was issued by the refusals.
    assert_eq!(app.list_keys(team.id).await.len(), 1);
}

async fn the_console_rotates_a_key_and_shows_the_new_secret_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let op = ConsoleSession::operator(&app).await;
    let team = op.create_team("Console Rot").await;
    let member = op.add_user(&app, team, "mia@example.com", "member").await;
    member.issue_key(team, "mia-key").await.assert_status(StatusCode::OK);
    let key = app.list_keys(team).await.remove(0);
    let detail = member.get(&format!("/console/teams/{team}")).await;
    detail.assert_status(StatusCode::OK).assert_contains("Rotate");

    // A date that is not a date keeps the page, with a clear message.
    let bad = member.submit(&format!("/console/teams/{team}/keys/{}/rotate", key.id), &[("grace_until", "soon")]).await;
    bad.assert_status(StatusCode::BAD_REQUEST).assert_contains("date and time").assert_contains("value=\"soon\"");

    let grace = (Utc::now() + chrono::Duration::hours(2)).format("%Y-%m-%dT%H:%M").to_string();
    let shown =
        member.submit(&format!("/console/teams/{team}/keys/{}/rotate", key.id), &[("grace_until", &grace)]).await;
    shown.assert_status(StatusCode::OK).assert_contains("rotated").assert_contains(&key.prefix);
    let secret = shown.secret();
    assert!(secret.starts_with("sk-"), "{secret}");
    let keys = app.list_keys(team).await;
    assert_eq!(keys.len(), 2);
    let old = keys.iter().find(|k| k.id == key.id).unwrap();
    assert!(old.expires_at.is_some_and(|t| t > Utc::now() + chrono::Duration::minutes(100)));
    // The member owns the successor: it is listed for her and she may manage it.
    let page = member.get(&format!("/console/teams/{team}")).await;
    let successor = keys.iter().find(|k| k.id != key.id).unwrap();
    page.assert_contains(&successor.prefix);
}

backend_tests!(
    the_old_key_works_until_the_grace_end_then_stops,
    rotation_refuses_bad_grace_periods,
    the_console_rotates_a_key_and_shows_the_new_secret_once,
);
