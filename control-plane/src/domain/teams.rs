//! Teams: the tenants. A team has a display name and a unique URL-safe slug.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait as _, EntityTrait as _, IntoActiveModel as _, QueryOrder as _, Set};
use serde::{Deserialize, Serialize};

use super::audit::{Actor, AuditEntry};
use super::change::Change;
use super::{DomainError, Store};
use crate::entities::teams;

const MAX_NAME_LEN: usize = 200;
const MAX_SLUG_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    pub id: i64,
    pub name: String,
    pub slug: String,
    pub created_at: DateTime<Utc>,
    /// Discount (negative) or markup (positive) on the team's invoices, in basis points of the subtotal
    /// (`-1000` = 10 % off). Set by an operator; an issued invoice keeps the rate it was issued with.
    #[serde(default)]
    pub markup_bp: i32,
}

impl From<teams::Model> for Team {
    fn from(m: teams::Model) -> Self {
        Self { id: m.id, name: m.name, slug: m.slug, created_at: m.created_at, markup_bp: m.markup_bp }
    }
}

/// The most a discount takes off (100 %) and the most a markup adds (1000 %), in basis points.
pub const MARKUP_BP_RANGE: std::ops::RangeInclusive<i32> = -10_000..=100_000;

/// A change to a team; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TeamUpdate {
    #[serde(default)]
    pub name: Option<String>,
    /// Basis points: negative = discount, positive = markup, 0 = none.
    #[serde(default)]
    pub markup_bp: Option<i32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NewTeam {
    pub name: String,
    #[serde(default)]
    pub slug: Option<String>,
}

/// A team slug: 1–64 characters of `[a-z0-9-]`, not starting or ending with `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamSlug(String);

impl TeamSlug {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_SLUG_LEN
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(DomainError::invalid(
                "slug",
                "slug must be 1-64 characters of a-z, 0-9 and '-', not starting or ending with '-'",
            ))
        }
    }

    /// Derives a slug from a display name: lowercase ASCII letters and digits, other runs become one `-`.
    pub fn from_name(name: &str) -> Result<Self, DomainError> {
        let mut slug = String::with_capacity(name.len());
        for c in name.chars() {
            if c.is_ascii_alphanumeric() {
                slug.push(c.to_ascii_lowercase());
            } else if !slug.is_empty() && !slug.ends_with('-') {
                slug.push('-');
            }
        }
        let slug: String = slug.chars().take(MAX_SLUG_LEN).collect();
        Self::parse(slug.trim_end_matches('-'))
            .map_err(|_| DomainError::invalid("slug", "cannot derive a slug from this name; give one explicitly"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn parse_name(name: &str) -> Result<String, DomainError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(DomainError::invalid("name", format!("name must be 1-{MAX_NAME_LEN} characters")));
    }
    Ok(name.to_owned())
}

pub async fn create(store: &Store, actor: &Actor, new: NewTeam) -> Result<Team, DomainError> {
    let name = parse_name(&new.name)?;
    let slug = match new.slug.as_deref() {
        Some(s) => TeamSlug::parse(s)?,
        None => TeamSlug::from_name(&name)?,
    };
    let change = Change::begin(store).await?;
    let team = teams::ActiveModel {
        name: Set(name),
        slug: Set(slug.as_str().to_owned()),
        created_at: Set(Utc::now()),
        markup_bp: Set(0),
        ..Default::default()
    }
    .insert(&*change)
    .await
    .map_err(|e| DomainError::on_unique(e, || format!("a team with slug `{}` already exists", slug.as_str())))?;
    let entry =
        AuditEntry::new("team.create", "team", team.id, serde_json::json!({ "name": team.name, "slug": team.slug }));
    change.commit(store, actor, entry).await?;
    Ok(team.into())
}

/// Renames a team and/or sets its invoice discount or markup (operators).
pub async fn update(store: &Store, actor: &Actor, id: i64, update: TeamUpdate) -> Result<Team, DomainError> {
    let name = update.name.as_deref().map(parse_name).transpose()?;
    if let Some(bp) = update.markup_bp.filter(|bp| !MARKUP_BP_RANGE.contains(bp)) {
        return Err(DomainError::invalid(
            "markup_bp",
            format!(
                "markup_bp must be between {} (100 % discount) and {} (1000 % markup); got {bp}",
                MARKUP_BP_RANGE.start(),
                MARKUP_BP_RANGE.end()
            ),
        ));
    }
    let change = Change::begin(store).await?;
    let row = teams::Entity::find_by_id(id).one(&*change).await?.ok_or(DomainError::NotFound("team"))?;
    let before = (row.name.clone(), row.markup_bp);
    let mut active = row.into_active_model();
    if let Some(name) = name {
        active.name = Set(name);
    }
    if let Some(bp) = update.markup_bp {
        active.markup_bp = Set(bp);
    }
    let team = active.update(&*change).await?;
    let entry = AuditEntry::new(
        "team.update",
        "team",
        team.id,
        serde_json::json!({ "name": [before.0, team.name], "markup_bp": [before.1, team.markup_bp] }),
    );
    change.commit(store, actor, entry).await?;
    Ok(team.into())
}

pub async fn list(store: &Store) -> Result<Vec<Team>, DomainError> {
    let rows = teams::Entity::find().order_by_asc(teams::Column::Id).all(&store.db).await?;
    Ok(rows.into_iter().map(Team::from).collect())
}

pub async fn get(store: &Store, id: i64) -> Result<Team, DomainError> {
    teams::Entity::find_by_id(id).one(&store.db).await?.map(Team::from).ok_or(DomainError::NotFound("team"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_derived_from_names() {
        assert_eq!(TeamSlug::from_name("  Research & Dev! ").unwrap().as_str(), "research-dev");
        assert!(TeamSlug::from_name("日本").is_err());
        assert!(TeamSlug::parse("Bad Slug").is_err());
        assert!(TeamSlug::parse("-x").is_err());
        assert!(TeamSlug::parse("ok-1").is_ok());
    }
}
