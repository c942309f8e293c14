//! Postgres only: the monthly partitions of `usage_records`, and the retention that drops old ones.
//!
//! `usage_records` is partitioned by `RANGE (started_at)` (migration `m20261210_000001_usage_partitions`), one
//! partition per calendar month of the reporting time zone (`usage_records_pYYYYMM`, from that zone's midnight of
//! the 1st to the next 1st), plus `usage_records_default` as a safety net for records no monthly partition takes.
//! Partitions are created
//! - at start and hourly by [`start`]: the current month and the next [`AHEAD`] months, plus every month that rows
//!   in the DEFAULT partition belong to (rows converted by the migration, or records that arrived for a month with
//!   no partition), whose rows are moved into the new partition;
//! - at ingest, before the insert, for a month a record falls in that this process has not seen a partition for
//!   ([`ensure_for`]), when that month is no further than [`AHEAD_AT_INGEST`] months ahead (a record with a
//!   nonsensical time lands in DEFAULT instead of creating a partition).
//!
//! Every change runs in a transaction holding a transaction-level advisory lock, so replicas never race each other.
//!
//! Retention (`SWITCHYARD_USAGE_RETENTION_MONTHS`, 0 = off, the default) keeps the current month and the N months
//! before it and drops whole older partitions. A month is dropped only when its usage rollups match its records
//! exactly (per team, key, model and price version: requests, tokens, cost): rollups are written in the same
//! transaction as the records, so this holds unless something is wrong, and then nothing is dropped and a warning
//! is logged. After a drop, `usage_retention.records_from` says from which reporting day raw records are kept;
//! reports, invoices and budgets read rollups and counters, which are never dropped.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Datelike as _, Months, NaiveDate, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, Statement, TransactionTrait as _,
};
use switchyard_shared::period::Zone;
use tokio::sync::watch;

use super::DomainError;

/// Key of the transaction-level advisory lock that serialises partition changes across replicas ("SWYDPART").
pub const PARTITION_LOCK_KEY: i64 = 0x5357_5944_5041_5254;
/// Months created ahead of the current one.
pub const AHEAD: u32 = 3;
/// Ingest creates a missing partition for records at most this many months ahead; later ones go to DEFAULT.
pub const AHEAD_AT_INGEST: u32 = 12;
/// How often the maintenance job runs.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(3600);
const DEFAULT_PARTITION: &str = "usage_records_default";

/// The first day of the month `d` falls in.
fn month_of(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

fn add_months(month: NaiveDate, n: u32) -> NaiveDate {
    month.checked_add_months(Months::new(n)).unwrap_or(month)
}

fn sub_months(month: NaiveDate, n: u32) -> NaiveDate {
    month.checked_sub_months(Months::new(n)).unwrap_or(month)
}

/// `usage_records_p202612` for December 2026.
pub fn partition_name(month: NaiveDate) -> String {
    format!("usage_records_p{:04}{:02}", month.year(), month.month())
}

fn parse_partition_name(name: &str) -> Option<NaiveDate> {
    let digits = name.strip_prefix("usage_records_p")?;
    if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::from_ymd_opt(digits[..4].parse().ok()?, digits[4..].parse().ok()?, 1)
}

/// A timestamp literal for partition bounds (DDL takes no bind parameters; these strings are ours).
fn literal(t: DateTime<Utc>) -> String {
    format!("'{}'", t.format("%Y-%m-%d %H:%M:%S%.6f+00"))
}

/// Months this process knows to have a partition: ingest asks the database only about the others.
#[derive(Clone, Debug, Default)]
pub struct Partitions {
    known: Arc<Mutex<BTreeSet<NaiveDate>>>,
}

impl Partitions {
    fn is_known(&self, month: NaiveDate) -> bool {
        self.known.lock().map(|k| k.contains(&month)).unwrap_or(false)
    }

    fn remember(&self, months: impl IntoIterator<Item = NaiveDate>) {
        if let Ok(mut k) = self.known.lock() {
            k.extend(months);
        }
    }

    fn forget_before(&self, month: NaiveDate) {
        if let Ok(mut k) = self.known.lock() {
            k.retain(|m| *m >= month);
        }
    }
}

fn is_postgres(conn: &impl ConnectionTrait) -> bool {
    conn.get_database_backend() == DatabaseBackend::Postgres
}

async fn exec(conn: &impl ConnectionTrait, sql: &str) -> Result<(), DomainError> {
    conn.execute_unprepared(sql).await?;
    Ok(())
}

/// Begins a transaction holding the partition lock; `wait = false` gives `None` when another replica holds it.
async fn locked(db: &DatabaseConnection, wait: bool) -> Result<Option<DatabaseTransaction>, DomainError> {
    let txn = db.begin().await?;
    // DDL on the parent waits for running ingest transactions (milliseconds each), and new ones queue behind it:
    // give up soon rather than stall ingest; the next pass retries.
    exec(&txn, "SET LOCAL lock_timeout = '3s'").await?;
    let sql = if wait {
        "SELECT pg_advisory_xact_lock($1) IS NULL AS got"
    } else {
        "SELECT pg_try_advisory_xact_lock($1) AS got"
    };
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, [PARTITION_LOCK_KEY.into()]))
        .await?;
    let got: bool = row.map(|r| r.try_get("", "got")).transpose()?.unwrap_or(false);
    // `pg_advisory_xact_lock` returns void (NULL): having returned at all means the lock is held.
    Ok((wait || got).then_some(txn))
}

