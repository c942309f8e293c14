//! Which console user issued which API key, so that team members manage their own keys and nobody else's.
//! Keys issued through the admin API have no owner (only operators and team admins manage those).

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _, Set};

use super::{DomainError, Store};
use crate::entities::api_key_owners;

pub async fn record(store: &Store, key_id: i64, user_id: i64) -> Result<(), DomainError> {
    let row = api_key_owners::ActiveModel { key_id: Set(key_id), user_id: Set(user_id), created_at: Set(Utc::now()) };
    api_key_owners::Entity::insert(row)
        .on_conflict(OnConflict::column(api_key_owners::Column::KeyId).do_nothing().to_owned())
        .exec_without_returning(&store.db)
        .await?;
    Ok(())
}

/// Owner by key id, for the given keys.
pub async fn owners(store: &Store, key_ids: &[i64]) -> Result<HashMap<i64, i64>, DomainError> {
    if key_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = api_key_owners::Entity::find()
        .filter(api_key_owners::Column::KeyId.is_in(key_ids.iter().copied()))
        .all(&store.db)
        .await?;
    Ok(rows.into_iter().map(|r| (r.key_id, r.user_id)).collect())
}

/// The ids of the keys `user_id` issued.
pub async fn owned_by(store: &Store, user_id: i64) -> Result<Vec<i64>, DomainError> {
    let rows = api_key_owners::Entity::find().filter(api_key_owners::Column::UserId.eq(user_id)).all(&store.db).await?;
    Ok(rows.into_iter().map(|r| r.key_id).collect())
}
