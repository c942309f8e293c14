//! Postgres ingest fast path: a batch goes to the server as one binary `COPY` into a session-local staging table,
//! then one statement inserts the new records and adds their usage rollups.
//!
//! Why: profiled on a 5,000-record batch (BENCHMARKS.md "Usage ingest"), Postgres spent about as long decoding the
//! batch's JSON (`json_to_recordset`) as inserting it; binary COPY decodes ~7× faster. `COPY` needs the raw
//! connection, and the staging table must be visible to the transaction that follows, so ingest uses *lanes*: a few
//! connections of their own (each a one-connection pool, so the COPY and the transaction run on the same session
//! and its `TEMP` table). The transaction checks that the staging table holds exactly the batch (a lane whose
//! connection was replaced in between would hold nothing) and fails the batch otherwise; the node sends it again.
//!
//! The batch is staged without repeats (a record sent twice within one batch is staged once), so every record the
//! insert returns matches exactly one staged row.
//!
//! The one statement: `WITH ins AS (INSERT … SELECT … FROM usage_stage ON CONFLICT (id, started_at) DO NOTHING
//! RETURNING …), roll AS (INSERT INTO usage_rollups SELECT … FROM <the staged rows ins returned> GROUP BY …
//! ON CONFLICT … DO UPDATE …) SELECT id FROM ins`: only newly inserted records reach the rollups; a record's
//! reporting day is computed in Rust (the reporting zone's calendar, as everywhere else) and staged with it.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::sqlx;
use sea_orm::sqlx::postgres::PgPoolOptions;
use sea_orm::{DatabaseBackend, DatabaseConnection, SqlxPostgresConnector, Statement};
use switchyard_shared::UsageRecord;
use switchyard_shared::period::Zone;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::DomainError;

/// Default number of lanes (dedicated connections) for concurrent batches (`SWITCHYARD_USAGE_INGEST_LANES`).
pub const LANES: usize = 4;

const STAGE_COLUMNS: &str = "id, request_id, node_id, team_id, key_id, model, provider_id, upstream_model, started_at, \
duration_us, ttft_us, status, error_code, stream, prompt_tokens, completion_tokens, cached_input_tokens, \
cache_write_tokens, reasoning_tokens, usage_source, cost_micros, price_version_id, day";

const CREATE_STAGE: &str = "CREATE TEMP TABLE usage_stage (id uuid, request_id text, node_id text, team_id bigint, \
key_id bigint, model text, provider_id bigint, upstream_model text, started_at timestamptz, duration_us bigint, \
ttft_us bigint, status integer, error_code text, stream boolean, prompt_tokens bigint, completion_tokens bigint, \
cached_input_tokens bigint, cache_write_tokens bigint, reasoning_tokens bigint, usage_source text, \
cost_micros bigint, price_version_id bigint, day date)";

/// `$1`: received_at, `$2`: the rollup shard. Rollup rows are inserted in key order, so concurrent batches lock
/// shared rows in the same order.
const INSERT_AND_ROLL_UP: &str = "WITH ins AS (INSERT INTO usage_records (id, request_id, node_id, team_id, key_id, \
model, provider_id, upstream_model, started_at, duration_us, ttft_us, status, error_code, stream, prompt_tokens, \
completion_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, usage_source, cost_micros, \
price_version_id, received_at) SELECT id, request_id, node_id, team_id, key_id, model, provider_id, upstream_model, \
started_at, duration_us, ttft_us, status, error_code, stream, prompt_tokens, completion_tokens, cached_input_tokens, \
cache_write_tokens, reasoning_tokens, usage_source, cost_micros, price_version_id, $1 FROM usage_stage \
ON CONFLICT (id, started_at) DO NOTHING RETURNING id, started_at), \
new AS (SELECT s.* FROM usage_stage s WHERE (s.id, s.started_at) IN (SELECT id, started_at FROM ins)), \
roll AS (INSERT INTO usage_rollups (team_id, key_id, model, price_version_id, day, shard, requests, errors, \
prompt_tokens, cached_input_tokens, cache_write_tokens, completion_tokens, reasoning_tokens, cost_micros) \
SELECT team_id, key_id, model, COALESCE(price_version_id, 0), day, $2, count(*), count(*) FILTER (WHERE status >= 400), \
SUM(prompt_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), SUM(completion_tokens), SUM(reasoning_tokens), \
SUM(cost_micros) FROM new GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5 \
ON CONFLICT (team_id, key_id, model, price_version_id, day, shard) DO UPDATE SET \
requests = usage_rollups.requests + excluded.requests, errors = usage_rollups.errors + excluded.errors, \
prompt_tokens = usage_rollups.prompt_tokens + excluded.prompt_tokens, \
cached_input_tokens = usage_rollups.cached_input_tokens + excluded.cached_input_tokens, \
cache_write_tokens = usage_rollups.cache_write_tokens + excluded.cache_write_tokens, \
completion_tokens = usage_rollups.completion_tokens + excluded.completion_tokens, \
reasoning_tokens = usage_rollups.reasoning_tokens + excluded.reasoning_tokens, \
cost_micros = usage_rollups.cost_micros + excluded.cost_micros) \
SELECT id FROM ins";

