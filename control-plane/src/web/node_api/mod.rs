//! The node API (`switchyard_shared::protocol`): snapshot long-poll, usage ingest and upstream status reports. The node token is checked
//! by middleware on the whole scope, see [`super::auth::require_node_token`].

pub mod snapshot;
pub mod status;
pub mod usage;
