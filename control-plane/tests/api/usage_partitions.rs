//! Postgres only: monthly partitions of `usage_records` (created ahead at start, on demand at ingest, moved out of
//! DEFAULT), retention dropping old months while their rollups stay, idempotency over the `(id, started_at)` key,
//! and the migration converting an existing table with rows.

use chrono::{DateTime, Datelike as _, Months, NaiveDate, TimeZone as _, Utc};
use sea_orm::{ConnectionTrait as _, Database, DatabaseBackend, DatabaseConnection, Statement};
use switchyard_control_plane::domain::partitions::{self, Partitions, partition_name};
use switchyard_control_plane::domain::rollups;
use switchyard_migrations::{Migrator, MigratorTrait as _};
use switchyard_shared::UsageBatch;
use switchyard_shared::period::Zone;

use crate::helpers::{Backend, TestDatabase, spawn_app, spawn_app_with, usage_record};

fn this_month() -> NaiveDate {
    Utc::now().date_naive().with_day(1).unwrap()
}

pub(crate) fn month(offset: i32) -> NaiveDate {
    let m = this_month();
    if offset >= 0 {
        m.checked_add_months(Months::new(offset.unsigned_abs())).unwrap()
    } else {
        m.checked_sub_months(Months::new(offset.unsigned_abs())).unwrap()
    }
}

/// Noon on the 10th of the month `offset` months from now (UTC, the tests' reporting zone).
pub(crate) fn in_month(offset: i32) -> DateTime<Utc> {
    let m = month(offset);
    Utc.with_ymd_and_hms(m.year(), m.month(), 10, 12, 0, 0).unwrap()
}

