//! The console's lists: searched in the database (a case-insensitive substring match, with the user's `%`, `_`
//! and `\` escaped so they match themselves) and cut into pages, with the total count for the pager. One
//! function per list, so no page handler builds a query.

use sea_orm::sea_query::{Expr, ExprTrait as _, Func, LikeExpr};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult, PaginatorTrait as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _, Select,
};

use super::accounts::User;
use super::keys::Key;
use super::models::{self, Model};
use super::nodes::Node;
use super::providers::Provider;
use super::snapshot::current_version;
use super::teams::Team;
use super::{DomainError, Store};
use crate::entities::{api_keys, audit_log, models as model_rows, nodes, providers, teams, users};

/// Rows per page of every console list.
pub const PAGE_SIZE: u64 = 25;
const MAX_QUERY_LEN: usize = 200;

/// What the user typed into a search box, trimmed; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Search(String);

impl Search {
    pub fn new(q: &str) -> Self {
        Self(q.trim().chars().take(MAX_QUERY_LEN).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The LIKE pattern: lower-cased, wildcards escaped with `\`, wrapped in `%`.
    pub fn pattern(&self) -> Option<String> {
        if self.0.is_empty() {
            return None;
        }
        let mut p = String::with_capacity(self.0.len() + 2);
        p.push('%');
        for c in self.0.to_lowercase().chars() {
            if matches!(c, '%' | '_' | '\\') {
                p.push('\\');
            }
            p.push(c);
        }
        p.push('%');
        Some(p)
    }

    /// Any of `columns` contains the search (case-insensitively); everything when the search is empty.
    fn matching<C: ColumnTrait>(&self, columns: &[C]) -> Condition {
        let Some(pattern) = self.pattern() else { return Condition::all() };
        columns.iter().fold(Condition::any(), |any, c| {
            any.add(Expr::expr(Func::lower(Expr::col(*c))).like(LikeExpr::new(pattern.clone()).escape('\\')))
        })
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paged<T> {
    pub rows: Vec<T>,
    /// Rows matching the search, over all pages.
    pub total: u64,
    /// 1-based, clamped to the pages that exist.
    pub page: u64,
    pub pages: u64,
}

impl<T> Paged<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Paged<U> {
        Paged { rows: self.rows.into_iter().map(f).collect(), total: self.total, page: self.page, pages: self.pages }
    }
}

async fn page_of<E>(conn: &impl ConnectionTrait, select: Select<E>, page: u64) -> Result<Paged<E::Model>, DomainError>
where
    E: EntityTrait,
    E::Model: FromQueryResult + Send + Sync,
{
    let paginator = select.paginate(conn, PAGE_SIZE);
    let total = paginator.num_items().await?;
    let pages = Ord::max(total.div_ceil(PAGE_SIZE), 1);
    let page = page.clamp(1, pages);
    let rows = paginator.fetch_page(page - 1).await?;
    Ok(Paged { rows, total, page, pages })
}

/// Teams by name or slug; `only` limits them to the given ids (`None`: every team).
pub async fn teams(store: &Store, only: Option<&[i64]>, q: &Search, page: u64) -> Result<Paged<Team>, DomainError> {
    let mut select = teams::Entity::find()
        .filter(q.matching(&[teams::Column::Name, teams::Column::Slug]))
        .order_by_asc(teams::Column::Name);
    if let Some(ids) = only {
        select = select.filter(teams::Column::Id.is_in(ids.iter().copied()));
    }
    Ok(page_of(&store.db, select, page).await?.map(Team::from))
}

/// Users by email.
pub async fn users(store: &Store, q: &Search, page: u64) -> Result<Paged<User>, DomainError> {
    let select = users::Entity::find().filter(q.matching(&[users::Column::Email])).order_by_asc(users::Column::Email);
    Ok(page_of(&store.db, select, page).await?.map(User::from))
}

/// Providers by name or base URL.
pub async fn providers(store: &Store, q: &Search, page: u64) -> Result<Paged<Provider>, DomainError> {
    let select = providers::Entity::find()
        .filter(q.matching(&[providers::Column::Name, providers::Column::BaseUrl]))
        .order_by_asc(providers::Column::Name);
    Ok(page_of(&store.db, select, page).await?.map(Provider::from))
}

/// Models by public name, with their targets.
pub async fn models(store: &Store, q: &Search, page: u64) -> Result<Paged<Model>, DomainError> {
    let select = model_rows::Entity::find()
        .filter(q.matching(&[model_rows::Column::Name]))
        .order_by_asc(model_rows::Column::Name);
    let paged = page_of(&store.db, select, page).await?;
    let rows = models::with_targets(&store.db, paged.rows).await?;
    Ok(Paged { rows, total: paged.total, page: paged.page, pages: paged.pages })
}

/// Nodes by id, with whether each lags behind the current configuration.
pub async fn nodes(store: &Store, q: &Search, page: u64) -> Result<(u64, Paged<Node>), DomainError> {
    let current = current_version(&store.db).await?;
    let select = nodes::Entity::find().filter(q.matching(&[nodes::Column::Id])).order_by_asc(nodes::Column::Id);
    let paged = page_of(&store.db, select, page).await?.map(|n| {
        let applied = u64::try_from(n.applied_version).unwrap_or_default();
        Node {
            node_id: n.id,
            applied_version: applied,
            last_seen_at: n.last_seen_at,
            first_seen_at: n.first_seen_at,
            lagging: applied < current,
        }
    });
    Ok((current, paged))
}

/// The keys of a team by name or visible prefix, newest first; `owned_by` keeps only one user's keys.
pub async fn keys(
    store: &Store,
    team_id: i64,
    owned_by: Option<&[i64]>,
    q: &Search,
    page: u64,
) -> Result<Paged<Key>, DomainError> {
    let mut select = api_keys::Entity::find()
        .filter(api_keys::Column::TeamId.eq(team_id))
        .filter(q.matching(&[api_keys::Column::Name, api_keys::Column::Prefix]))
        .order_by_desc(api_keys::Column::Id);
    if let Some(ids) = owned_by {
        select = select.filter(api_keys::Column::Id.is_in(ids.iter().copied()));
    }
    let paged = page_of(&store.db, select, page).await?;
    let rows = paged.rows.into_iter().map(Key::try_from).collect::<Result<Vec<_>, _>>()?;
    Ok(Paged { rows, total: paged.total, page: paged.page, pages: paged.pages })
}

/// Audit rows matching by actor, action or target, newest first, `limit` at a time below `before_id`. The log
/// grows without bound, so it pages by id (keyset) rather than by offset and count.
pub async fn audit(
    store: &Store,
    q: &Search,
    before_id: Option<i64>,
    limit: u64,
) -> Result<Vec<audit_log::Model>, DomainError> {
    let mut select = audit_log::Entity::find()
        .filter(q.matching(&[
            audit_log::Column::Actor,
            audit_log::Column::Action,
            audit_log::Column::TargetType,
            audit_log::Column::TargetId,
        ]))
        .order_by_desc(audit_log::Column::Id)
        .limit(limit);
    if let Some(before) = before_id {
        select = select.filter(audit_log::Column::Id.lt(before));
    }
    Ok(select.all(&store.db).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_escape_wildcards_and_ignore_case() {
        assert_eq!(Search::new("  ").pattern(), None);
        assert_eq!(Search::new(" Ab ").pattern().as_deref(), Some("%ab%"));
        assert_eq!(Search::new("50%_a\\b").pattern().as_deref(), Some("%50\\%\\_a\\\\b%"));
    }
}
