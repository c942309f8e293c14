//! What the control plane's `GET /metrics` reports, read from the database at scrape time: the configuration
//! version, every node's applied version and last contact, and how many budget alerts were raised, by kind.
//! Nothing is counted on the request path, so every replica reports the same fleet-wide figures.

use sea_orm::{ColumnTrait as _, EntityTrait as _, QuerySelect as _};

use super::nodes::{self, Node};
use super::{DomainError, Store};
use crate::entities::budget_alerts;

#[derive(Debug, Clone)]
pub struct FleetStatus {
    pub config_version: u64,
    pub nodes: Vec<Node>,
    /// `(kind, rows)`, e.g. `("exhausted", 3)`; alert rows are never deleted, so these only grow.
    pub budget_alerts: Vec<(String, i64)>,
}

pub async fn read(store: &Store) -> Result<FleetStatus, DomainError> {
    let list = nodes::list(store).await?;
    let budget_alerts = budget_alerts::Entity::find()
        .select_only()
        .column(budget_alerts::Column::Kind)
        .column_as(budget_alerts::Column::Id.count(), "rows")
        .group_by(budget_alerts::Column::Kind)
        .into_tuple::<(String, i64)>()
        .all(&store.db)
        .await?;
    Ok(FleetStatus { config_version: list.current_version, nodes: list.data, budget_alerts })
}
