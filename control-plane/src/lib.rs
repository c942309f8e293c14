//! Switchyard control plane: owns all state (teams, keys, providers, models, usage), serves the admin API,
//! publishes configuration snapshots to data-plane nodes, and ingests the usage they report.
//!
//! `main.rs` is thin; everything testable lives here. [`startup::Application::build`] binds the listener
//! itself (port 0 allowed) so tests run many servers side by side.

pub mod config;
pub mod crypto;
pub mod domain;
pub mod entities;
pub mod migrate;
pub mod probe;
pub mod quickstart;
pub mod replicas;
pub mod startup;
pub mod telemetry;
pub mod web;

pub use config::{Secret, Settings};
pub use domain::bootstrap::BootstrapCredentials;
pub use startup::{Application, StopHandle};
