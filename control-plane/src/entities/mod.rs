//! sea-orm entities, one file per table of `switchyard-migrations`. Relations are left to the domain queries,
//! which join explicitly; these types carry rows, not rules.

pub mod admin_tokens;
pub mod api_keys;
pub mod audit_log;
pub mod config_version;
pub mod model_targets;
pub mod models;
pub mod nodes;
pub mod providers;
pub mod teams;
pub mod usage_records;
pub mod users;
