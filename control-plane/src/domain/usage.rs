//! Usage: ingest of the records nodes report, and the queries over them. Ingest is idempotent — records carry
//! node-minted ids and a re-sent batch stores nothing new — and acknowledges only after the commit.

use std::collections::HashSet;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use sea_orm::sea_query::{Alias, Expr, Func};
use sea_orm::{
    ColumnTrait as _, Condition, ConnectionTrait, DatabaseBackend, EntityTrait as _, QueryFilter as _, QueryOrder as _,
    QuerySelect as _, Set, Statement, TryInsertResult,
};
use serde::{Deserialize, Serialize};
use switchyard_shared::usage::UsageSource;
use switchyard_shared::{UsageAck, UsageBatch, UsageRecord};
use uuid::Uuid;

use super::change::begin_write;
use super::limits;
use super::prices::PriceBook;
use super::{DomainError, Store, partitions, rollups, usage_copy};
use crate::entities::{usage_records, usage_rollups};

/// Rows per INSERT: 19 bind parameters each stays far below both backends' parameter limits.
const INSERT_CHUNK: usize = 300;
pub const DEFAULT_LIMIT: u64 = 100;
pub const MAX_LIMIT: u64 = 1000;

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn source_str(s: UsageSource) -> &'static str {
    match s {
        UsageSource::Upstream => "upstream",
        UsageSource::Estimated => "estimated",
        UsageSource::None => "none",
    }
}

fn parse_source(s: &str) -> UsageSource {
    match s {
        "upstream" => UsageSource::Upstream,
        "estimated" => UsageSource::Estimated,
        _ => UsageSource::None,
    }
}

/// A record as the control plane stores it: costed with the price version in force when it started.
#[derive(Debug, Serialize)]
struct Costed {
    #[serde(flatten)]
    record: UsageRecord,
    price_version_id: Option<i64>,
}

fn to_row(c: &Costed, received_at: DateTime<Utc>) -> usage_records::ActiveModel {
    let r = &c.record;
    usage_records::ActiveModel {
        price_version_id: Set(c.price_version_id),
        id: Set(r.id),
        request_id: Set(r.request_id.clone()),
        node_id: Set(r.node_id.clone()),
        team_id: Set(r.team_id),
        key_id: Set(r.key_id),
        model: Set(r.model.clone()),
        provider_id: Set(r.provider_id),
        upstream_model: Set(r.upstream_model.clone()),
        started_at: Set(r.started_at),
        duration_us: Set(clamp_i64(r.duration_us)),
        ttft_us: Set(r.ttft_us.map(clamp_i64)),
        status: Set(i32::from(r.status)),
        error_code: Set(r.error_code.clone()),
        stream: Set(r.stream),
        prompt_tokens: Set(clamp_i64(r.prompt_tokens)),
        completion_tokens: Set(clamp_i64(r.completion_tokens)),
        cached_input_tokens: Set(clamp_i64(r.cached_input_tokens)),
        cache_write_tokens: Set(clamp_i64(r.cache_write_tokens)),
        reasoning_tokens: Set(clamp_i64(r.reasoning_tokens)),
        usage_source: Set(source_str(r.usage_source).to_owned()),
        cost_micros: Set(r.cost_micros),
        received_at: Set(received_at),
    }
}

/// Inserts the records no earlier batch stored and returns the ids it inserted.
async fn insert_new(
    conn: &impl ConnectionTrait,
    records: &[Costed],
    now: DateTime<Utc>,
) -> Result<HashSet<Uuid>, DomainError> {
    if conn.get_database_backend() == DatabaseBackend::Postgres && fits_bigint(records) {
        return insert_new_postgres(conn, records, now).await;
    }
    let mut ids = HashSet::with_capacity(records.len());
    for chunk in records.chunks(INSERT_CHUNK) {
        let rows = chunk.iter().map(|r| to_row(r, now));
        let inserted =
            usage_records::Entity::insert_many(rows).on_conflict_do_nothing().exec_with_returning_keys(conn).await?;
        if let TryInsertResult::Inserted(new) = inserted {
            ids.extend(new);
        }
    }
    Ok(ids)
}

/// Whether every count fits Postgres's `bigint` as is (the multi-row path clamps the ones that do not).
fn fits_bigint(records: &[Costed]) -> bool {
    const MAX: u64 = i64::MAX as u64;
    records.iter().map(|c| &c.record).all(|r| {
        [r.duration_us, r.ttft_us.unwrap_or(0), r.prompt_tokens, r.completion_tokens]
            .into_iter()
            .chain([r.cached_input_tokens, r.cache_write_tokens, r.reasoning_tokens])
            .all(|v| v <= MAX)
    })
}

