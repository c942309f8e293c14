//! Data-plane nodes as the control plane sees them: each snapshot poll says which version a node has applied
//! and that it is alive. A node is lagging when it applied less than the current configuration version.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{EntityTrait as _, QueryOrder as _, Set};
use serde::{Deserialize, Serialize};

use super::snapshot::current_version;
use super::{DomainError, Store};
use crate::entities::nodes;

const MAX_NODE_ID_LEN: usize = 128;

/// A node id as nodes report it: 1–128 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeId(String);

impl NodeId {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        if s.is_empty() || s.len() > MAX_NODE_ID_LEN || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(DomainError::invalid(
                "node_id",
                format!("node_id must be 1-{MAX_NODE_ID_LEN} visible ASCII characters"),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub node_id: String,
    pub applied_version: u64,
    pub last_seen_at: DateTime<Utc>,
    pub first_seen_at: DateTime<Utc>,
    pub lagging: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeList {
    pub current_version: u64,
    pub data: Vec<Node>,
}

/// Records that a node polled holding `applied`.
pub async fn record_poll(store: &Store, node: &NodeId, applied: u64, now: DateTime<Utc>) -> Result<(), DomainError> {
    let applied = i64::try_from(applied).map_err(|_| DomainError::invalid("applied", "applied is out of range"))?;
    let row = nodes::ActiveModel {
        id: Set(node.as_str().to_owned()),
        applied_version: Set(applied),
        last_seen_at: Set(now),
        first_seen_at: Set(now),
    };
    nodes::Entity::insert(row)
        .on_conflict(
            OnConflict::column(nodes::Column::Id)
                .update_columns([nodes::Column::AppliedVersion, nodes::Column::LastSeenAt])
                .to_owned(),
        )
        .exec_without_returning(&store.db)
        .await?;
    Ok(())
}

pub async fn list(store: &Store) -> Result<NodeList, DomainError> {
    let current = current_version(&store.db).await?;
    let data = nodes::Entity::find()
        .order_by_asc(nodes::Column::Id)
        .all(&store.db)
        .await?
        .into_iter()
        .map(|n| {
            let applied = u64::try_from(n.applied_version).unwrap_or_default();
            Node {
                node_id: n.id,
                applied_version: applied,
                last_seen_at: n.last_seen_at,
                first_seen_at: n.first_seen_at,
                lagging: applied < current,
            }
        })
        .collect();
    Ok(NodeList { current_version: current, data })
}
