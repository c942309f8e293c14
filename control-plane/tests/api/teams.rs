//! Teams: create, list, show; slugs are unique.

use reqwest::StatusCode;
use serde_json::json;
use switchyard_control_plane::domain::teams::Team;

use crate::helpers::{Backend, expect_error, expect_json, spawn_app};

async fn a_team_is_created_listed_and_shown(backend: Backend) {
    let app = spawn_app(backend).await;
    let team = app.create_team("Research & Development").await;
    assert_eq!(team.name, "Research & Development");
    assert_eq!(team.slug, "research-development");

    let shown: Team = expect_json(app.api_get(&format!("/teams/{}", team.id)).await, StatusCode::OK).await;
    assert_eq!(shown, team);
    assert_eq!(app.list_teams().await, vec![team]);
}

async fn slugs_are_unique_and_checked(backend: Backend) {
    let app = spawn_app(backend).await;
    app.api_post("/teams", &json!({ "name": "A", "slug": "alpha" })).await;
    let dup = app.api_post("/teams", &json!({ "name": "B", "slug": "alpha" })).await;
    let body = expect_error(dup, StatusCode::CONFLICT).await;
    assert!(body.error.message.contains("alpha"));

    let bad = app.api_post("/teams", &json!({ "name": "C", "slug": "Not A Slug" })).await;
    let body = expect_error(bad, StatusCode::BAD_REQUEST).await;
    assert_eq!(body.error.param.as_deref(), Some("slug"));

    let empty = app.api_post("/teams", &json!({ "name": "  " })).await;
    expect_error(empty, StatusCode::BAD_REQUEST).await;
}

async fn bad_bodies_and_missing_teams_are_reported(backend: Backend) {
    let app = spawn_app(backend).await;
    let res = app
        .client
        .post(app.url("/api/v1/teams"))
        .bearer_auth(&app.operator_token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::BAD_REQUEST).await;

    let missing_field = app.api_post("/teams", &json!({ "slug": "x" })).await;
    expect_error(missing_field, StatusCode::BAD_REQUEST).await;

    expect_error(app.api_get("/teams/999").await, StatusCode::NOT_FOUND).await;
}

backend_tests!(
    a_team_is_created_listed_and_shown,
    slugs_are_unique_and_checked,
    bad_bodies_and_missing_teams_are_reported,
);
