//! The console's one stylesheet and its one small script (the copy button), compiled into the binary.

use actix_web::HttpResponse;
use actix_web::http::header;

const STYLESHEET: &str = include_str!("../../../../templates/static/console.css");
const SCRIPT: &str = include_str!("../../../../templates/static/console.js");

pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(STYLESHEET)
}

pub async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(SCRIPT)
}
