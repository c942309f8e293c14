//! Usage rollups: usage summed per (team, key, model, price version, day), maintained by ingest in the same
//! transaction as the records, so reports and invoices never scan raw records.
//!
//! A day is a calendar day in the deployment's reporting time zone (`SWITCHYARD_REPORTING_TIMEZONE`, default UTC).
//! Only records a batch newly stored are added: a re-sent batch adds nothing. A request counts as an error when the
//! client got a status of 400 or above. [`check`] recomputes every rollup from the raw records and reports the rows
//! that differ (the `check-rollups` command and `GET /api/v1/usage/rollups/check`).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use sea_orm::sea_query::{Alias, Expr, ExprTrait as _, OnConflict, Query};
use sea_orm::{
    ColumnTrait as _, ConnectionTrait, DatabaseBackend, EntityTrait as _, QueryFilter as _, QueryOrder as _,
    QuerySelect as _, Statement,
};
use serde::{Deserialize, Serialize};
use switchyard_shared::UsageRecord;
use switchyard_shared::period::Zone;
use uuid::Uuid;

use super::DomainError;
use crate::entities::{usage_records, usage_rollups};

/// Shards of the rollup rows: batches from different nodes update different rows, so concurrent ingest does not
/// queue on row locks (readers sum over shards).
pub const SHARDS: u32 = 16;

/// The shard a node's batches write to.
pub fn shard_of(node_id: &str) -> i32 {
    // FNV-1a: stable across builds and releases, unlike the std hasher.
    let h = node_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    i32::try_from(h % u64::from(SHARDS)).unwrap_or(0)
}

/// Rows per upsert: 14 bind parameters each stays far below both backends' parameter limits.
const UPSERT_CHUNK: usize = 500;
/// Records read per page by the consistency check.
const CHECK_PAGE: u64 = 10_000;
/// Differences listed in full by the consistency check (all are counted).
const CHECK_LISTED: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RollupKey {
    pub team_id: i64,
    pub key_id: i64,
    pub model: String,
    pub price_version_id: i64,
    pub day: NaiveDate,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupSums {
    pub requests: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_write_tokens: i64,
    pub completion_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_micros: i64,
}

fn tokens(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl RollupSums {
    fn add_record(&mut self, r: &UsageRecord) {
        self.requests += 1;
        self.errors += i64::from(r.status >= 400);
        self.prompt_tokens = self.prompt_tokens.saturating_add(tokens(r.prompt_tokens));
        self.cached_input_tokens = self.cached_input_tokens.saturating_add(tokens(r.cached_input_tokens));
        self.cache_write_tokens = self.cache_write_tokens.saturating_add(tokens(r.cache_write_tokens));
        self.completion_tokens = self.completion_tokens.saturating_add(tokens(r.completion_tokens));
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(tokens(r.reasoning_tokens));
        self.cost_micros = self.cost_micros.saturating_add(r.cost_micros);
    }

    fn merge(&mut self, o: &RollupSums) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.prompt_tokens += o.prompt_tokens;
        self.cached_input_tokens += o.cached_input_tokens;
        self.cache_write_tokens += o.cache_write_tokens;
        self.completion_tokens += o.completion_tokens;
        self.reasoning_tokens += o.reasoning_tokens;
        self.cost_micros += o.cost_micros;
    }

    fn add_row(&mut self, m: &usage_records::Model) {
        self.requests += 1;
        self.errors += i64::from(m.status >= 400);
        self.prompt_tokens += m.prompt_tokens;
        self.cached_input_tokens += m.cached_input_tokens;
        self.cache_write_tokens += m.cache_write_tokens;
        self.completion_tokens += m.completion_tokens;
        self.reasoning_tokens += m.reasoning_tokens;
        self.cost_micros += m.cost_micros;
    }
}

pub type Rollups = BTreeMap<RollupKey, RollupSums>;

/// Sums records (each with the price version it was costed with, 0 for none) into rollup rows.
pub fn aggregate<'a>(records: impl IntoIterator<Item = (&'a UsageRecord, i64)>, zone: Zone) -> Rollups {
    let mut out = Rollups::new();
    for (r, price_version_id) in records {
        let key = RollupKey {
            team_id: r.team_id,
            key_id: r.key_id,
            model: r.model.clone(),
            price_version_id,
            day: zone.date_of(r.started_at),
        };
        out.entry(key).or_default().add_record(r);
    }
    out
}