/// The monthly partitions that exist, oldest first.
pub async fn existing(conn: &impl ConnectionTrait) -> Result<Vec<NaiveDate>, DomainError> {
    if !is_postgres(conn) {
        return Ok(Vec::new());
    }
    let rows = conn
        .query_all_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT c.relname::text AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'usage_records'::regclass",
        ))
        .await?;
    let mut months: Vec<NaiveDate> = rows
        .iter()
        .filter_map(|r| r.try_get::<String>("", "name").ok())
        .filter_map(|n| parse_partition_name(&n))
        .collect();
    months.sort();
    Ok(months)
}

/// Creates the partition of `month` unless it exists, moving the DEFAULT partition's rows of that month into it.
/// Returns whether it created one. The caller holds the partition lock.
async fn create_month(txn: &DatabaseTransaction, zone: Zone, month: NaiveDate) -> Result<bool, DomainError> {
    let name = partition_name(month);
    let exists = txn
        .query_one_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT to_regclass($1) IS NOT NULL AS present",
            [name.clone().into()],
        ))
        .await?
        .map(|r| r.try_get::<bool>("", "present"))
        .transpose()?
        .unwrap_or(false);
    if exists {
        return Ok(false);
    }
    let (from, to) = (literal(zone.midnight(month)), literal(zone.midnight(add_months(month, 1))));
    exec(txn, &format!("CREATE TABLE {name} (LIKE usage_records INCLUDING DEFAULTS)")).await?;
    exec(
        txn,
        &format!(
            "WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE started_at >= {from} AND started_at < {to} \
             RETURNING *) INSERT INTO {name} SELECT * FROM moved"
        ),
    )
    .await?;
    exec(txn, &format!("ALTER TABLE usage_records ATTACH PARTITION {name} FOR VALUES FROM ({from}) TO ({to})")).await?;
    tracing::info!(partition = %name, "usage partition created");
    Ok(true)
}

/// [`create_month`] in a savepoint: a month that cannot be created (its bounds overlap a partition made under
/// another reporting time zone) is logged and skipped, and its records land in DEFAULT.
async fn create_in_savepoint(txn: &DatabaseTransaction, zone: Zone, month: NaiveDate) -> Result<bool, DomainError> {
    let sp = txn.begin().await?;
    match create_month(&sp, zone, month).await {
        Ok(created) => {
            sp.commit().await?;
            Ok(created)
        }
        Err(e) => {
            sp.rollback().await?;
            tracing::warn!(error = %e, partition = %partition_name(month), "cannot create usage partition; its records go to the default partition");
            Ok(false)
        }
    }
}

