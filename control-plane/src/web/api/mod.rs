//! The JSON admin API under `/api/v1`, one file per resource. Every handler takes an [`super::auth::ApiCaller`]
//! (the token's user, with their role and teams) and asks it before calling the domain.

pub mod alerts;
pub mod invoices;
pub mod keys;
pub mod limits;
pub mod models;
pub mod nodes;
pub mod openapi;
pub mod prices;
pub mod providers;
pub mod rollups;
pub mod routes;
pub mod teams;
pub mod usage;
pub mod usage_export;
