//! Models: priced, routed to existing providers, replaceable and deletable.

use reqwest::StatusCode;
use serde_json::json;
use switchyard_control_plane::domain::models::Model;

use crate::helpers::{Backend, expect_error, expect_json, spawn_app};

async fn a_model_is_created_with_its_targets(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.create_provider("a", "http://a.example/v1", None).await;
    let b = app.create_provider("b", "http://b.example/v1", None).await;
    let model = app
        .create_model(&json!({
            "name": "gpt-4o",
            "input_price_per_mtok": 2_500_000,
            "output_price_per_mtok": 10_000_000,
            "targets": [
                { "provider_id": b.id, "upstream_model": "gpt-4o-backup", "priority": 1 },
                { "provider_id": a.id, "upstream_model": "gpt-4o-2024-08-06", "weight": 3 },
            ],
        }))
        .await;
    assert_eq!(model.name, "gpt-4o");
    assert_eq!(model.input_price_per_mtok, 2_500_000);
    assert_eq!(model.targets.len(), 2);
    // Lowest priority first; defaults filled in.
    assert_eq!(model.targets[0].provider_id, a.id);
    assert_eq!(model.targets[0].weight, 3);
    assert_eq!(model.targets[0].priority, 0);
    assert_eq!(model.targets[1].weight, 1);
    assert_eq!(app.list_models().await, vec![model]);
}

async fn a_model_without_price_targets_or_known_provider_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let p = app.create_provider("a", "http://a.example/v1", None).await;
    let target = json!([{ "provider_id": p.id, "upstream_model": "m" }]);

    let cases = [
        (json!({ "name": "m", "output_price_per_mtok": 1, "targets": target }), "input_price_per_mtok"),
        (json!({ "name": "m", "input_price_per_mtok": 1, "targets": target }), "output_price_per_mtok"),
        (
            json!({ "name": "m", "input_price_per_mtok": -1, "output_price_per_mtok": 1, "targets": target }),
            "input_price_per_mtok",
        ),
        (json!({ "name": "m", "input_price_per_mtok": 1, "output_price_per_mtok": 1, "targets": [] }), "targets"),
        (json!({ "name": "m", "input_price_per_mtok": 1, "output_price_per_mtok": 1 }), "targets"),
        (
            json!({ "name": "m", "input_price_per_mtok": 1, "output_price_per_mtok": 1,
                    "targets": [{ "provider_id": 999, "upstream_model": "m" }] }),
            "targets[0].provider_id",
        ),
        (
            json!({ "name": "m", "input_price_per_mtok": 1, "output_price_per_mtok": 1,
                    "targets": [{ "provider_id": p.id, "upstream_model": "m", "weight": 0 }] }),
            "targets[0].weight",
        ),
    ];
    for (body, param) in cases {
        let res = app.api_post("/models", &body).await;
        let err = expect_error(res, StatusCode::BAD_REQUEST).await;
        assert_eq!(err.error.param.as_deref(), Some(param), "body: {body}");
    }
    let fractional = app
        .api_post(
            "/models",
            &json!({ "name": "m", "input_price_per_mtok": 1.5, "output_price_per_mtok": 1, "targets": target }),
        )
        .await;
    expect_error(fractional, StatusCode::BAD_REQUEST).await;
    assert!(app.list_models().await.is_empty());
}

async fn a_model_is_replaced_and_deleted(backend: Backend) {
    let app = spawn_app(backend).await;
    let p = app.create_provider("a", "http://a.example/v1", None).await;
    let model = app.create_simple_model("m", p.id, "up-1", 10, 20).await;
    app.create_simple_model("taken", p.id, "up", 1, 1).await;

    let replaced: Model = expect_json(
        app.api_put(
            &format!("/models/{}", model.id),
            &json!({ "name": "m2", "input_price_per_mtok": 11, "output_price_per_mtok": 22,
                     "targets": [{ "provider_id": p.id, "upstream_model": "up-2" }] }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(replaced.id, model.id);
    assert_eq!(replaced.name, "m2");
    assert_eq!(replaced.output_price_per_mtok, 22);
    assert_eq!(replaced.targets.len(), 1);
    assert_eq!(replaced.targets[0].upstream_model, "up-2");

    let clash = app
        .api_put(
            &format!("/models/{}", model.id),
            &json!({ "name": "taken", "input_price_per_mtok": 1, "output_price_per_mtok": 1,
                     "targets": [{ "provider_id": p.id, "upstream_model": "x" }] }),
        )
        .await;
    expect_error(clash, StatusCode::CONFLICT).await;
    let dup = app
        .api_post(
            "/models",
            &json!({ "name": "taken", "input_price_per_mtok": 1, "output_price_per_mtok": 1,
                     "targets": [{ "provider_id": p.id, "upstream_model": "x" }] }),
        )
        .await;
    expect_error(dup, StatusCode::CONFLICT).await;

    let deleted = app.api_delete(&format!("/models/{}", model.id)).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let again = app.api_delete(&format!("/models/{}", model.id)).await;
    expect_error(again, StatusCode::NOT_FOUND).await;
    let names: Vec<String> = app.list_models().await.into_iter().map(|m| m.name).collect();
    assert_eq!(names, vec!["taken".to_owned()]);
}

backend_tests!(
    a_model_is_created_with_its_targets,
    a_model_without_price_targets_or_known_provider_is_refused,
    a_model_is_replaced_and_deleted,
);
