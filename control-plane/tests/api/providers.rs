//! Providers: the credential is encrypted at rest and never answered back.

use reqwest::StatusCode;
use sea_orm::EntityTrait as _;
use serde_json::json;
use switchyard_control_plane::crypto::Cipher;
use switchyard_control_plane::domain::providers::Provider;
use switchyard_control_plane::entities::providers;

use crate::helpers::{Backend, expect_error, expect_json, spawn_app};

const SECRET: &str = "sk-upstream-very-secret-value";

async fn the_credential_is_encrypted_and_never_returned(backend: Backend) {
    let app = spawn_app(backend).await;
    let res = app
        .api_post(
            "/providers",
            &json!({ "name": "openai", "base_url": "https://api.openai.com/v1/", "api_key": SECRET }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let text = res.text().await.unwrap();
    assert!(!text.contains(SECRET));
    let created: Provider = serde_json::from_str(&text).unwrap();
    assert!(created.has_credential);
    assert_eq!(created.base_url, "https://api.openai.com/v1");

    let listed = app.api_get("/providers").await.text().await.unwrap();
    assert!(!listed.contains(SECRET));

    let row = providers::Entity::find_by_id(created.id).one(&app.db_pool).await.unwrap().unwrap();
    let stored = row.credential_ciphertext.expect("a ciphertext is stored");
    assert_ne!(stored, SECRET);
    assert!(!stored.contains(SECRET));
    let cipher = Cipher::from_base64_key(&app.encryption_key).unwrap();
    assert_eq!(cipher.decrypt(&stored).unwrap(), SECRET);
}

async fn an_update_without_api_key_keeps_the_credential(backend: Backend) {
    let app = spawn_app(backend).await;
    let p = app.create_provider("openai", "https://api.openai.com/v1", Some(SECRET)).await;
    let updated: Provider = expect_json(
        app.api_put(
            &format!("/providers/{}", p.id),
            &json!({ "name": "openai-eu", "base_url": "https://eu.example.com/v1" }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(updated.name, "openai-eu");
    assert!(updated.has_credential);
    let row = providers::Entity::find_by_id(p.id).one(&app.db_pool).await.unwrap().unwrap();
    let cipher = Cipher::from_base64_key(&app.encryption_key).unwrap();
    assert_eq!(cipher.decrypt(row.credential_ciphertext.as_deref().unwrap()).unwrap(), SECRET);

    let cleared: Provider = expect_json(
        app.api_put(
            &format!("/providers/{}", p.id),
            &json!({ "name": "openai-eu", "base_url": "https://eu.example.com/v1", "api_key": "" }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert!(!cleared.has_credential);

    let missing = app.api_put("/providers/999", &json!({ "name": "x", "base_url": "http://x" })).await;
    expect_error(missing, StatusCode::NOT_FOUND).await;
}

async fn provider_requests_are_validated(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_provider("openai", "https://api.openai.com/v1", None).await;
    let dup = app.api_post("/providers", &json!({ "name": "openai", "base_url": "http://x" })).await;
    expect_error(dup, StatusCode::CONFLICT).await;

    let kind =
        app.api_post("/providers", &json!({ "name": "x", "kind": "carrier_pigeon", "base_url": "http://x" })).await;
    let body = expect_error(kind, StatusCode::BAD_REQUEST).await;
    assert_eq!(body.error.param.as_deref(), Some("kind"));

    let url = app.api_post("/providers", &json!({ "name": "x", "base_url": "api.openai.com" })).await;
    let body = expect_error(url, StatusCode::BAD_REQUEST).await;
    assert_eq!(body.error.param.as_deref(), Some("base_url"));
    assert_eq!(app.list_providers().await.len(), 1);
}

backend_tests!(
    the_credential_is_encrypted_and_never_returned,
    an_update_without_api_key_keeps_the_credential,
    provider_requests_are_validated,
);
