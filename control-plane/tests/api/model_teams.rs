//! Which teams may use each model: `allowed_teams` on the model (admin API and the models editor), shipped in
//! the snapshot and enforced by the node — a key of another team is told the model does not exist, and
//! `/v1/models` does not list it.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::console_helpers::ConsoleSession;
use crate::helpers::{Backend, expect_error, expect_json, spawn_app};
use crate::node::{TestNode, chat_body, spawn_node, start_mock};

async fn model_ids(node: &TestNode, key: &str) -> Vec<String> {
    let res = reqwest::Client::new().get(format!("{}/v1/models", node.address)).bearer_auth(key).send().await.unwrap();
    let list: Value = expect_json(res, StatusCode::OK).await;
    list["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect()
}

async fn a_model_restricted_to_one_team_does_not_exist_for_others(backend: Backend) {
    let app = spawn_app(backend).await;
    let mock = start_mock().await;
    let a = app.setup_tenant(&mock.base_url(), "open-model").await;
    let b = app.create_team("Team B").await;
    let key_b = app.issue_key(b.id, &json!({ "name": "b" })).await;
    let model = app
        .create_model(&json!({
            "name": "a-only",
            "input_price_per_mtok": 1, "output_price_per_mtok": 1,
            "targets": [{ "provider_id": a.provider.id, "upstream_model": "m" }],
            "allowed_teams": [a.team.id],
        }))
        .await;
    assert_eq!(model.allowed_teams, Some(vec![a.team.id]));
    assert_eq!(
        app.latest_snapshot().await.models.iter().find(|m| m.name == "a-only").unwrap().allowed_teams,
        Some(vec![a.team.id])
    );

    let dir = tempfile::tempdir().unwrap();
    let node = spawn_node(&app, dir.path()).await;
    node.wait_for_config(&app).await;
    assert_eq!(node.chat(&a.key, &chat_body("a-only", false)).await.status(), StatusCode::OK);
    let refused = expect_error(node.chat(&key_b.key, &chat_body("a-only", false)).await, StatusCode::NOT_FOUND).await;
    assert_eq!(refused.error.code.as_deref(), Some("model_not_found"));
    // Exactly the answer for a model that does not exist at all.
    let unknown = expect_error(node.chat(&key_b.key, &chat_body("no-such", false)).await, StatusCode::NOT_FOUND).await;
    assert_eq!(refused.error.kind, unknown.error.kind);
    assert_eq!(model_ids(&node, &a.key).await, vec!["a-only", "open-model"]);
    assert_eq!(model_ids(&node, &key_b.key).await, vec!["open-model"]);
    let get = reqwest::Client::new()
        .get(format!("{}/v1/models/a-only", node.address))
        .bearer_auth(&key_b.key)
        .send()
        .await
        .unwrap();
    expect_error(get, StatusCode::NOT_FOUND).await;

    // Opening the model to every team again (no `allowed_teams`) lets B in.
    let body = json!({
        "name": "a-only",
        "input_price_per_mtok": 1, "output_price_per_mtok": 1,
        "targets": [{ "provider_id": a.provider.id, "upstream_model": "m" }],
    });
    let opened: Value = expect_json(app.api_put(&format!("/models/{}", model.id), &body).await, StatusCode::OK).await;
    assert!(opened["allowed_teams"].is_null());
    node.wait_for_config(&app).await;
    assert_eq!(node.chat(&key_b.key, &chat_body("a-only", false)).await.status(), StatusCode::OK);
    node.stop().await;
}

async fn allowed_teams_are_validated_and_edited_in_the_console(backend: Backend) {
    let app = spawn_app(backend).await;
    let provider = app.create_provider("p", "http://127.0.0.1:9/v1", None).await;
    let base = json!({
        "name": "m", "input_price_per_mtok": 1, "output_price_per_mtok": 1,
        "targets": [{ "provider_id": provider.id, "upstream_model": "m" }],
    });
    for (teams, why) in [(json!([]), "empty"), (json!([424242]), "unknown team")] {
        let mut body = base.clone();
        body["allowed_teams"] = teams;
        let err = expect_error(app.api_post("/models", &body).await, StatusCode::BAD_REQUEST).await;
        assert_eq!(err.error.param.as_deref(), Some("allowed_teams"), "{why}");
    }

    let op = ConsoleSession::operator(&app).await;
    let alpha = op.create_team("Alpha").await;
    let _beta = op.create_team("Beta").await;
    let form = op.get("/console/models/new").await;
    form.assert_status(StatusCode::OK).assert_contains("Teams that may use this model").assert_contains("Beta");
    let alpha_s = alpha.to_string();
    let pid = provider.id.to_string();
    let saved = op
        .submit(
            "/console/models",
            &[
                ("name", "alpha-model"),
                ("input_price", "1"),
                ("output_price", "2"),
                ("target-0-provider", &pid),
                ("target-0-upstream", "up"),
                ("team", &alpha_s),
            ],
        )
        .await;
    saved.assert_redirect_to("/console/models");
    let model = app.list_models().await.into_iter().find(|m| m.name == "alpha-model").unwrap();
    assert_eq!(model.allowed_teams, Some(vec![alpha]));
    op.get("/console/models").await.assert_contains("Alpha");
    let edit = op.get(&format!("/console/models/{}", model.id)).await;
    assert!(edit.body.contains(&format!("value=\"{alpha}\" checked")), "the team is not ticked: {}", edit.body);

    // A refused save keeps what was typed and ticked.
    let refused = op
        .submit(
            &format!("/console/models/{}", model.id),
            &[("name", "has space"), ("input_price", "1"), ("output_price", "2"), ("team", &alpha_s)],
        )
        .await;
    refused.assert_status(StatusCode::BAD_REQUEST).assert_contains("has space");
    assert!(refused.body.contains(&format!("value=\"{alpha}\" checked")));
}

backend_tests!(
    a_model_restricted_to_one_team_does_not_exist_for_others,
    allowed_teams_are_validated_and_edited_in_the_console,
);
