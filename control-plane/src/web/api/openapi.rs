//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 description of the admin API, generated from the route table
//! ([`super::routes::ROUTES`]) that also registers the routes. Built once per process.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use actix_web::HttpResponse;
use actix_web::http::header::ContentType;
use serde_json::{Value, json};

use super::routes::{ROUTES, RouteDoc};

/// Where the admin API is mounted.
pub const BASE: &str = "/api/v1";

fn parameters(route: &RouteDoc) -> Vec<Value> {
    let path_params = route
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.split_once('}')).map(|(name, _)| name))
        .map(|name| {
            let kind = if name == "id" { "integer" } else { "string" };
            json!({ "name": name, "in": "path", "required": true, "schema": { "type": kind } })
        });
    let query_params =
        route.query.iter().map(|name| json!({ "name": name, "in": "query", "required": false, "schema": {} }));
    path_params.chain(query_params).collect()
}

fn operation(route: &RouteDoc) -> Value {
    let error = json!({ "$ref": "#/components/responses/Error" });
    let success = if route.status == 204 {
        json!({ "description": "done, no content" })
    } else {
        json!({ "description": "success", "content": { "application/json": { "schema": {} } } })
    };
    let mut op = json!({
        "operationId": route.operation_id,
        "summary": route.summary,
        "description": format!("Who may call: {}.", route.who),
        "parameters": parameters(route),
        "responses": {
            route.status.to_string(): success,
            "400": error, "401": error, "403": error, "404": error,
        },
    });
    if route.who == "anyone" {
        op["security"] = json!([]);
    }
    if !route.body.is_empty() {
        op["requestBody"] = json!({
            "required": true,
            "content": { "application/json": { "schema": { "title": route.body, "type": "object" } } },
        });
    }
    op
}

/// The document as JSON.
pub fn build() -> Value {
    let mut paths: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    for route in ROUTES {
        paths.entry(format!("{BASE}{}", route.path)).or_default().insert(route.method.to_owned(), operation(route));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Switchyard admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Bearer tokens: the bootstrap operator token or a personal access token created in the \
                console; every call acts with exactly the token user's role and teams. A team the caller cannot \
                see answers 404; a visible thing the caller's role may not change answers 403.",
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "responses": {
                "Error": {
                    "description": "OpenAI-shaped error",
                    "content": { "application/json": { "schema": {
                        "type": "object",
                        "required": ["error"],
                        "properties": { "error": { "type": "object", "properties": {
                            "message": { "type": "string" }, "type": { "type": "string" },
                            "param": { "type": ["string", "null"] }, "code": { "type": ["string", "null"] },
                        } } },
                    } } },
                },
            },
        },
        "security": [{ "bearer": [] }],
        "paths": paths,
    })
}

pub async fn document() -> HttpResponse {
    static BODY: OnceLock<String> = OnceLock::new();
    let body = BODY.get_or_init(|| build().to_string());
    HttpResponse::Ok().insert_header(ContentType::json()).body(body.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described_once_with_its_path_parameters() {
        let doc = build();
        let count: usize = doc["paths"].as_object().unwrap().values().map(|m| m.as_object().unwrap().len()).sum();
        assert_eq!(count, ROUTES.len(), "two routes share a method and path");
        let rotate = &doc["paths"]["/api/v1/keys/{id}/rotate"]["post"];
        assert_eq!(rotate["parameters"][0]["name"], "id");
        assert_eq!(rotate["requestBody"]["content"]["application/json"]["schema"]["title"], "Rotation");
    }
}
