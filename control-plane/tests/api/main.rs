//! The control plane's one test binary: every test starts its own server on a random port with its own fresh
//! database, and runs once on SQLite and once on Postgres (`<module>::sqlite::<test>` / `::postgres::`).
// Tests state their expectations with unwrap/expect/panic; the workspace bans them in product code only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod helpers;

mod api_scope;
mod auth;
mod bad_input;
mod bootstrap;
mod console;
mod console_browser;
mod console_helpers;
mod console_lists;
mod data_plane;
mod deploy;
mod encryption_key_rotation;
mod end_to_end;
mod faults;
mod finance_followups;
mod invoices;
mod key_rotation;
mod keys;
mod limits;
mod limits_e2e;
mod model_teams;
mod models;
mod node;
mod nodes;
mod openapi;
mod prices;
mod provider_presets;
mod providers;
mod providers_anthropic;
mod providers_gemini;
mod replicas;
mod rollups;
mod sdk;
mod security;
mod snapshot;
mod teams;
mod upstream_limits;
mod usage;
mod usage_export;
mod usage_partitions;
mod usage_rollup_reads;
mod usage_spool;