/// The whole batch in one statement with one bind for all records: the records' own JSON, whose field names are
/// the column names, unpacked by `json_to_recordset` (instead of 22 binds per record in chunks).
const POSTGRES_INSERT: &str = "INSERT INTO usage_records (id, request_id, node_id, team_id, key_id, model, \
provider_id, upstream_model, started_at, duration_us, ttft_us, status, error_code, stream, prompt_tokens, \
completion_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, usage_source, cost_micros, price_version_id, received_at) \
SELECT id, request_id, node_id, team_id, key_id, model, provider_id, upstream_model, started_at, duration_us, \
ttft_us, status, error_code, stream, prompt_tokens, completion_tokens, cached_input_tokens, cache_write_tokens, \
reasoning_tokens, usage_source, cost_micros, price_version_id, $2 FROM json_to_recordset($1::json) AS r(id uuid, request_id text, \
node_id text, team_id bigint, key_id bigint, model text, provider_id bigint, upstream_model text, \
started_at timestamptz, duration_us bigint, ttft_us bigint, status integer, error_code text, stream boolean, \
prompt_tokens bigint, completion_tokens bigint, cached_input_tokens bigint, cache_write_tokens bigint, \
reasoning_tokens bigint, usage_source text, cost_micros bigint, price_version_id bigint) ON CONFLICT (id, started_at) DO NOTHING RETURNING id";

async fn insert_new_postgres(
    conn: &impl ConnectionTrait,
    records: &[Costed],
    now: DateTime<Utc>,
) -> Result<HashSet<Uuid>, DomainError> {
    let json = serde_json::to_string(records).map_err(|e| DomainError::Internal(format!("usage batch json: {e}")))?;
    let stmt = Statement::from_sql_and_values(DatabaseBackend::Postgres, POSTGRES_INSERT, [json.into(), now.into()]);
    let rows = conn.query_all_raw(stmt).await?;
    rows.iter().map(|row| Ok(row.try_get::<Uuid>("", "id")?)).collect()
}

/// Stores a batch in one transaction, together with the usage rollups and budget spend of the records it newly
/// stored; records already known are counted as duplicates and add to nothing.
pub async fn ingest(store: &Store, batch: UsageBatch) -> Result<UsageAck, DomainError> {
    let received = batch.records.len() as u64;
    let now = Utc::now();
    partitions::ensure_for(
        &store.db,
        &store.partitions,
        store.reporting_zone,
        batch.records.iter().map(|r| r.started_at),
        now,
    )
    .await?;
    let newest = batch.records.iter().map(|r| r.id).max();
    let shard = rollups::shard_of(&batch.node_id);
    let cost = |book: &PriceBook, records: Vec<UsageRecord>| -> Vec<Costed> {
        records
            .into_iter()
            .map(|mut record| {
                let price_version_id = book.cost(&mut record);
                Costed { record, price_version_id }
            })
            .collect()
    };
    let lane = store.ingest_lanes.get().await;
    let (txn, records, mut ids) = match lane.as_ref().and_then(|l| l.db().map(|db| (l, db))) {
        // Postgres: binary COPY on a lane, then one statement inserts the new records and rolls them up.
        Some((lane, db)) => {
            let book = PriceBook::load(db, batch.records.iter().map(|r| r.model.as_str())).await?;
            let records = cost(&book, batch.records);
            // Each record once: a repeat within the batch would be rolled up twice by the join back to the stage.
            let mut seen = HashSet::with_capacity(records.len());
            let staged: Vec<usage_copy::Staged<'_>> = records
                .iter()
                .filter(|c| seen.insert((c.record.id, c.record.started_at)))
                .map(|c| usage_copy::Staged { record: &c.record, price_version_id: c.price_version_id })
                .collect();
            usage_copy::stage(lane, &staged, store.reporting_zone).await?;
            let txn = begin_write(db).await?;
            let ids = usage_copy::insert_and_roll_up(&txn, staged.len(), now, shard).await?;
            (txn, records, ids)
        }
        None => {
            let txn = begin_write(&store.db).await?;
            let book = PriceBook::load(&txn, batch.records.iter().map(|r| r.model.as_str())).await?;
            let records = cost(&book, batch.records);
            let ids = insert_new(&txn, &records, now).await?;
            // Each new id once, even when a record is repeated within the batch.
            let mut pending = ids.clone();
            let new = records.iter().filter(|c| pending.remove(&c.record.id));
            let sums =
                rollups::aggregate(new.map(|c| (&c.record, c.price_version_id.unwrap_or(0))), store.reporting_zone);
            rollups::apply(&txn, &sums, shard).await?;
            (txn, records, ids)
        }
    };
    // `remove`, so a record repeated within the batch counts once.
    let new: Vec<&Costed> = records.iter().filter(|c| ids.remove(&c.record.id)).collect();
    let stored = new.len() as u64;
    let new_records: Vec<&UsageRecord> = new.iter().map(|c| &c.record).collect();
    let spend = limits::after_ingest(&txn, &batch.node_id, newest, &new_records, now).await?;
    txn.commit().await?;
    // Budgeted spend moved: nodes get the new totals with the next snapshot, at once when a budget is near its cap.
    match spend {
        limits::SpendMoved::No => {}
        limits::SpendMoved::Yes => store.republish.ring_spend(),
        limits::SpendMoved::NearCap => store.republish.ring(),
    }
    tracing::info!(node_id = %batch.node_id, received, stored, "usage batch stored");
    Ok(UsageAck { received, stored, duplicates: received.saturating_sub(stored) })
}