/// One lane: a pool of exactly one connection, so every use is the same session (and the same TEMP table).
#[derive(Clone, Debug)]
pub struct Lane {
    pub db: DatabaseConnection,
}

/// The ingest lanes; empty (the default, and on SQLite) means ingest takes the generic path.
#[derive(Clone, Debug, Default)]
pub struct Lanes {
    inner: Option<Arc<LanesInner>>,
}

#[derive(Debug)]
struct LanesInner {
    /// Held only to push or pop, never across an await.
    free: std::sync::Mutex<Vec<Lane>>,
    /// One permit per free lane: a holder of a permit always finds a lane in `free`.
    permits: Arc<Semaphore>,
}

/// A lane in use; goes back to the free list when dropped (before its permit is released).
pub struct LaneGuard {
    lane: Option<Lane>,
    lanes: Arc<LanesInner>,
    _permit: OwnedSemaphorePermit,
}

impl LaneGuard {
    pub fn db(&self) -> Option<&DatabaseConnection> {
        self.lane.as_ref().map(|l| &l.db)
    }
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        if let (Some(lane), Ok(mut free)) = (self.lane.take(), self.lanes.free.lock()) {
            free.push(lane);
        }
    }
}

impl Lanes {
    /// `n` lanes on the same server and credentials as `db` (connected lazily); none unless `db` is Postgres.
    pub fn connect(db: &DatabaseConnection, n: usize) -> Self {
        if db.get_database_backend() != DatabaseBackend::Postgres || n == 0 {
            return Self::default();
        }
        let options = (*db.get_postgres_connection_pool().connect_options()).clone();
        let lanes: Vec<Lane> = (0..n)
            .map(|_| {
                let pool = PgPoolOptions::new()
                    .max_connections(1)
                    .min_connections(0)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .acquire_timeout(std::time::Duration::from_secs(30))
                    .connect_lazy_with(options.clone());
                Lane { db: SqlxPostgresConnector::from_sqlx_postgres_pool(pool) }
            })
            .collect();
        let permits = Arc::new(Semaphore::new(lanes.len()));
        Self { inner: Some(Arc::new(LanesInner { free: std::sync::Mutex::new(lanes), permits })) }
    }

    /// Waits for a free lane; `None` when there are no lanes.
    pub async fn get(&self) -> Option<LaneGuard> {
        let inner = self.inner.clone()?;
        let permit = inner.permits.clone().acquire_owned().await.ok()?;
        let lane = inner.free.lock().ok()?.pop()?;
        Some(LaneGuard { lane: Some(lane), lanes: inner, _permit: permit })
    }
}

fn db_err(e: sqlx::Error) -> DomainError {
    DomainError::Db(sea_orm::DbErr::Exec(sea_orm::RuntimeErr::SqlxError(Arc::new(e))))
}

/// A staged record: the costed record plus its reporting day.
pub struct Staged<'a> {
    pub record: &'a UsageRecord,
    pub price_version_id: Option<i64>,
}

/// Days and microseconds count from 2000-01-01 in Postgres's binary format.
const PG_EPOCH_DAYS_FROM_CE: i32 = 730_120;
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

struct CopyBuf(Vec<u8>);

impl CopyBuf {
    fn new(rows: usize) -> Self {
        let mut b = Vec::with_capacity(19 + rows * 360 + 2);
        b.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        b.extend_from_slice(&0i32.to_be_bytes()); // flags
        b.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        Self(b)
    }

    fn field(&mut self, bytes: &[u8]) {
        // Fields are far below 2 GiB (a record's strings are bounded by the request size limit).
        self.0.extend_from_slice(&i32::try_from(bytes.len()).unwrap_or(i32::MAX).to_be_bytes());
        self.0.extend_from_slice(bytes);
    }

