//! The admin console under `/console`: server-rendered pages (askama templates in `/templates`), one file per
//! page or area, a view struct per template. Handlers are thin — extract the [`session::Viewer`] (or a CSRF-checked
//! [`session::Posted`] form), ask its [`crate::domain::access::Principal`] whether it may, call the same domain
//! functions as the JSON API, render. Failures become HTML in [`error`], apart from the JSON renderer.

pub mod account;
pub mod assets;
pub mod audit;
pub mod charts;
pub mod error;
pub mod format;
pub mod invites;
pub mod invoices;
pub mod login;
pub mod models;
pub mod nodes;
pub mod overview;
pub mod providers;
pub mod session;
pub mod team;
pub mod teams;
pub mod usage;
pub mod users;
pub mod view;

use actix_web::web;
use tokio::sync::OnceCell;

use crate::domain::sessions::SessionKeys;

/// Per-worker console state: the session signing key, loaded from the database on first use.
#[derive(Debug, Default)]
pub struct ConsoleState {
    keys: OnceCell<SessionKeys>,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::Data::new(ConsoleState::default())).service(
        web::scope("/console")
            .route("", web::get().to(overview::show))
            .route("/", web::get().to(overview::show))
            .route("/static/console.css", web::get().to(assets::stylesheet))
            .route("/static/console.js", web::get().to(assets::script))
            .route("/login", web::get().to(login::form))
            .route("/login", web::post().to(login::submit))
            .route("/logout", web::post().to(login::logout))
            .route("/invite/{token}", web::get().to(invites::form))
            .route("/invite/{token}", web::post().to(invites::accept))
            .route("/teams", web::get().to(teams::list))
            .route("/teams", web::post().to(teams::create))
            .route("/teams/{team_id}", web::get().to(team::show))
            .route("/teams/{team_id}/keys", web::post().to(team::issue_key))
            .route("/teams/{team_id}/keys/{key_id}/revoke", web::post().to(team::revoke_key))
            .route("/teams/{team_id}/keys/{key_id}/rotate", web::post().to(team::rotate_key))
            .route("/teams/{team_id}/invites", web::post().to(team::invite))
            .route("/teams/{team_id}/members/{user_id}", web::post().to(team::set_member_role))
            .route("/teams/{team_id}/members/{user_id}/remove", web::post().to(team::remove_member))
            .route("/teams/{team_id}/markup", web::post().to(team::set_markup))
            .route("/teams/{team_id}/invoices/{month}", web::get().to(invoices::show))
            .route("/invoices", web::get().to(invoices::list))
            .route("/invoices/{team_id}/{month}/issue", web::post().to(invoices::issue))
            .route("/providers", web::get().to(providers::list))
            .route("/providers", web::post().to(providers::create))
            .route("/providers/from-preset", web::post().to(providers::create_from_preset))
            .route("/providers/{id}", web::get().to(providers::edit))
            .route("/providers/{id}", web::post().to(providers::update))
            .route("/models", web::get().to(models::list))
            .route("/models", web::post().to(models::create))
            .route("/models/new", web::get().to(models::new))
            .route("/models/{id}", web::get().to(models::edit))
            .route("/models/{id}", web::post().to(models::update))
            .route("/models/{id}/delete", web::post().to(models::delete))
            .route("/nodes", web::get().to(nodes::list))
            .route("/usage", web::get().to(usage::explore))
            .route("/audit", web::get().to(audit::list))
            .route("/users", web::get().to(users::list))
            .route("/users/{id}/disable", web::post().to(users::disable))
            .route("/users/{id}/enable", web::post().to(users::enable))
            .route("/invites", web::post().to(users::invite))
            .route("/account", web::get().to(account::show))
            .route("/account/password", web::post().to(account::change_password))
            .route("/account/tokens", web::post().to(account::create_token))
            .route("/account/tokens/{id}/revoke", web::post().to(account::revoke_token)),
    );
}
