//! Team API keys: the plaintext is shown once, stored as a hash, and revocation is visible.

use reqwest::StatusCode;
use sea_orm::EntityTrait as _;
use serde_json::json;
use switchyard_control_plane::entities::api_keys;
use switchyard_shared::KeyHash;
use switchyard_shared::secret::{API_KEY_PREFIX, VISIBLE_PREFIX_LEN};

use crate::helpers::{Backend, expect_error, spawn_app};

async fn the_plaintext_key_appears_once_and_only_its_hash_is_stored(backend: Backend) {
    let app = spawn_app(backend).await;
    let team = app.create_team("research").await;
    let issued = app
        .issue_key(
            team.id,
            &json!({ "name": "ci", "allowed_models": ["gpt-4o"], "expires_at": "2999-01-01T00:00:00Z" }),
        )
        .await;
    assert!(issued.key.starts_with(API_KEY_PREFIX));
    assert_eq!(issued.prefix, &issued.key[..VISIBLE_PREFIX_LEN]);
    assert_eq!(issued.team_id, team.id);
    assert_eq!(issued.name, "ci");
    assert_eq!(issued.allowed_models, Some(vec!["gpt-4o".to_owned()]));
    assert!(issued.expires_at.is_some());

    let listed = app.api_get(&format!("/teams/{}/keys", team.id)).await;
    assert_eq!(listed.status(), StatusCode::OK);
    let text = listed.text().await.unwrap();
    assert!(!text.contains(&issued.key), "a list must never show the secret");
    let keys: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].get("key").is_none());
    assert!(keys[0]["revoked_at"].is_null());

    let rows = api_keys::Entity::find().all(&app.db_pool).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].hash, KeyHash::of(&issued.key).to_hex());
    assert!(!format!("{:?}", rows[0]).contains(&issued.key));
}

async fn revoking_a_key_is_visible_and_idempotent(backend: Backend) {
    let app = spawn_app(backend).await;
    let team = app.create_team("research").await;
    let issued = app.issue_key(team.id, &json!({ "name": "ci" })).await;
    let revoked = app.revoke_key(issued.id).await;
    let at = revoked.revoked_at.expect("revoked_at is set");
    assert_eq!(app.revoke_key(issued.id).await.revoked_at, Some(at));
    let keys = app.list_keys(team.id).await;
    assert_eq!(keys[0].revoked_at, Some(at));

    let missing = app.api_post("/keys/999/revoke", &json!({})).await;
    expect_error(missing, StatusCode::NOT_FOUND).await;
}

async fn key_requests_are_validated(backend: Backend) {
    let app = spawn_app(backend).await;
    let team = app.create_team("research").await;
    let unknown_team = app.api_post("/teams/999/keys", &json!({ "name": "x" })).await;
    expect_error(unknown_team, StatusCode::NOT_FOUND).await;
    expect_error(app.api_get("/teams/999/keys").await, StatusCode::NOT_FOUND).await;

    let path = format!("/teams/{}/keys", team.id);
    let empty_models = app.api_post(&path, &json!({ "name": "x", "allowed_models": [] })).await;
    let body = expect_error(empty_models, StatusCode::BAD_REQUEST).await;
    assert_eq!(body.error.param.as_deref(), Some("allowed_models"));

    let past = app.api_post(&path, &json!({ "name": "x", "expires_at": "2001-01-01T00:00:00Z" })).await;
    let body = expect_error(past, StatusCode::BAD_REQUEST).await;
    assert_eq!(body.error.param.as_deref(), Some("expires_at"));

    let no_name = app.api_post(&path, &json!({ "name": "" })).await;
    expect_error(no_name, StatusCode::BAD_REQUEST).await;
}

backend_tests!(
    the_plaintext_key_appears_once_and_only_its_hash_is_stored,
    revoking_a_key_is_visible_and_idempotent,
    key_requests_are_validated,
);
