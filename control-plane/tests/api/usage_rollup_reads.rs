//! The console's aggregates read the usage rollups, and give the same numbers as the raw records: the dashboard's
//! days and models, and the usage explorer's totals for day-aligned filters (rollups only), partial-day filters
//! (rollups for the whole days, records for the edges) and filters shorter than a day (records only). Run in UTC
//! and in a zone whose days are not UTC days.

use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, TimeZone as _, Utc};
use sea_orm::EntityTrait as _;
use switchyard_control_plane::domain::dashboard::{self, Day, ModelUsage, Scope, Totals};
use switchyard_control_plane::domain::usage::UsageTotals;
use switchyard_control_plane::entities::usage_records;
use switchyard_shared::period::Zone;
use switchyard_shared::{UsageBatch, UsageRecord};

use crate::helpers::{Backend, TestApp, TestDatabase, spawn_app_with, usage_record};

/// Records over five days, at hours that straddle both UTC and Berlin midnights, on two teams, three keys and
/// two models, some failed.
fn records() -> Vec<UsageRecord> {
    let mut out = Vec::new();
    let start = Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap();
    for i in 0..120i64 {
        let at = start + Duration::minutes(i * 61 + (i % 7) * 13);
        let (team, key) = [(1, 10), (1, 11), (2, 20)][(i % 3) as usize];
        let model = if i % 4 == 0 { "mini" } else { "gpt-4o" };
        let mut r = usage_record(team, key, model, at, 10 + i as u64, 3 + (i % 5) as u64, 100 + i * 7);
        if i % 9 == 0 {
            r.status = 502;
        }
        out.push(r);
    }
    out
}

fn raw_totals<'a>(records: impl IntoIterator<Item = &'a UsageRecord>) -> Totals {
    records.into_iter().fold(Totals::default(), |t, r| Totals {
        requests: t.requests + 1,
        errors: t.errors + i64::from(r.status >= 400),
        tokens: t.tokens + (r.prompt_tokens + r.completion_tokens) as i64,
        cost_micros: t.cost_micros + r.cost_micros,
    })
}

fn raw_daily(records: &[UsageRecord], zone: Zone, teams: &[i64], first: NaiveDate, days: u32) -> Vec<Day> {
    (0..days)
        .map(|i| {
            let day = first + Duration::days(i64::from(i));
            let totals =
                raw_totals(records.iter().filter(|r| teams.contains(&r.team_id) && zone.date_of(r.started_at) == day));
            Day { day, totals }
        })
        .collect()
}

fn raw_by_model(records: &[UsageRecord], zone: Zone, teams: &[i64], first: NaiveDate, days: u32) -> Vec<ModelUsage> {
    let end = first + Duration::days(i64::from(days));
    let mut models: Vec<String> = records.iter().map(|r| r.model.clone()).collect();
    models.sort();
    models.dedup();
    let mut out: Vec<ModelUsage> = models
        .into_iter()
        .map(|model| {
            let totals = raw_totals(records.iter().filter(|r| {
                let day = zone.date_of(r.started_at);
                r.model == model && teams.contains(&r.team_id) && day >= first && day < end
            }));
            ModelUsage { model, totals }
        })
        .filter(|m| m.totals.requests > 0)
        .collect();
    out.sort_by(|a, b| b.totals.cost_micros.cmp(&a.totals.cost_micros).then(a.model.cmp(&b.model)));
    out
}

#[derive(Clone, Copy, Default)]
struct Filter {
    team_id: Option<i64>,
    key_id: Option<i64>,
    model: Option<&'static str>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

impl Filter {
    fn query(&self) -> String {
        let ts = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
        let mut q = vec!["limit=1".to_owned()];
        q.extend(self.team_id.map(|v| format!("team_id={v}")));
        q.extend(self.key_id.map(|v| format!("key_id={v}")));
        q.extend(self.model.map(|v| format!("model={v}")));
        q.extend(self.from.map(|v| format!("from={}", ts(v))));
        q.extend(self.to.map(|v| format!("to={}", ts(v))));
        q.join("&")
    }

