//! Price versions: a model's prices from an effective-from instant on. The control plane costs every usage record
//! with the version in force when its request started and stores which version that was; a price change
//! mid-month therefore splits the month's usage (and its rollups) by version.
//!
//! The node's own cost (from the model's current price in the snapshot) is kept for budget reservations only:
//! when a model has a version in force, the control plane's cost replaces the node's in the stored record, the
//! rollups and the budget spend counters. A record whose model has no version in force keeps the node's cost and
//! no version (the models API requires a price, so that cost is never a silent zero).

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, ConnectionTrait, EntityTrait as _, QueryFilter as _, QueryOrder as _, Set,
};
use serde::{Deserialize, Serialize};
use switchyard_shared::UsageRecord;
use switchyard_shared::money::{PriceSheet, TokenClasses};

use super::audit::{Actor, AuditEntry};
use super::change::Change;
use super::{DomainError, Store};
use crate::entities::{models, price_versions};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewPriceVersion {
    pub effective_from: DateTime<Utc>,
    #[serde(flatten)]
    pub prices: PriceSheet,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceVersion {
    pub id: i64,
    pub model: String,
    pub effective_from: DateTime<Utc>,
    #[serde(flatten)]
    pub prices: PriceSheet,
    pub created_at: DateTime<Utc>,
}

fn sheet(m: &price_versions::Model) -> PriceSheet {
    PriceSheet {
        input_per_mtok: m.input_per_mtok,
        output_per_mtok: m.output_per_mtok,
        cached_input_per_mtok: m.cached_input_per_mtok,
        cache_write_per_mtok: m.cache_write_per_mtok,
    }
}

impl From<price_versions::Model> for PriceVersion {
    fn from(m: price_versions::Model) -> Self {
        Self { id: m.id, prices: sheet(&m), model: m.model, effective_from: m.effective_from, created_at: m.created_at }
    }
}

fn validate(p: &PriceSheet) -> Result<(), DomainError> {
    let all = [
        ("input_per_mtok", Some(p.input_per_mtok)),
        ("output_per_mtok", Some(p.output_per_mtok)),
        ("cached_input_per_mtok", p.cached_input_per_mtok),
        ("cache_write_per_mtok", p.cache_write_per_mtok),
    ];
    for (name, v) in all {
        if v.is_some_and(|v| v < 0) {
            return Err(DomainError::invalid(name, format!("{name} must not be negative")));
        }
    }
    Ok(())
}

async fn model_name(conn: &impl ConnectionTrait, model_id: i64) -> Result<String, DomainError> {
    Ok(models::Entity::find_by_id(model_id).one(conn).await?.ok_or(DomainError::NotFound("model"))?.name)
}

/// Adds a price version to a model.
pub async fn create(
    store: &Store,
    actor: &Actor,
    model_id: i64,
    new: NewPriceVersion,
) -> Result<PriceVersion, DomainError> {
    validate(&new.prices)?;
    let change = Change::begin(store).await?;
    let model = model_name(&*change, model_id).await?;
    let row = price_versions::ActiveModel {
        model: Set(model.clone()),
        effective_from: Set(new.effective_from),
        input_per_mtok: Set(new.prices.input_per_mtok),
        output_per_mtok: Set(new.prices.output_per_mtok),
        cached_input_per_mtok: Set(new.prices.cached_input_per_mtok),
        cache_write_per_mtok: Set(new.prices.cache_write_per_mtok),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(&*change)
    .await
    .map_err(|e| {
        DomainError::on_unique(e, || format!("model {model} already has a price version from {}", new.effective_from))
    })?;
    let detail = serde_json::to_value(&new).unwrap_or_default();
    change.commit(store, actor, AuditEntry::new("price_version.create", "model", model_id, detail)).await?;
    Ok(row.into())
}

/// A model's price versions, oldest first.
pub async fn list(store: &Store, model_id: i64) -> Result<Vec<PriceVersion>, DomainError> {
    let model = model_name(&store.db, model_id).await?;
    let rows = price_versions::Entity::find()
        .filter(price_versions::Column::Model.eq(model))
        .order_by_asc(price_versions::Column::EffectiveFrom)
        .all(&store.db)
        .await?;
    Ok(rows.into_iter().map(PriceVersion::from).collect())
}

/// The price versions of the models one batch names, to cost its records.
#[derive(Debug, Default)]
pub struct PriceBook(HashMap<String, Vec<(DateTime<Utc>, i64, PriceSheet)>>);

impl PriceBook {
    pub async fn load<'a>(
        conn: &impl ConnectionTrait,
        models: impl Iterator<Item = &'a str>,
    ) -> Result<Self, DomainError> {
        let names: BTreeSet<&str> = models.collect();
        let rows = price_versions::Entity::find()
            .filter(price_versions::Column::Model.is_in(names))
            .order_by_asc(price_versions::Column::EffectiveFrom)
            .all(conn)
            .await?;
        let mut book: HashMap<String, Vec<_>> = HashMap::new();
        for r in rows {
            let s = sheet(&r);
            book.entry(r.model).or_default().push((r.effective_from, r.id, s));
        }
        Ok(Self(book))
    }

    /// The version of `model` in force at `at`: the latest whose effective-from is not after it.
    pub fn in_force(&self, model: &str, at: DateTime<Utc>) -> Option<(i64, PriceSheet)> {
        let versions = self.0.get(model)?;
        let n = versions.partition_point(|(from, _, _)| *from <= at);
        n.checked_sub(1).and_then(|i| versions.get(i)).map(|(_, id, s)| (*id, *s))
    }

    /// Costs the record with the version in force when it started (replacing the node's cost) and returns that
    /// version's id; `None`, and the node's cost, when there is none.
    pub fn cost(&self, r: &mut UsageRecord) -> Option<i64> {
        let (id, sheet) = self.in_force(&r.model, r.started_at)?;
        r.cost_micros = sheet.cost(TokenClasses {
            prompt: r.prompt_tokens,
            cached_input: r.cached_input_tokens,
            cache_write: r.cache_write_tokens,
            completion: r.completion_tokens,
        });
        Some(id)
    }
}
