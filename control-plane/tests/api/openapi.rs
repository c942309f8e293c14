//! The OpenAPI document served by the live control plane: it describes every registered admin route, and every
//! documented path and method answers (never 404 or 405) on the running server.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use switchyard_control_plane::web::api::routes::ROUTES;

use crate::helpers::{Backend, expect_json, spawn_app};

async fn the_served_document_matches_the_live_routes(backend: Backend) {
    let app = spawn_app(backend).await;
    // Served without a token, so tools can fetch it.
    let res = app.client.get(app.url("/api/v1/openapi.json")).send().await.unwrap();
    let doc: Value = expect_json(res, StatusCode::OK).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();

    // Every registered route is documented.
    for route in ROUTES {
        let op = &paths[&format!("/api/v1{}", route.path)][route.method];
        assert!(op.is_object(), "{} {} is not documented", route.method, route.path);
        assert_eq!(op["operationId"], route.operation_id);
    }

    // Every documented operation answers on the live server: never 404 (no such route) or 405.
    let mut operations = 0;
    for (path, methods) in paths {
        for (method, op) in methods.as_object().unwrap() {
            operations += 1;
            // Ids that do not exist give a domain 404 with code `not_found` and a message naming the thing;
            // a missing route gives "no such route". Both are 404, so tell them apart by the message.
            let concrete = path.replace("{id}", "1");
            let mut req = app
                .client
                .request(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(), app.url(&concrete))
                .bearer_auth(&app.operator_token);
            if op.get("requestBody").is_some() {
                req = req.json(&serde_json::json!({}));
            }
            let res = req.send().await.unwrap();
            let status = res.status();
            let body = res.text().await.unwrap();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(!body.contains("no such route"), "{method} {path} is documented but not served: {status} {body}");
        }
    }
    assert_eq!(operations, ROUTES.len());

    // And the check above can fail: an undocumented path is "no such route".
    let missing = app.api_get("/not-documented").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(missing.text().await.unwrap().contains("no such route"));
}

backend_tests!(the_served_document_matches_the_live_routes);