/// Adds `rollups` to the stored rows of `shard` (creating missing ones), inside the caller's transaction.
pub async fn apply(conn: &impl ConnectionTrait, rollups: &Rollups, shard: i32) -> Result<(), DomainError> {
    use usage_rollups::Column as C;
    const SUMS: [C; 8] = [
        C::Requests,
        C::Errors,
        C::PromptTokens,
        C::CachedInputTokens,
        C::CacheWriteTokens,
        C::CompletionTokens,
        C::ReasoningTokens,
        C::CostMicros,
    ];
    const KEYS: [C; 6] = [C::TeamId, C::KeyId, C::Model, C::PriceVersionId, C::Day, C::Shard];
    if rollups.is_empty() {
        return Ok(());
    }
    if conn.get_database_backend() == DatabaseBackend::Postgres {
        return apply_postgres(conn, rollups, shard).await;
    }
    let rows: Vec<_> = rollups.iter().collect();
    for chunk in rows.chunks(UPSERT_CHUNK) {
        let mut q = Query::insert();
        q.into_table(usage_rollups::Entity).columns(KEYS.into_iter().chain(SUMS));
        for (k, s) in chunk {
            q.values([
                k.team_id.into(),
                k.key_id.into(),
                k.model.clone().into(),
                k.price_version_id.into(),
                k.day.into(),
                shard.into(),
                s.requests.into(),
                s.errors.into(),
                s.prompt_tokens.into(),
                s.cached_input_tokens.into(),
                s.cache_write_tokens.into(),
                s.completion_tokens.into(),
                s.reasoning_tokens.into(),
                s.cost_micros.into(),
            ])
            .map_err(|e| DomainError::Internal(format!("rollup upsert: {e}")))?;
        }
        q.on_conflict(
            OnConflict::columns(KEYS)
                .values(
                    SUMS.map(|c| {
                        (c, Expr::col((usage_rollups::Entity, c)).add(Expr::col((Alias::new("excluded"), c))))
                    }),
                )
                .to_owned(),
        );
        conn.execute(&q).await?;
    }
    Ok(())
}

#[derive(Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    key: &'a RollupKey,
    #[serde(flatten)]
    sums: &'a RollupSums,
}

/// All rows in one statement with one bind (their JSON), in key order so concurrent batches lock rows in the same
/// order.
const POSTGRES_UPSERT: &str = "INSERT INTO usage_rollups (team_id, key_id, model, price_version_id, day, shard, \
requests, errors, prompt_tokens, cached_input_tokens, cache_write_tokens, completion_tokens, reasoning_tokens, \
cost_micros) SELECT team_id, key_id, model, price_version_id, day, $2, requests, errors, prompt_tokens, \
cached_input_tokens, cache_write_tokens, completion_tokens, reasoning_tokens, cost_micros FROM json_to_recordset($1::json) AS r(team_id bigint, key_id bigint, model text, price_version_id bigint, \
day date, requests bigint, errors bigint, prompt_tokens bigint, cached_input_tokens bigint, \
cache_write_tokens bigint, completion_tokens bigint, reasoning_tokens bigint, cost_micros bigint) \
ON CONFLICT (team_id, key_id, model, price_version_id, day, shard) DO UPDATE SET \
requests = usage_rollups.requests + excluded.requests, errors = usage_rollups.errors + excluded.errors, \
prompt_tokens = usage_rollups.prompt_tokens + excluded.prompt_tokens, \
cached_input_tokens = usage_rollups.cached_input_tokens + excluded.cached_input_tokens, \
cache_write_tokens = usage_rollups.cache_write_tokens + excluded.cache_write_tokens, \
completion_tokens = usage_rollups.completion_tokens + excluded.completion_tokens, \
reasoning_tokens = usage_rollups.reasoning_tokens + excluded.reasoning_tokens, \
cost_micros = usage_rollups.cost_micros + excluded.cost_micros";

async fn apply_postgres(conn: &impl ConnectionTrait, rollups: &Rollups, shard: i32) -> Result<(), DomainError> {
    let rows: Vec<Row<'_>> = rollups.iter().map(|(key, sums)| Row { key, sums }).collect();
    let json = serde_json::to_string(&rows).map_err(|e| DomainError::Internal(format!("rollups json: {e}")))?;
    conn.execute_raw(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        POSTGRES_UPSERT,
        [json.into(), shard.into()],
    ))
    .await?;
    Ok(())
}

/// One rollup row that does not match the records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupDifference {
    #[serde(flatten)]
    pub key: RollupKey,
    /// Recomputed from the records; `None` when no record belongs to this row.
    pub expected: Option<RollupSums>,
    /// As stored; `None` when the row is missing.
    pub stored: Option<RollupSums>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupCheck {
    pub records: u64,
    /// Stored rows, shards counted separately.
    pub rollup_rows: u64,
    /// How many rows differ (all of them, even when only the first are listed).
    pub differing_rows: u64,
    pub differences: Vec<RollupDifference>,
}

impl RollupCheck {
    pub fn is_consistent(&self) -> bool {
        self.differing_rows == 0
    }
}

