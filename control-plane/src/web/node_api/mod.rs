//! The node API (`switchyard_shared::protocol`): snapshot long-poll and usage ingest. The node token is checked
//! by middleware on the whole scope, see [`super::auth::require_node_token`].

pub mod snapshot;
pub mod usage;