/// Creates the partitions of `months` that are missing, in one locked transaction.
async fn create_months(db: &DatabaseConnection, zone: Zone, months: &BTreeSet<NaiveDate>) -> Result<(), DomainError> {
    let Some(txn) = locked(db, true).await? else { return Ok(()) };
    for &month in months {
        create_in_savepoint(&txn, zone, month).await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Before an insert: makes sure every month the records fall in has its partition (up to [`AHEAD_AT_INGEST`]
/// months ahead; months before the retention horizon are left to DEFAULT and its clean-up).
pub async fn ensure_for(
    db: &DatabaseConnection,
    partitions: &Partitions,
    zone: Zone,
    started: impl IntoIterator<Item = DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), DomainError> {
    if !is_postgres(db) {
        return Ok(());
    }
    let latest = add_months(month_of(zone.date_of(now)), AHEAD_AT_INGEST);
    let mut missing = BTreeSet::new();
    let mut last = None;
    for t in started {
        let month = month_of(zone.date_of(t));
        // Batches are mostly one month: skip the set for repeats.
        if last == Some(month) {
            continue;
        }
        last = Some(month);
        if month <= latest && !partitions.is_known(month) {
            missing.insert(month);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    if let Some(from) = records_from(db).await? {
        missing.retain(|m| *m >= month_of(from));
    }
    // Never fail a batch over a partition: without one, its records land in DEFAULT and the hourly pass retries.
    if let Err(e) = create_months(db, zone, &missing).await {
        tracing::warn!(error = %e, "cannot create usage partitions at ingest; records go to the default partition");
    }
    partitions.remember(missing);
    Ok(())
}

/// The reporting day from which raw records are kept (`None`: nothing was dropped).
pub async fn records_from(conn: &impl ConnectionTrait) -> Result<Option<NaiveDate>, DomainError> {
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT records_from FROM usage_retention WHERE id = 1",
        ))
        .await?;
    Ok(row.map(|r| r.try_get::<Option<NaiveDate>>("", "records_from")).transpose()?.flatten())
}

/// What one maintenance pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// `false` when another replica held the lock and this pass did nothing.
    pub ran: bool,
    pub created: Vec<String>,
    pub dropped: Vec<String>,
    /// A month retention would drop but whose rollups do not match its records (kept, with a warning).
    pub kept_unverified: Option<String>,
}

/// One maintenance pass: partitions for the current month and [`AHEAD`] more, and for every month with rows in
/// DEFAULT (from the retention horizon to [`AHEAD_AT_INGEST`] months ahead); then retention. `wait` blocks on
/// another replica's pass instead of skipping.
pub async fn maintain(
    db: &DatabaseConnection,
    partitions: &Partitions,
    zone: Zone,
    retention_months: u32,
    now: DateTime<Utc>,
    wait: bool,
) -> Result<Maintenance, DomainError> {
    let mut done = Maintenance::default();
    if !is_postgres(db) {
        return Ok(done);
    }
    let Some(txn) = locked(db, wait).await? else { return Ok(done) };
    done.ran = true;
    let current = month_of(zone.date_of(now));
    let horizon = (retention_months > 0).then(|| sub_months(current, retention_months));
    let mut months: BTreeSet<NaiveDate> = (0..=AHEAD).map(|i| add_months(current, i)).collect();
    let stray = txn
        .query_all_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            format!("SELECT DISTINCT date_trunc('day', started_at) AS day FROM {DEFAULT_PARTITION}"),
        ))
        .await?;
    let latest = add_months(current, AHEAD_AT_INGEST);
    for row in stray {
        let day: DateTime<Utc> = row.try_get("", "day")?;
        // Days of UTC; the zone's day differs by at most one, so look at both neighbours' months.
        for t in [day - chrono::Duration::days(1), day, day + chrono::Duration::days(1)] {
            let month = month_of(zone.date_of(t));
            if month <= latest && horizon.is_none_or(|h| month >= h) {
                months.insert(month);
            }
        }
    }
    for &month in &months {
        if create_in_savepoint(&txn, zone, month).await? {
            done.created.push(partition_name(month));
        }
    }
    if let Some(horizon) = horizon {
        retain(&txn, horizon, &mut done).await?;
    }
    txn.commit().await?;
    partitions.remember(months);
    if let Some(h) = horizon {
        partitions.forget_before(h);
    }
    Ok(done)
}

