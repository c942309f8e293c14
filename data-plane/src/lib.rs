//! Switchyard data-plane node: serves OpenAI-compatible requests from an in-memory snapshot of the control
//! plane's state — authenticate, route, forward, relay, meter — and reports usage in batches.
//!
//! Architecture invariant: a node never opens a database connection and never calls the control plane on the
//! request path. It keeps serving from its last snapshot while the control plane is away.

pub mod auth;
pub mod catalog;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod health;
pub mod limits;
pub mod metering;
pub mod metrics;
pub mod models;
pub mod providers;
pub mod proxy;
pub mod reporting;
pub mod request;
pub mod routing;
pub mod server;
pub mod snapshot;
pub mod spool;
pub mod streaming;
pub mod telemetry;
pub mod upstream_status;

pub use config::{Secret, Settings};
pub use server::{Node, Server};
