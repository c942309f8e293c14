//! Models: the public model names clients ask for, each with a price and one or more targets (provider +
//! upstream model). A model without a price is refused: nothing is ever billed at zero by accident.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, ConnectionTrait, EntityTrait as _, IntoActiveModel as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _, Set,
};
use serde::{Deserialize, Serialize};

use super::audit::{Actor, AuditEntry};
use super::change::Change;
use super::{DomainError, Store};
use crate::entities::{model_targets, models as model_rows, providers, teams};

const MAX_MODEL_NAME_LEN: usize = 128;
const MAX_UPSTREAM_LEN: usize = 256;
const MAX_WEIGHT: i64 = 1_000_000;
const MAX_PRIORITY: i64 = 1_000_000;

/// A public model name: 1–128 characters, no whitespace or control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelName(String);

impl ModelName {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        if s.is_empty()
            || s.chars().count() > MAX_MODEL_NAME_LEN
            || s.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(DomainError::invalid(
                "name",
                format!("model names are 1-{MAX_MODEL_NAME_LEN} characters without spaces"),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    pub id: i64,
    pub name: String,
    pub input_price_per_mtok: i64,
    pub output_price_per_mtok: i64,
    pub targets: Vec<Target>,
    /// The teams that may use the model; `None` means every team.
    #[serde(default)]
    pub allowed_teams: Option<Vec<i64>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub provider_id: i64,
    pub upstream_model: String,
    pub weight: u32,
    pub priority: u32,
}

/// Body of create and replace. Prices are optional here only so that their absence gets a clear message.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelInput {
    pub name: String,
    #[serde(default)]
    pub input_price_per_mtok: Option<i64>,
    #[serde(default)]
    pub output_price_per_mtok: Option<i64>,
    #[serde(default)]
    pub targets: Vec<TargetInput>,
    /// Team ids that may use the model; absent or `null` means every team. An empty list is refused.
    #[serde(default)]
    pub allowed_teams: Option<Vec<i64>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TargetInput {
    pub provider_id: i64,
    pub upstream_model: String,
    #[serde(default)]
    pub weight: Option<i64>,
    #[serde(default)]
    pub priority: Option<i64>,
}

struct Valid {
    name: ModelName,
    input_price: i64,
    output_price: i64,
    targets: Vec<Target>,
    allowed_teams: Option<Vec<i64>>,
}

fn price(value: Option<i64>, param: &str) -> Result<i64, DomainError> {
    match value {
        None => Err(DomainError::invalid(
            param,
            format!(
                "{param} is required (micro-units per million tokens); a model without a price is never served for free"
            ),
        )),
        Some(p) if p < 0 => Err(DomainError::invalid(param, format!("{param} must not be negative"))),
        Some(p) => Ok(p),
    }
}

fn validate(input: &ModelInput) -> Result<Valid, DomainError> {
    let name = ModelName::parse(input.name.trim())?;
    let input_price = price(input.input_price_per_mtok, "input_price_per_mtok")?;
    let output_price = price(input.output_price_per_mtok, "output_price_per_mtok")?;
    if input.targets.is_empty() {
        return Err(DomainError::invalid("targets", "a model needs at least one target"));
    }
    let mut targets = Vec::with_capacity(input.targets.len());
    for (i, t) in input.targets.iter().enumerate() {
        let upstream = t.upstream_model.trim();
        if upstream.is_empty() || upstream.chars().count() > MAX_UPSTREAM_LEN {
            return Err(DomainError::invalid(
                format!("targets[{i}].upstream_model"),
                format!("upstream_model must be 1-{MAX_UPSTREAM_LEN} characters"),
            ));
        }
        let weight = t.weight.unwrap_or(1);
        if !(1..=MAX_WEIGHT).contains(&weight) {
            return Err(DomainError::invalid(
                format!("targets[{i}].weight"),
                format!("weight must be between 1 and {MAX_WEIGHT}"),
            ));
        }
        let priority = t.priority.unwrap_or(0);
        if !(0..=MAX_PRIORITY).contains(&priority) {
            return Err(DomainError::invalid(
                format!("targets[{i}].priority"),
                format!("priority must be between 0 and {MAX_PRIORITY}"),
            ));
        }
        targets.push(Target {
            provider_id: t.provider_id,
            upstream_model: upstream.to_owned(),
            // Both are range-checked above, far below u32::MAX.
            weight: u32::try_from(weight).unwrap_or(1),
            priority: u32::try_from(priority).unwrap_or(0),
        });
    }
    let allowed_teams = match &input.allowed_teams {
        None => None,
        Some(list) if list.is_empty() => {
            return Err(DomainError::invalid(
                "allowed_teams",
                "allowed_teams must name at least one team; omit it to allow every team",
            ));
        }
        Some(list) => {
            let mut ids = list.clone();
            ids.sort_unstable();
            ids.dedup();
            Some(ids)
        }
    };
    Ok(Valid { name, input_price, output_price, targets, allowed_teams })
}

async fn check_teams(conn: &impl ConnectionTrait, allowed: Option<&[i64]>) -> Result<(), DomainError> {
    let Some(wanted) = allowed else { return Ok(()) };
    let existing: HashSet<i64> = teams::Entity::find()
        .select_only()
        .column(teams::Column::Id)
        .filter(teams::Column::Id.is_in(wanted.iter().copied()))
        .into_tuple::<i64>()
        .all(conn)
        .await?
        .into_iter()
        .collect();
    match wanted.iter().find(|id| !existing.contains(id)) {
        Some(id) => Err(DomainError::invalid("allowed_teams", format!("team {id} does not exist"))),
        None => Ok(()),
    }
}

fn encode_teams(allowed: Option<&Vec<i64>>) -> Result<Option<String>, DomainError> {
    allowed.map(serde_json::to_string).transpose().map_err(|e| DomainError::Internal(e.to_string()))
}

fn decode_teams(raw: Option<&str>) -> Result<Option<Vec<i64>>, DomainError> {
    raw.map(serde_json::from_str::<Vec<i64>>)
        .transpose()
        .map_err(|e| DomainError::Internal(format!("models.allowed_teams is not a JSON array: {e}")))
}

async fn check_providers(conn: &impl ConnectionTrait, targets: &[Target]) -> Result<(), DomainError> {
    let wanted: Vec<i64> = targets.iter().map(|t| t.provider_id).collect();
    let existing: HashSet<i64> = providers::Entity::find()
        .select_only()
        .column(providers::Column::Id)
        .filter(providers::Column::Id.is_in(wanted))
        .into_tuple::<i64>()
        .all(conn)
        .await?
        .into_iter()
        .collect();
    for (i, t) in targets.iter().enumerate() {
        if !existing.contains(&t.provider_id) {
            return Err(DomainError::invalid(
                format!("targets[{i}].provider_id"),
                format!("provider {} does not exist", t.provider_id),
            ));
        }
    }
    Ok(())
}

async fn insert_targets(conn: &impl ConnectionTrait, model_id: i64, targets: &[Target]) -> Result<(), DomainError> {
    let rows = targets.iter().map(|t| model_targets::ActiveModel {
        model_id: Set(model_id),
        provider_id: Set(t.provider_id),
        upstream_model: Set(t.upstream_model.clone()),
        weight: Set(i32::try_from(t.weight).unwrap_or(i32::MAX)),
        priority: Set(i32::try_from(t.priority).unwrap_or(i32::MAX)),
        ..Default::default()
    });
    model_targets::Entity::insert_many(rows).exec_without_returning(conn).await?;
    Ok(())
}

fn to_target(t: model_targets::Model) -> Target {
    Target {
        provider_id: t.provider_id,
        upstream_model: t.upstream_model,
        weight: u32::try_from(t.weight).unwrap_or(0),
        priority: u32::try_from(t.priority).unwrap_or(0),
    }
}

fn assemble(row: model_rows::Model, targets: Vec<Target>) -> Result<Model, DomainError> {
    Ok(Model {
        allowed_teams: decode_teams(row.allowed_teams.as_deref())?,
        id: row.id,
        name: row.name,
        input_price_per_mtok: row.input_price_per_mtok,
        output_price_per_mtok: row.output_price_per_mtok,
        targets,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// Every model with its targets (lowest priority first), ordered by id.
pub(crate) async fn load_all(conn: &impl ConnectionTrait) -> Result<Vec<Model>, DomainError> {
    let rows = model_rows::Entity::find().order_by_asc(model_rows::Column::Id).all(conn).await?;
    let mut targets: BTreeMap<i64, Vec<Target>> = BTreeMap::new();
    for t in model_targets::Entity::find()
        .order_by_asc(model_targets::Column::Priority)
        .order_by_asc(model_targets::Column::Id)
        .all(conn)
        .await?
    {
        targets.entry(t.model_id).or_default().push(to_target(t));
    }
    rows.into_iter()
        .map(|r| {
            let t = targets.remove(&r.id).unwrap_or_default();
            assemble(r, t)
        })
        .collect()
}

/// The given model rows with their targets, in the given order.
pub(crate) async fn with_targets(
    conn: &impl ConnectionTrait,
    rows: Vec<model_rows::Model>,
) -> Result<Vec<Model>, DomainError> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut targets: BTreeMap<i64, Vec<Target>> = BTreeMap::new();
    for t in model_targets::Entity::find()
        .filter(model_targets::Column::ModelId.is_in(ids))
        .order_by_asc(model_targets::Column::Priority)
        .order_by_asc(model_targets::Column::Id)
        .all(conn)
        .await?
    {
        targets.entry(t.model_id).or_default().push(to_target(t));
    }
    rows.into_iter()
        .map(|r| {
            let t = targets.remove(&r.id).unwrap_or_default();
            assemble(r, t)
        })
        .collect()
}

async fn load_one(conn: &impl ConnectionTrait, row: model_rows::Model) -> Result<Model, DomainError> {
    let targets = model_targets::Entity::find()
        .filter(model_targets::Column::ModelId.eq(row.id))
        .order_by_asc(model_targets::Column::Priority)
        .order_by_asc(model_targets::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .map(to_target)
        .collect();
    assemble(row, targets)
}

fn audit_detail(m: &Model) -> serde_json::Value {
    serde_json::json!({
        "name": m.name,
        "input_price_per_mtok": m.input_price_per_mtok,
        "output_price_per_mtok": m.output_price_per_mtok,
        "targets": m.targets,
        "allowed_teams": m.allowed_teams,
    })
}

fn conflict(name: &ModelName) -> impl FnOnce() -> String + '_ {
    move || format!("a model named `{}` already exists", name.as_str())
}

pub async fn create(store: &Store, actor: &Actor, input: ModelInput) -> Result<Model, DomainError> {
    let valid = validate(&input)?;
    let now = Utc::now();
    let change = Change::begin(store).await?;
    check_providers(&*change, &valid.targets).await?;
    check_teams(&*change, valid.allowed_teams.as_deref()).await?;
    let row = model_rows::ActiveModel {
        name: Set(valid.name.as_str().to_owned()),
        input_price_per_mtok: Set(valid.input_price),
        output_price_per_mtok: Set(valid.output_price),
        allowed_teams: Set(encode_teams(valid.allowed_teams.as_ref())?),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&*change)
    .await
    .map_err(|e| DomainError::on_unique(e, conflict(&valid.name)))?;
    insert_targets(&*change, row.id, &valid.targets).await?;
    let model = load_one(&*change, row).await?;
    let entry = AuditEntry::new("model.create", "model", model.id, audit_detail(&model));
    change.commit(store, actor, entry).await?;
    Ok(model)
}

/// Replaces a model's name, prices and targets.
pub async fn replace(store: &Store, actor: &Actor, id: i64, input: ModelInput) -> Result<Model, DomainError> {
    let valid = validate(&input)?;
    let change = Change::begin(store).await?;
    let row = model_rows::Entity::find_by_id(id).one(&*change).await?.ok_or(DomainError::NotFound("model"))?;
    check_providers(&*change, &valid.targets).await?;
    check_teams(&*change, valid.allowed_teams.as_deref()).await?;
    let mut active = row.into_active_model();
    active.allowed_teams = Set(encode_teams(valid.allowed_teams.as_ref())?);
    active.name = Set(valid.name.as_str().to_owned());
    active.input_price_per_mtok = Set(valid.input_price);
    active.output_price_per_mtok = Set(valid.output_price);
    active.updated_at = Set(Utc::now());
    let row = active.update(&*change).await.map_err(|e| DomainError::on_unique(e, conflict(&valid.name)))?;
    model_targets::Entity::delete_many().filter(model_targets::Column::ModelId.eq(id)).exec(&*change).await?;
    insert_targets(&*change, id, &valid.targets).await?;
    let model = load_one(&*change, row).await?;
    let entry = AuditEntry::new("model.replace", "model", model.id, audit_detail(&model));
    change.commit(store, actor, entry).await?;
    Ok(model)
}

pub async fn delete(store: &Store, actor: &Actor, id: i64) -> Result<(), DomainError> {
    let change = Change::begin(store).await?;
    let row = model_rows::Entity::find_by_id(id).one(&*change).await?.ok_or(DomainError::NotFound("model"))?;
    // Explicit rather than relying on ON DELETE CASCADE, which SQLite honours only with foreign_keys on.
    model_targets::Entity::delete_many().filter(model_targets::Column::ModelId.eq(id)).exec(&*change).await?;
    model_rows::Entity::delete_by_id(id).exec(&*change).await?;
    let entry = AuditEntry::new("model.delete", "model", id, serde_json::json!({ "name": row.name }));
    change.commit(store, actor, entry).await?;
    Ok(())
}

pub async fn list(store: &Store) -> Result<Vec<Model>, DomainError> {
    load_all(&store.db).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ModelInput {
        ModelInput {
            name: "gpt-4o".into(),
            input_price_per_mtok: Some(2_500_000),
            output_price_per_mtok: Some(10_000_000),
            targets: vec![TargetInput {
                provider_id: 1,
                upstream_model: "gpt-4o-2024-08-06".into(),
                weight: None,
                priority: None,
            }],
            allowed_teams: None,
        }
    }

    fn param(err: DomainError) -> Option<String> {
        match err {
            DomainError::Invalid { param, .. } => param,
            _ => None,
        }
    }

    #[test]
    fn defaults_and_refusals() {
        let v = validate(&input()).unwrap();
        assert_eq!(v.targets[0].weight, 1);
        assert_eq!(v.targets[0].priority, 0);

        let mut i = input();
        i.output_price_per_mtok = None;
        assert_eq!(param(validate(&i).err().unwrap()).as_deref(), Some("output_price_per_mtok"));
        let mut i = input();
        i.input_price_per_mtok = Some(-1);
        assert_eq!(param(validate(&i).err().unwrap()).as_deref(), Some("input_price_per_mtok"));
        let mut i = input();
        i.targets.clear();
        assert_eq!(param(validate(&i).err().unwrap()).as_deref(), Some("targets"));
        let mut i = input();
        i.targets[0].weight = Some(0);
        assert_eq!(param(validate(&i).err().unwrap()).as_deref(), Some("targets[0].weight"));
        let mut i = input();
        i.name = "has space".into();
        assert_eq!(param(validate(&i).err().unwrap()).as_deref(), Some("name"));
        let mut i = input();
        i.allowed_teams = Some(vec![]);
        assert_eq!(param(validate(&i).err().unwrap()).as_deref(), Some("allowed_teams"));
        let mut i = input();
        i.allowed_teams = Some(vec![3, 1, 3]);
        assert_eq!(validate(&i).unwrap().allowed_teams, Some(vec![1, 3]));
    }
}