/// Whether the month's rollups match its records exactly (per team, key, model and price version).
async fn rollups_cover(txn: &DatabaseTransaction, month: NaiveDate) -> Result<bool, DomainError> {
    let name = partition_name(month);
    let sql = format!(
        "SELECT count(*) AS differing FROM \
         (SELECT team_id, key_id, model, COALESCE(price_version_id, 0) AS pv, count(*) AS n, \
          SUM(prompt_tokens) AS p, SUM(completion_tokens) AS c, SUM(cost_micros) AS m FROM {name} \
          GROUP BY 1, 2, 3, 4) r \
         FULL JOIN (SELECT team_id, key_id, model, price_version_id AS pv, SUM(requests) AS n, \
          SUM(prompt_tokens) AS p, SUM(completion_tokens) AS c, SUM(cost_micros) AS m FROM usage_rollups \
          WHERE day >= $1 AND day < $2 GROUP BY 1, 2, 3, 4) u USING (team_id, key_id, model, pv) \
         WHERE r.n IS DISTINCT FROM u.n OR r.p IS DISTINCT FROM u.p OR r.c IS DISTINCT FROM u.c \
          OR r.m IS DISTINCT FROM u.m"
    );
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            sql,
            [month.into(), add_months(month, 1).into()],
        ))
        .await?;
    let differing: i64 = row.map(|r| r.try_get("", "differing")).transpose()?.unwrap_or(0);
    Ok(differing == 0)
}

/// Drops, oldest first, every monthly partition before `horizon` whose rollups cover it; stops at the first that
/// does not. Moves `usage_retention.records_from` past the last month dropped. Rows in DEFAULT are left alone.
async fn retain(txn: &DatabaseTransaction, horizon: NaiveDate, done: &mut Maintenance) -> Result<(), DomainError> {
    let mut kept = None;
    for month in existing(txn).await?.into_iter().filter(|m| *m < horizon) {
        let name = partition_name(month);
        if !rollups_cover(txn, month).await? {
            tracing::warn!(partition = %name, "usage retention: the month's rollups do not match its records; kept");
            done.kept_unverified = Some(name);
            break;
        }
        exec(txn, &format!("DROP TABLE {name}")).await?;
        tracing::info!(partition = %name, "usage retention: partition dropped");
        done.dropped.push(name);
        kept = Some(add_months(month, 1));
    }
    let Some(from) = kept else { return Ok(()) };
    if records_from(txn).await?.is_some_and(|p| p >= from) {
        return Ok(());
    }
    txn.execute_raw(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "INSERT INTO usage_retention (id, records_from) VALUES (1, $1) \
         ON CONFLICT (id) DO UPDATE SET records_from = excluded.records_from",
        [from.into()],
    ))
    .await?;
    Ok(())
}

/// Runs [`maintain`] every [`MAINTENANCE_INTERVAL`] until stopping (Postgres only; start-up runs it once itself).
pub fn start(
    db: DatabaseConnection,
    partitions: Partitions,
    zone: Zone,
    retention_months: u32,
    mut stopping: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if !is_postgres(&db) {
        return None;
    }
    Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(MAINTENANCE_INTERVAL) => {}
                _ = stopping.wait_for(|s| *s) => return,
            }
            match maintain(&db, &partitions, zone, retention_months, Utc::now(), false).await {
                Ok(done) if !done.created.is_empty() || !done.dropped.is_empty() => {
                    tracing::info!(created = ?done.created, dropped = ?done.dropped, "usage partitions maintained");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "usage partition maintenance failed; retrying next hour"),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip() {
        let m = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert_eq!(partition_name(m), "usage_records_p202612");
        assert_eq!(parse_partition_name("usage_records_p202612"), Some(m));
        assert_eq!(parse_partition_name("usage_records_default"), None);
        assert_eq!(add_months(m, 1), NaiveDate::from_ymd_opt(2027, 1, 1).unwrap());
        assert_eq!(sub_months(m, 12), NaiveDate::from_ymd_opt(2025, 12, 1).unwrap());
    }
}