    fn null(&mut self) {
        self.0.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn i64(&mut self, v: i64) {
        self.field(&v.to_be_bytes());
    }

    fn opt_i64(&mut self, v: Option<i64>) {
        match v {
            Some(v) => self.i64(v),
            None => self.null(),
        }
    }

    fn text(&mut self, s: &str) {
        self.field(s.as_bytes());
    }

    fn opt_text(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.text(s),
            None => self.null(),
        }
    }

    fn timestamptz(&mut self, t: DateTime<Utc>) {
        self.i64(t.timestamp_micros() - PG_EPOCH_MICROS);
    }

    fn date(&mut self, d: NaiveDate) {
        use chrono::Datelike as _;
        self.field(&(d.num_days_from_ce() - PG_EPOCH_DAYS_FROM_CE).to_be_bytes());
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&(-1i16).to_be_bytes());
        self.0
    }
}

fn source_str(s: switchyard_shared::usage::UsageSource) -> &'static str {
    use switchyard_shared::usage::UsageSource;
    match s {
        UsageSource::Upstream => "upstream",
        UsageSource::Estimated => "estimated",
        UsageSource::None => "none",
    }
}

/// The batch in `COPY … (FORMAT binary)` form, columns as [`STAGE_COLUMNS`].
fn encode(rows: &[Staged<'_>], zone: Zone) -> Vec<u8> {
    let mut b = CopyBuf::new(rows.len());
    for s in rows {
        let r = s.record;
        b.0.extend_from_slice(&23i16.to_be_bytes());
        b.field(r.id.as_bytes());
        b.text(&r.request_id);
        b.text(&r.node_id);
        b.i64(r.team_id);
        b.i64(r.key_id);
        b.text(&r.model);
        b.opt_i64(r.provider_id);
        b.opt_text(r.upstream_model.as_deref());
        b.timestamptz(r.started_at);
        b.i64(clamp(r.duration_us));
        b.opt_i64(r.ttft_us.map(clamp));
        b.field(&i32::from(r.status).to_be_bytes());
        b.opt_text(r.error_code.as_deref());
        b.field(&[u8::from(r.stream)]);
        b.i64(clamp(r.prompt_tokens));
        b.i64(clamp(r.completion_tokens));
        b.i64(clamp(r.cached_input_tokens));
        b.i64(clamp(r.cache_write_tokens));
        b.i64(clamp(r.reasoning_tokens));
        b.text(source_str(r.usage_source));
        b.i64(r.cost_micros);
        b.opt_i64(s.price_version_id);
        b.date(zone.date_of(r.started_at));
    }
    b.finish()
}

/// Stages the batch on the lane's session: empties (or creates) `usage_stage`, then one binary COPY.
pub async fn stage(lane: &LaneGuard, rows: &[Staged<'_>], zone: Zone) -> Result<(), DomainError> {
    let Some(db) = lane.db() else { return Err(DomainError::Internal("ingest lane missing".into())) };
    let data = encode(rows, zone);
    let mut conn = db.get_postgres_connection_pool().acquire().await.map_err(db_err)?;
    if let Err(e) = sqlx::query("TRUNCATE usage_stage").execute(&mut *conn).await {
        let missing = e.as_database_error().and_then(|d| d.code()).is_some_and(|c| c == "42P01");
        if !missing {
            return Err(db_err(e));
        }
        sqlx::query(CREATE_STAGE).execute(&mut *conn).await.map_err(db_err)?;
    }
    let mut copy = conn
        .copy_in_raw(&format!("COPY usage_stage ({STAGE_COLUMNS}) FROM STDIN (FORMAT binary)"))
        .await
        .map_err(db_err)?;
    copy.send(data).await.map_err(db_err)?;
    copy.finish().await.map_err(db_err)?;
    Ok(())
}

/// Inside the lane's transaction: inserts the staged records that are new, adds them to the rollups of `shard`,
/// and returns their ids. Fails when the staging table does not hold exactly `expected` rows.
pub async fn insert_and_roll_up(
    txn: &impl sea_orm::ConnectionTrait,
    expected: usize,
    now: DateTime<Utc>,
    shard: i32,
) -> Result<std::collections::HashSet<Uuid>, DomainError> {
    let staged = txn
        .query_one_raw(Statement::from_string(DatabaseBackend::Postgres, "SELECT count(*) AS n FROM usage_stage"))
        .await?
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0);
    if usize::try_from(staged).ok() != Some(expected) {
        return Err(DomainError::Internal(format!("usage staging holds {staged} rows, the batch {expected}")));
    }
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            INSERT_AND_ROLL_UP,
            [now.into(), shard.into()],
        ))
        .await?;
    rows.iter().map(|row| Ok(row.try_get::<Uuid>("", "id")?)).collect()
}