    fn raw(&self, records: &[UsageRecord]) -> UsageTotals {
        records
            .iter()
            .filter(|r| {
                self.team_id.is_none_or(|v| r.team_id == v)
                    && self.key_id.is_none_or(|v| r.key_id == v)
                    && self.model.is_none_or(|v| r.model == v)
                    && self.from.is_none_or(|v| r.started_at >= v)
                    && self.to.is_none_or(|v| r.started_at < v)
            })
            .fold(UsageTotals::default(), |t, r| UsageTotals {
                requests: t.requests + 1,
                prompt_tokens: t.prompt_tokens + r.prompt_tokens as i64,
                completion_tokens: t.completion_tokens + r.completion_tokens as i64,
                cost_micros: t.cost_micros + r.cost_micros,
            })
    }
}

/// Explorer filters: day-aligned in `zone`, with partial days at one or both edges, shorter than a day, open-ended.
fn filters(zone: Zone) -> Vec<Filter> {
    let day = |d: u32| zone.midnight(NaiveDate::from_ymd_opt(2026, 11, d).unwrap());
    let partial = |d: u32, h: i64| day(d) + Duration::hours(h) + Duration::minutes(17);
    let ranges = [
        (None, None),
        (Some(day(3)), Some(day(5))),
        (Some(day(3)), None),
        (None, Some(day(4))),
        (Some(partial(2, 5)), Some(partial(5, 20))),
        (Some(partial(2, 5)), Some(day(5))),
        (Some(day(3)), Some(partial(4, 3))),
        (Some(partial(3, 1)), Some(partial(3, 9))),
        (Some(partial(3, 22)), Some(partial(4, 2))),
        (Some(partial(4, 6)), None),
        (None, Some(partial(3, 11))),
        (Some(day(4)), Some(day(4))),
    ];
    let mut out = Vec::new();
    for (from, to) in ranges {
        out.push(Filter { from, to, ..Filter::default() });
        out.push(Filter { team_id: Some(1), from, to, ..Filter::default() });
        out.push(Filter { team_id: Some(1), key_id: Some(11), from, to, ..Filter::default() });
        out.push(Filter { model: Some("mini"), from, to, ..Filter::default() });
    }
    out
}

async fn seeded(backend: Backend, zone: Zone) -> (TestApp, Vec<UsageRecord>) {
    let app = spawn_app_with(TestDatabase::create(backend).await, |s| s.reporting_timezone = zone).await;
    let records = records();
    for chunk in records.chunks(50) {
        let batch = UsageBatch { node_id: "n1".into(), records: chunk.to_vec() };
        assert_eq!(app.post_usage(&batch).await.stored, chunk.len() as u64);
    }
    (app, records)
}

async fn check_dashboard(app: &TestApp, records: &[UsageRecord], zone: Zone) {
    let first = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    for (scope, teams) in [(Scope::All, vec![1, 2]), (Scope::Teams(vec![1]), vec![1]), (Scope::Teams(vec![]), vec![])] {
        for (first, days) in [(first, 7), (first + Duration::days(2), 2)] {
            let got = dashboard::daily(&app.db_pool, &scope, first, days).await.unwrap();
            assert_eq!(got, raw_daily(records, zone, &teams, first, days), "daily {scope:?} {first} {days}");
            let got = dashboard::by_model(&app.db_pool, &scope, first, days).await.unwrap();
            assert_eq!(got, raw_by_model(records, zone, &teams, first, days), "by model {scope:?} {first} {days}");
            let (by_day, by_model) = dashboard::summary(&app.db_pool, &scope, first, days).await.unwrap();
            assert_eq!(by_day, raw_daily(records, zone, &teams, first, days), "summary {scope:?} {first} {days}");
            assert_eq!(by_model, raw_by_model(records, zone, &teams, first, days), "summary {scope:?} {first}");
        }
    }
}

async fn rollup_reads_match_the_records(backend: Backend) {
    for zone in [Zone::UTC, Zone::parse("Europe/Berlin").unwrap()] {
        let (app, records) = seeded(backend, zone).await;
        check_dashboard(&app, &records, zone).await;
        for f in filters(zone) {
            let page = app.usage(&f.query()).await;
            assert_eq!(page.totals, f.raw(&records), "{zone} {}", f.query());
        }

        // With the raw records gone, whatever read rollups still answers the same: the dashboard, and explorer
        // totals over whole days.
        usage_records::Entity::delete_many().exec(&app.db_pool).await.unwrap();
        check_dashboard(&app, &records, zone).await;
        for f in filters(zone) {
            let aligned = |t: Option<DateTime<Utc>>| t.is_none_or(|t| zone.midnight(zone.date_of(t)) == t);
            if aligned(f.from) && aligned(f.to) && f.from.zip(f.to).is_none_or(|(a, b)| a < b) {
                assert_eq!(app.usage(&f.query()).await.totals, f.raw(&records), "{zone} {}", f.query());
            }
        }
    }
}

backend_tests!(rollup_reads_match_the_records);