/// Recomputes every rollup from the raw records (read in pages, so memory follows the rollups, not the records)
/// and compares with the stored rows.
pub async fn check(conn: &impl ConnectionTrait, zone: Zone) -> Result<RollupCheck, DomainError> {
    let mut expected = Rollups::new();
    let mut records = 0u64;
    let mut after: Option<Uuid> = None;
    // Retention dropped the raw records before this day (Postgres); their rollups stay and are not checked.
    let records_from = super::partitions::records_from(conn).await?;
    loop {
        let mut q = usage_records::Entity::find().order_by_asc(usage_records::Column::Id).limit(CHECK_PAGE);
        if let Some(day) = records_from {
            q = q.filter(usage_records::Column::StartedAt.gte(zone.midnight(day)));
        }
        if let Some(id) = after {
            q = q.filter(usage_records::Column::Id.gt(id));
        }
        let page = q.all(conn).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for m in &page {
            let key = RollupKey {
                team_id: m.team_id,
                key_id: m.key_id,
                model: m.model.clone(),
                price_version_id: m.price_version_id.unwrap_or(0),
                day: zone.date_of(m.started_at),
            };
            expected.entry(key).or_default().add_row(m);
        }
        records += page.len() as u64;
    }
    let mut stored = Rollups::new();
    let rows = usage_rollups::Entity::find()
        .filter(sea_orm::Condition::all().add_option(records_from.map(|d| usage_rollups::Column::Day.gte(d))))
        .all(conn)
        .await?;
    let rollup_rows = rows.len() as u64;
    for (key, sums) in rows.into_iter().map(|m| {
        let key = RollupKey {
            team_id: m.team_id,
            key_id: m.key_id,
            model: m.model,
            price_version_id: m.price_version_id,
            day: m.day,
        };
        let sums = RollupSums {
            requests: m.requests,
            errors: m.errors,
            prompt_tokens: m.prompt_tokens,
            cached_input_tokens: m.cached_input_tokens,
            cache_write_tokens: m.cache_write_tokens,
            completion_tokens: m.completion_tokens,
            reasoning_tokens: m.reasoning_tokens,
            cost_micros: m.cost_micros,
        };
        (key, sums)
    }) {
        stored.entry(key).or_default().merge(&sums);
    }
    let mut differing_rows = 0u64;
    let mut differences = Vec::new();
    let mut note = |key: &RollupKey, expected: Option<RollupSums>, stored: Option<RollupSums>| {
        differing_rows += 1;
        if differences.len() < CHECK_LISTED {
            differences.push(RollupDifference { key: key.clone(), expected, stored });
        }
    };
    for (key, want) in &expected {
        match stored.get(key) {
            Some(have) if have == want => {}
            have => note(key, Some(*want), have.copied()),
        }
    }
    for (key, have) in &stored {
        if !expected.contains_key(key) {
            note(key, None, Some(*have));
        }
    }
    Ok(RollupCheck { records, rollup_rows, differing_rows, differences })
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};
    use switchyard_shared::usage::UsageSource;

    use super::*;

    fn record(team_id: i64, started_at: chrono::DateTime<Utc>, status: u16) -> UsageRecord {
        UsageRecord {
            id: Uuid::now_v7(),
            request_id: "r".into(),
            node_id: "n".into(),
            team_id,
            key_id: 7,
            model: "m".into(),
            provider_id: None,
            upstream_model: None,
            started_at,
            duration_us: 1,
            ttft_us: None,
            status,
            error_code: None,
            stream: false,
            prompt_tokens: 10,
            completion_tokens: 5,
            cached_input_tokens: 4,
            cache_write_tokens: 1,
            reasoning_tokens: 2,
            usage_source: UsageSource::Upstream,
            cost_micros: 30,
        }
    }

    #[test]
    fn nodes_spread_over_shards_stably() {
        let shards: std::collections::BTreeSet<i32> = (0..64).map(|i| shard_of(&format!("node-{i}"))).collect();
        assert!(shards.len() > 8 && shards.iter().all(|s| (0..16).contains(s)), "{shards:?}");
        assert_eq!(shard_of("node-a"), shard_of("node-a"));
    }

    #[test]
    fn records_sum_per_day_of_the_reporting_zone() {
        // 23:30 UTC on the 1st is already the 2nd in Berlin.
        let late = Utc.with_ymd_and_hms(2026, 11, 1, 23, 30, 0).unwrap();
        let noon = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
        let recs = [record(1, late, 200), record(1, noon, 502)];
        let utc = aggregate(recs.iter().map(|r| (r, 0)), Zone::UTC);
        assert_eq!(utc.len(), 1);
        let sums = utc.values().next().unwrap();
        assert_eq!((sums.requests, sums.errors, sums.prompt_tokens, sums.cached_input_tokens), (2, 1, 20, 8));
        assert_eq!((sums.cache_write_tokens, sums.reasoning_tokens, sums.cost_micros), (2, 4, 60));
        let berlin = aggregate(recs.iter().map(|r| (r, 0)), Zone::parse("Europe/Berlin").unwrap());
        let days: Vec<_> = berlin.keys().map(|k| k.day.to_string()).collect();
        assert_eq!(days, ["2026-11-01", "2026-11-02"]);
    }
}