async fn partitions_of(db: &DatabaseConnection) -> Vec<String> {
    let rows = db
        .query_all_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT c.relname::text AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'usage_records'::regclass ORDER BY 1",
        ))
        .await
        .unwrap();
    rows.iter().map(|r| r.try_get::<String>("", "name").unwrap()).collect()
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db.query_one_raw(Statement::from_string(DatabaseBackend::Postgres, sql)).await.unwrap().unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_exist_after_start_and_records_land_in_their_month() {
    let app = spawn_app(Backend::Postgres).await;
    let db = &app.db_pool;
    let mut want: Vec<String> = (0..=3).map(|i| partition_name(month(i))).collect();
    want.push("usage_records_default".to_owned());
    want.sort();
    assert_eq!(partitions_of(db).await, want, "current month, three ahead, and DEFAULT");
    let pk = count(
        db,
        "SELECT count(*) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
         WHERE i.indrelid = 'usage_records'::regclass AND i.indisprimary",
    )
    .await;
    assert_eq!(pk, 2, "primary key (id, started_at)");

    // Months with no partition yet: 7 ahead and 5 back are created at ingest; 30 ahead goes to DEFAULT.
    let records = vec![
        usage_record(1, 10, "m", in_month(0), 1, 1, 10),
        usage_record(1, 10, "m", in_month(7), 1, 1, 20),
        usage_record(1, 10, "m", in_month(-5), 1, 1, 30),
        usage_record(1, 10, "m", in_month(30), 1, 1, 40),
    ];
    let batch = UsageBatch { node_id: "n".to_owned(), records: records.clone() };
    assert_eq!(app.post_usage(&batch).await.stored, 4);
    let names = partitions_of(db).await;
    assert!(names.contains(&partition_name(month(7))) && names.contains(&partition_name(month(-5))), "{names:?}");
    assert!(!names.contains(&partition_name(month(30))), "{names:?}");
    for (record, table) in [
        (&records[0], partition_name(month(0))),
        (&records[1], partition_name(month(7))),
        (&records[2], partition_name(month(-5))),
        (&records[3], "usage_records_default".to_owned()),
    ] {
        let n = count(
            db,
            &format!(
                "SELECT count(*) FROM usage_records WHERE id = '{}' AND tableoid = '{table}'::regclass",
                record.id
            ),
        )
        .await;
        assert_eq!(n, 1, "record of {} in {table}", record.started_at);
    }

    // Idempotency over (id, started_at): the same batch again, across four partitions, stores nothing.
    let again = app.post_usage(&batch).await;
    assert_eq!((again.stored, again.duplicates), (0, 4));
    assert_eq!(count(db, "SELECT count(*) FROM usage_records").await, 4);
    assert_eq!(app.usage("").await.totals.requests, 4);
    assert!(rollups::check(db, Zone::UTC).await.unwrap().is_consistent());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_old_months_and_keeps_their_rollups() {
    let app = spawn_app(Backend::Postgres).await;
    let db = &app.db_pool;
    let records = vec![
        usage_record(1, 10, "m", in_month(-6), 5, 5, 100),
        usage_record(1, 10, "m", in_month(-4), 5, 5, 200),
        usage_record(1, 10, "m", in_month(-1), 5, 5, 300),
        usage_record(1, 10, "m", in_month(0), 5, 5, 400),
    ];
    app.post_usage(&UsageBatch { node_id: "n".to_owned(), records }).await;
    let rollup_cost = "SELECT COALESCE(SUM(cost_micros), 0)::bigint FROM usage_rollups";
    assert_eq!(count(db, rollup_cost).await, 1_000);

    // A month whose rollups do not match its records is never dropped, nor anything after it.
    db.execute_unprepared(&format!("UPDATE usage_rollups SET requests = requests + 1 WHERE day < '{}'", month(-5)))
        .await
        .unwrap();
    let held = partitions::maintain(db, &Partitions::default(), Zone::UTC, 2, Utc::now(), true).await.unwrap();
    assert_eq!(held.dropped, Vec::<String>::new());
    assert_eq!(held.kept_unverified, Some(partition_name(month(-6))));
    db.execute_unprepared(&format!("UPDATE usage_rollups SET requests = requests - 1 WHERE day < '{}'", month(-5)))
        .await
        .unwrap();

    // Keep this month and the two before it: the months 6 and 4 back go, their rollups stay.
    let done = partitions::maintain(db, &Partitions::default(), Zone::UTC, 2, Utc::now(), true).await.unwrap();
    assert_eq!(done.dropped, [partition_name(month(-6)), partition_name(month(-4))]);
    assert_eq!(count(db, "SELECT count(*) FROM usage_records").await, 2);
    assert_eq!(count(db, rollup_cost).await, 1_000, "rollups keep the aggregates");
    assert_eq!(partitions::records_from(db).await.unwrap(), Some(month(-3)));
    let check = rollups::check(db, Zone::UTC).await.unwrap();
    assert!(check.is_consistent(), "the check skips the dropped months: {check:?}");
    assert_eq!(check.records, 2);
    // Reports over the dropped months still come from the rollups.
    let from = Utc.from_utc_datetime(&month(-6).and_hms_opt(0, 0, 0).unwrap()).to_rfc3339();
    let page = app.usage(&format!("from={}", from.replace('+', "%2B"))).await;
    assert_eq!(page.totals.cost_micros, 1_000);

    // Nothing more to drop the second time.
    let again = partitions::maintain(db, &Partitions::default(), Zone::UTC, 2, Utc::now(), true).await.unwrap();
    assert!(again.ran && again.dropped.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_converts_a_table_with_rows() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let db = Database::connect(&database.url).await.unwrap();
    let all = Migrator::migrations().len();
    Migrator::up(&db, Some(u32::try_from(all - 1).unwrap())).await.unwrap();
    let started = [in_month(-2), in_month(0), in_month(0)];
    for (i, t) in started.iter().enumerate() {
        db.execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "INSERT INTO usage_records (id, request_id, node_id, team_id, key_id, model, started_at, duration_us, \
             status, stream, prompt_tokens, completion_tokens, usage_source, cost_micros, received_at) \
             VALUES (gen_random_uuid(), $1, 'n', 1, 10, 'm', $2, 1, 200, false, 1, 1, 'upstream', 7, now())",
            [format!("req-{i}").into(), (*t).into()],
        ))
        .await
        .unwrap();
    }
    Migrator::up(&db, None).await.unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM usage_records").await, 3);
    assert_eq!(count(&db, "SELECT count(*) FROM usage_records_default").await, 3, "the migration knows no zone");
    db.close().await.unwrap();

    // The control plane's start creates the monthly partitions and moves the rows into them.
    let app = spawn_app_with(database, |_| {}).await;
    let db = &app.db_pool;
    assert_eq!(count(db, "SELECT count(*) FROM usage_records_default").await, 0);
    let table = partition_name(month(-2));
    assert_eq!(count(db, &format!("SELECT count(*) FROM {table}")).await, 1);
    assert_eq!(count(db, &format!("SELECT count(*) FROM {}", partition_name(month(0)))).await, 2);
    // Rows inserted behind ingest's back have no rollups; the listing reads the records.
    assert_eq!(app.usage("").await.data.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ingest_lanes_batches_take_the_json_path_with_the_same_results() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let app = spawn_app_with(database, |s| s.usage_ingest_lanes = 0).await;
    let mut records = vec![
        usage_record(1, 10, "m", in_month(0), 3, 4, 50),
        usage_record(1, 10, "m", in_month(-1), 3, 4, 60),
        usage_record(2, 20, "m", in_month(0), 1, 1, 70),
    ];
    records[2].status = 502;
    records[2].ttft_us = None;
    records.push(records[0].clone());
    let batch = UsageBatch { node_id: "n".to_owned(), records };
    let first = app.post_usage(&batch).await;
    assert_eq!((first.stored, first.duplicates), (3, 1));
    let again = app.post_usage(&batch).await;
    assert_eq!((again.stored, again.duplicates), (0, 4));
    let page = app.usage("").await;
    assert_eq!((page.data.len(), page.totals.cost_micros), (3, 180));
    assert!(rollups::check(&app.db_pool, Zone::UTC).await.unwrap().is_consistent());
}
