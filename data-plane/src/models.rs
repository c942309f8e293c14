//! `GET /v1/models` and `GET /v1/models/{id}`: the models the calling key may use, in OpenAI's list format.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use crate::error::ProxyError;
use crate::proxy::{error_response, request_id};
use crate::server::AppState;

#[derive(Serialize)]
struct ModelObject<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    owned_by: &'static str,
}

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<ModelObject<'a>>,
}

fn model(id: &str, created: i64) -> ModelObject<'_> {
    ModelObject { id, object: "model", created, owned_by: "switchyard" }
}

pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let catalog = state.snapshots.load_full();
    let key = match crate::proxy::caller(&req, &state, &catalog) {
        Ok(k) => k,
        Err(e) => return error_response(&e, &request_id(&req)),
    };
    let created = catalog.created_at.timestamp();
    let list = ModelList { object: "list", data: catalog.models_for(key).map(|id| model(id, created)).collect() };
    json(&list)
}

pub async fn get(req: HttpRequest, id: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let catalog = state.snapshots.load_full();
    let key = match crate::proxy::caller(&req, &state, &catalog) {
        Ok(k) => k,
        Err(e) => return error_response(&e, &request_id(&req)),
    };
    let id = id.into_inner();
    // A model the key may not use is reported exactly like one that does not exist.
    if catalog.model_for(&id, key).is_none() || !key.allows(&id) {
        return error_response(&ProxyError::ModelNotFound(id), &request_id(&req));
    }
    json(&model(&id, catalog.created_at.timestamp()))
}

fn json(value: &impl Serialize) -> HttpResponse {
    match serde_json::to_vec(value) {
        Ok(body) => HttpResponse::Ok().content_type("application/json").body(body),
        Err(_) => error_response(&ProxyError::UpstreamInvalid, ""),
    }
}
