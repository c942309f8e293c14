//! The JSON admin API under `/api/v1`, one file per resource. Every handler takes an [`super::auth::OperatorAuth`].

pub mod alerts;
pub mod keys;
pub mod limits;
pub mod models;
pub mod nodes;
pub mod prices;
pub mod providers;
pub mod rollups;
pub mod teams;
pub mod usage;
