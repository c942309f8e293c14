//! sea-orm entities, one file per table of `switchyard-migrations`. Relations are left to the domain queries,
//! which join explicitly; these types carry rows, not rules.

pub mod admin_tokens;
pub mod api_key_owners;
pub mod api_keys;
pub mod audit_log;
pub mod budget_alerts;
pub mod budget_spend;
pub mod config_version;
pub mod console_secrets;
pub mod invites;
pub mod invoice_counter;
pub mod invoice_lines;
pub mod invoices;
pub mod limits;
pub mod login_throttle;
pub mod model_targets;
pub mod models;
pub mod nodes;
pub mod price_versions;
pub mod provider_model_caps;
pub mod providers;
pub mod revoked_sessions;
pub mod team_members;
pub mod teams;
pub mod usage_records;
pub mod usage_rollups;
pub mod usage_watermarks;
pub mod users;