/// Query string of `GET /usage`. `from` is inclusive, `to` exclusive.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UsageFilter {
    pub team_id: Option<i64>,
    pub key_id: Option<i64>,
    pub model: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: Option<u64>,
    /// Continue after this record (the last one of the previous page).
    pub before_id: Option<Uuid>,
}

/// A stored record: the node's record plus when the control plane received it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredUsage {
    #[serde(flatten)]
    pub record: UsageRecord,
    pub received_at: DateTime<Utc>,
    /// The price version the control plane costed the record with (`record.cost_micros` is that cost).
    #[serde(default)]
    pub price_version_id: Option<i64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageTotals {
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_micros: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsagePage {
    pub data: Vec<StoredUsage>,
    /// Over everything the filter matches, not just this page.
    pub totals: UsageTotals,
}

impl From<usage_records::Model> for StoredUsage {
    fn from(m: usage_records::Model) -> Self {
        Self {
            record: UsageRecord {
                id: m.id,
                request_id: m.request_id,
                node_id: m.node_id,
                team_id: m.team_id,
                key_id: m.key_id,
                model: m.model,
                provider_id: m.provider_id,
                upstream_model: m.upstream_model,
                started_at: m.started_at,
                duration_us: u64::try_from(m.duration_us).unwrap_or_default(),
                ttft_us: m.ttft_us.map(|t| u64::try_from(t).unwrap_or_default()),
                status: u16::try_from(m.status).unwrap_or_default(),
                error_code: m.error_code,
                stream: m.stream,
                prompt_tokens: u64::try_from(m.prompt_tokens).unwrap_or_default(),
                completion_tokens: u64::try_from(m.completion_tokens).unwrap_or_default(),
                cached_input_tokens: u64::try_from(m.cached_input_tokens).unwrap_or_default(),
                cache_write_tokens: u64::try_from(m.cache_write_tokens).unwrap_or_default(),
                reasoning_tokens: u64::try_from(m.reasoning_tokens).unwrap_or_default(),
                usage_source: parse_source(&m.usage_source),
                cost_micros: m.cost_micros,
            },
            received_at: m.received_at,
            price_version_id: m.price_version_id,
        }
    }
}

fn condition(f: &UsageFilter) -> Condition {
    use usage_records::Column as C;
    Condition::all()
        .add_option(f.team_id.map(|v| C::TeamId.eq(v)))
        .add_option(f.key_id.map(|v| C::KeyId.eq(v)))
        .add_option(f.model.clone().map(|v| C::Model.eq(v)))
        .add_option(f.from.map(|v| C::StartedAt.gte(v)))
        .add_option(f.to.map(|v| C::StartedAt.lt(v)))
}

fn sum_i64(col: usage_records::Column) -> Expr {
    Func::cast_as(Func::coalesce([Expr::from(Func::sum(Expr::col(col))), Expr::val(0i64)]), Alias::new("BIGINT")).into()
}

async fn sum_records(conn: &impl ConnectionTrait, cond: Condition) -> Result<UsageTotals, DomainError> {
    use usage_records::Column as C;
    let row = usage_records::Entity::find()
        .filter(cond)
        .select_only()
        .column_as(Expr::from(Func::count(Expr::col(C::Id))), "requests")
        .column_as(sum_i64(C::PromptTokens), "prompt_tokens")
        .column_as(sum_i64(C::CompletionTokens), "completion_tokens")
        .column_as(sum_i64(C::CostMicros), "cost_micros")
        .into_tuple::<(i64, i64, i64, i64)>()
        .one(conn)
        .await?
        .unwrap_or_default();
    Ok(UsageTotals { requests: row.0, prompt_tokens: row.1, completion_tokens: row.2, cost_micros: row.3 })
}

async fn sum_rollups(
    conn: &impl ConnectionTrait,
    f: &UsageFilter,
    first: Option<NaiveDate>,
    end: Option<NaiveDate>,
) -> Result<UsageTotals, DomainError> {
    use usage_rollups::Column as C;
    let sum = |col: C| -> Expr {
        Func::cast_as(Func::coalesce([Expr::from(Func::sum(Expr::col(col))), Expr::val(0i64)]), Alias::new("BIGINT"))
            .into()
    };
    let cond = Condition::all()
        .add_option(f.team_id.map(|v| C::TeamId.eq(v)))
        .add_option(f.key_id.map(|v| C::KeyId.eq(v)))
        .add_option(f.model.clone().map(|v| C::Model.eq(v)))
        .add_option(first.map(|d| C::Day.gte(d)))
        .add_option(end.map(|d| C::Day.lt(d)));
    let row = usage_rollups::Entity::find()
        .filter(cond)
        .select_only()
        .column_as(sum(C::Requests), "requests")
        .column_as(sum(C::PromptTokens), "prompt_tokens")
        .column_as(sum(C::CompletionTokens), "completion_tokens")
        .column_as(sum(C::CostMicros), "cost_micros")
        .into_tuple::<(i64, i64, i64, i64)>()
        .one(conn)
        .await?
        .unwrap_or_default();
    Ok(UsageTotals { requests: row.0, prompt_tokens: row.1, completion_tokens: row.2, cost_micros: row.3 })
}

impl std::ops::Add for UsageTotals {
    type Output = Self;

    fn add(self, o: Self) -> Self {
        Self {
            requests: self.requests + o.requests,
            prompt_tokens: self.prompt_tokens + o.prompt_tokens,
            completion_tokens: self.completion_tokens + o.completion_tokens,
            cost_micros: self.cost_micros + o.cost_micros,
        }
    }
}

/// Totals over everything the filter matches: the whole reporting days inside `[from, to)` from the usage rollups,
/// the partial days at either edge from the records (an index range on `started_at`). A filter shorter than a day
/// reads only records; a filter on whole days (as the console's date fields give) reads only rollups.
async fn totals(store: &Store, f: &UsageFilter) -> Result<UsageTotals, DomainError> {
    let zone = store.reporting_zone;
    // The first whole day starts at or after `from`; the days before the one `to` falls on end at or before `to`.
    let first = f.from.map(|t| {
        let day = zone.date_of(t);
        if zone.midnight(day) == t { day } else { day + Duration::days(1) }
    });
    let end = f.to.map(|t| zone.date_of(t));
    if let (Some(first), Some(end)) = (first, end)
        && first >= end
    {
        return sum_records(&store.db, condition(f)).await;
    }
    let mut sums = sum_rollups(&store.db, f, first, end).await?;
    if let (Some(from), Some(first)) = (f.from, first)
        && from < zone.midnight(first)
    {
        let edge = UsageFilter { to: Some(zone.midnight(first)), ..f.clone() };
        sums = sums + sum_records(&store.db, condition(&edge)).await?;
    }
    if let (Some(to), Some(end)) = (f.to, end)
        && zone.midnight(end) < to
    {
        let edge = UsageFilter { from: Some(zone.midnight(end)), ..f.clone() };
        sums = sums + sum_records(&store.db, condition(&edge)).await?;
    }
    Ok(sums)
}

/// Records matching the filter, newest first (by `started_at`, then id), with totals over the whole filter.
pub async fn query(store: &Store, filter: UsageFilter) -> Result<UsagePage, DomainError> {
    use usage_records::Column as C;
    let limit = filter.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(DomainError::invalid("limit", format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    if let (Some(from), Some(to)) = (filter.from, filter.to)
        && from > to
    {
        return Err(DomainError::invalid("from", "from must not be after to"));
    }
    let mut page_cond = condition(&filter);
    if let Some(before) = filter.before_id {
        let anchor = usage_records::Entity::find_by_id(before)
            .one(&store.db)
            .await?
            .ok_or_else(|| DomainError::invalid("before_id", "no usage record has this id"))?;
        page_cond = page_cond.add(
            Condition::any()
                .add(C::StartedAt.lt(anchor.started_at))
                .add(Condition::all().add(C::StartedAt.eq(anchor.started_at)).add(C::Id.lt(before))),
        );
    }
    let rows = usage_records::Entity::find()
        .filter(page_cond)
        .order_by_desc(C::StartedAt)
        .order_by_desc(C::Id)
        .limit(limit)
        .all(&store.db)
        .await?;
    Ok(UsagePage { data: rows.into_iter().map(StoredUsage::from).collect(), totals: totals(store, &filter).await? })
}
