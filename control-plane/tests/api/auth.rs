//! Who may call what: operator tokens on the admin API, the node token on the node API.

use reqwest::StatusCode;

use crate::helpers::{Backend, expect_error, spawn_app};

async fn health_needs_no_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "ok");
}

async fn the_bootstrap_token_works_and_others_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(app.api_get("/teams").await.status(), StatusCode::OK);

    let wrong = app.client.get(app.url("/api/v1/teams")).bearer_auth("syop-not-a-real-token").send().await.unwrap();
    let body = expect_error(wrong, StatusCode::UNAUTHORIZED).await;
    assert_eq!(body.error.kind, "invalid_request_error");
    assert_eq!(body.error.code.as_deref(), Some("invalid_api_key"));

    let missing = app.client.get(app.url("/api/v1/teams")).send().await.unwrap();
    expect_error(missing, StatusCode::UNAUTHORIZED).await;

    // The node token is not an operator token.
    let node = app.client.get(app.url("/api/v1/teams")).bearer_auth(&app.node_token).send().await.unwrap();
    expect_error(node, StatusCode::UNAUTHORIZED).await;
}

async fn the_node_api_needs_the_node_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let with_operator = app.poll_snapshot_with_token(&app.operator_token, "n1", 0, 0).await;
    assert_eq!(with_operator.status, StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = serde_json::from_slice(&with_operator.body).unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");

    let usage = app
        .client
        .post(app.url("/node/v1/usage"))
        .bearer_auth("wrong")
        .json(&serde_json::json!({ "node_id": "n1", "records": [] }))
        .send()
        .await
        .unwrap();
    expect_error(usage, StatusCode::UNAUTHORIZED).await;
}

async fn unknown_routes_answer_openai_shaped_404(backend: Backend) {
    let app = spawn_app(backend).await;
    expect_error(app.api_get("/nope").await, StatusCode::NOT_FOUND).await;
    expect_error(app.api_get("/teams/not-a-number").await, StatusCode::NOT_FOUND).await;
}

backend_tests!(
    health_needs_no_token,
    the_bootstrap_token_works_and_others_are_refused,
    the_node_api_needs_the_node_token,
    unknown_routes_answer_openai_shaped_404,
);
