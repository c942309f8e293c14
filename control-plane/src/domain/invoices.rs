//! Invoices: a team's usage for a calendar month of the reporting time zone, one line per (model, price version).
//! A month's invoice is a draft — computed from the usage rollups only (never the raw records) on every read —
//! until it is issued: then its document is stored once with the next gap-free number and returned as stored.
//! Usage of an issued month that arrives later is billed on the next invoice as adjustment lines:
//! `rollups(M) − Σ invoice_lines frozen for M`, per line.
//!
//! Rounding happens once per record, at ingest (the record's cost in integer micro-units); a line's amount is the
//! exact integer sum of its records' costs and the subtotal the exact sum of the lines. The team's discount or
//! markup is the one rounding of an invoice ([`markup_amount`]: half away from zero, to the micro-unit), so the
//! lines, the markup and the total add up to the micro-unit. [`reconcile`] checks a usage month against the raw
//! records (against the rollups for a month whose records the retention setting dropped).

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};

use chrono::{DateTime, Datelike as _, NaiveDate, TimeZone as _, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait as _, Func, IntoColumnRef};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, ConnectionTrait, EntityTrait, QueryFilter as _, QuerySelect as _, Select,
    Set,
};
use serde::{Deserialize, Serialize};
use switchyard_shared::money::PriceSheet;
use switchyard_shared::period::{Period, PeriodKind, Zone};

use super::audit::{self, Actor, AuditEntry};
use super::change::begin_write;
use super::csv::field;
use super::{DomainError, Store, teams};
use crate::entities::{invoice_counter, invoice_lines, invoices, price_versions, usage_records, usage_rollups};

/// A calendar month, written `yyyy-mm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    first: NaiveDate,
}

impl Month {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let invalid = || DomainError::invalid("month", format!("`{s}` is not a month: use yyyy-mm"));
        let (y, m) = s.split_once('-').ok_or_else(invalid)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(invalid());
        }
        let (y, m) = (y.parse::<i32>().map_err(|_| invalid())?, m.parse::<u32>().map_err(|_| invalid())?);
        NaiveDate::from_ymd_opt(y, m, 1).map(|first| Self { first }).ok_or_else(invalid)
    }

    /// The first day of the next month.
    fn next_first(self) -> NaiveDate {
        let (y, m) = if self.first.month() == 12 {
            (self.first.year() + 1, 1)
        } else {
            (self.first.year(), self.first.month() + 1)
        };
        NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(self.first)
    }

    /// The month of the reporting zone that contains `t`.
    pub fn containing(store: &Store, t: DateTime<Utc>) -> Self {
        let day = store.reporting_zone.date_of(t);
        Self { first: day.with_day(1).unwrap_or(day) }
    }

    /// The month before.
    pub fn previous(self) -> Self {
        let day = self.first.pred_opt().unwrap_or(self.first);
        Self { first: day.with_day(1).unwrap_or(day) }
    }

    /// The month after.
    pub fn next(self) -> Self {
        Self { first: self.next_first() }
    }

    /// The month as UTC instants `[start, end)` in the reporting zone.
    pub fn period(self, store: &Store) -> Period {
        self.period_in(store.reporting_zone)
    }

    /// The month as UTC instants `[start, end)` in `zone`: the zone's monthly period containing the 15th, noon UTC.
    /// The one month rule of invoices, reconciliation and the raw export.
    pub fn period_in(self, zone: Zone) -> Period {
        let mid = self.first.and_hms_opt(12, 0, 0).map(|t| Utc.from_utc_datetime(&(t + chrono::Duration::days(14))));
        Period::containing(PeriodKind::Monthly, zone, mid.unwrap_or_default())
    }

    /// The first day of the month.
    pub fn first_day(self) -> NaiveDate {
        self.first
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.first.year(), self.first.month())
    }
}

/// The deployment currency of invoices (`SWITCHYARD_CURRENCY`): an ISO 4217 code, three uppercase letters, USD by
/// default. Amounts are integer micro-units of it. An issued invoice keeps the currency it was issued with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Self = Self(*b"USD");

    /// `EUR`, `GBP`, …: three uppercase ASCII letters (the code is not checked against the ISO list).
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Self([a, b, c])),
            _ => Err(format!("`{s}` is not an ISO 4217 currency code: use three uppercase letters, e.g. USD or EUR")),
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("USD")
    }
}

impl Default for Currency {
    fn default() -> Self {
        Self::USD
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an invoice line bills.
pub const USAGE: &str = "usage";
/// Late usage of an earlier, already issued month, carried to this invoice.
pub const ADJUSTMENT: &str = "adjustment";

/// One invoice line: a model's usage at one price version, of this invoice's month (`kind` "usage") or late usage
/// of an earlier issued month (`kind` "adjustment").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceLine {
    #[serde(default = "usage_kind")]
    pub kind: String,
    /// The month whose usage the line bills (`yyyy-mm`): the invoice's own month for usage lines.
    #[serde(default)]
    pub usage_month: String,
    /// What the line says on the invoice: the model, or "Adjustment: late usage for yyyy-mm (INV-…): model".
    #[serde(default)]
    pub description: String,
    /// For an adjustment: the number of the issued invoice of `usage_month`.
    #[serde(default)]
    pub adjusts_invoice: Option<String>,
    pub model: String,
    /// `None` for usage costed without a price version (the node's cost).
    pub price_version_id: Option<i64>,
    /// The version's unit prices, micro-units per million tokens.
    pub unit_prices: Option<PriceSheet>,
    pub requests: i64,
    /// All input tokens, cached and cache-write included.
    pub prompt_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_write_tokens: i64,
    pub completion_tokens: i64,
    pub amount_micros: i64,
}

fn usage_kind() -> String {
    USAGE.to_owned()
}

/// Issued documents from before the currency was configurable were all in USD.
fn currency() -> String {
    Currency::USD.to_string()
}

/// A team's invoice for a month: a live draft (computed from the rollups on every read) or, once issued, the
/// stored document, returned exactly as it was issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    pub team_id: i64,
    pub team_name: String,
    pub month: String,
    /// "draft" or "issued".
    pub status: String,
    /// `INV-000001` once issued.
    #[serde(default)]
    pub number: Option<String>,
    #[serde(default = "currency")]
    pub currency: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub lines: Vec<InvoiceLine>,
    pub subtotal_micros: i64,
    /// The team's discount (negative) or markup (positive) in basis points; frozen when issued.
    #[serde(default)]
    pub markup_bp: i32,
    /// `subtotal × markup_bp / 10 000`, rounded half away from zero to the micro-unit (the one rounding).
    #[serde(default)]
    pub markup_micros: i64,
    /// `subtotal + markup`.
    pub total_micros: i64,
    #[serde(default)]
    pub issued_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub issued_by: Option<String>,
}

impl Invoice {
    pub fn is_issued(&self) -> bool {
        self.status == "issued"
    }
}

/// The discount or markup of a subtotal: `subtotal × bp / 10 000`, rounded half away from zero to the micro-unit.
pub fn markup_amount(subtotal_micros: i64, markup_bp: i32) -> i64 {
    let n = i128::from(subtotal_micros) * i128::from(markup_bp);
    let (q, r) = (n / 10_000, n % 10_000);
    let q = if r.abs() * 2 >= 10_000 { q + n.signum() } else { q };
    i64::try_from(q).unwrap_or(if q < 0 { i64::MIN } else { i64::MAX })
}

type LineKey = (String, i64);

/// Summed in the database (one row per team and line, whatever the number of keys, days and shards).
type LineRow = (i64, String, i64, i64, i64, i64, i64, i64, i64);

fn line_from_row(model: String, version: i64, sums: [i64; 6]) -> InvoiceLine {
    let [requests, prompt, cached, cache_write, completion, cost] = sums;
    InvoiceLine {
        kind: USAGE.to_owned(),
        usage_month: String::new(),
        description: model.clone(),
        adjusts_invoice: None,
        model,
        price_version_id: (version != 0).then_some(version),
        unit_prices: None,
        requests,
        prompt_tokens: prompt,
        cached_input_tokens: cached,
        cache_write_tokens: cache_write,
        completion_tokens: completion,
        amount_micros: cost,
    }
}

/// Rollup rows of the month, summed per team and line.
async fn month_lines(
    conn: &impl ConnectionTrait,
    month: Month,
    team_id: Option<i64>,
) -> Result<BTreeMap<i64, BTreeMap<LineKey, InvoiceLine>>, DomainError> {
    use usage_rollups::Column as C;
    let mut q = usage_rollups::Entity::find().filter(C::Day.gte(month.first)).filter(C::Day.lt(month.next_first()));
    if let Some(t) = team_id {
        q = q.filter(C::TeamId.eq(t));
    }
    let sums =
        [C::Requests, C::PromptTokens, C::CachedInputTokens, C::CacheWriteTokens, C::CompletionTokens, C::CostMicros];
    let rows: Vec<LineRow> =
        summed_lines(q, [C::TeamId, C::Model, C::PriceVersionId], sums).into_tuple().all(conn).await?;
    let mut out: BTreeMap<i64, BTreeMap<LineKey, InvoiceLine>> = BTreeMap::new();
    for (team, model, version, requests, prompt, cached, cache_write, completion, cost) in rows {
        let mut line = line_from_row(model.clone(), version, [requests, prompt, cached, cache_write, completion, cost]);
        line.usage_month = month.to_string();
        out.entry(team).or_default().insert((model, version), line);
    }
    Ok(out)
}

/// `CAST(COALESCE(SUM(col), 0) AS BIGINT)`: the same integer type from both backends, 0 over no rows.
fn sum_bigint(col: impl IntoColumnRef) -> Expr {
    Func::cast_as(Func::coalesce([Expr::from(Func::sum(Expr::col(col))), Expr::val(0i64)]), Alias::new("BIGINT")).into()
}

/// The query as [`LineRow`]s: `key` (team, model, price version) and the six sums of a line (requests, prompt,
/// cached, cache-write and completion tokens, money), grouped by `key`.
fn summed_lines<E: EntityTrait>(q: Select<E>, key: [E::Column; 3], sums: [E::Column; 6]) -> Select<E> {
    const NAMES: [&str; 6] =
        ["requests", "prompt_tokens", "cached_input_tokens", "cache_write_tokens", "completion_tokens", "micros"];
    let mut q = q.select_only();
    for col in key {
        q = q.column(col);
    }
    for (col, name) in sums.into_iter().zip(NAMES) {
        q = q.column_as(sum_bigint(col), name);
    }
    for col in key {
        q = q.group_by(col);
    }
    q
}

/// What issued invoices already billed for usage month `month` (its own invoice's lines plus adjustments carried
/// into later invoices), summed per team and line.
async fn frozen_lines(
    conn: &impl ConnectionTrait,
    month: Month,
    team_id: Option<i64>,
) -> Result<BTreeMap<i64, BTreeMap<LineKey, [i64; 6]>>, DomainError> {
    use invoice_lines::Column as C;
    let mut q = invoice_lines::Entity::find().filter(C::UsageMonth.eq(month.to_string()));
    if let Some(t) = team_id {
        q = q.filter(C::TeamId.eq(t));
    }
    let sums =
        [C::Requests, C::PromptTokens, C::CachedInputTokens, C::CacheWriteTokens, C::CompletionTokens, C::AmountMicros];
    let rows: Vec<LineRow> =
        summed_lines(q, [C::TeamId, C::Model, C::PriceVersionId], sums).into_tuple().all(conn).await?;
    let mut out: BTreeMap<i64, BTreeMap<LineKey, [i64; 6]>> = BTreeMap::new();
    for (team, model, version, a, b, c, d, e, f) in rows {
        out.entry(team).or_default().insert((model, version), [a, b, c, d, e, f]);
    }
    Ok(out)
}

fn sums(l: &InvoiceLine) -> [i64; 6] {
    [l.requests, l.prompt_tokens, l.cached_input_tokens, l.cache_write_tokens, l.completion_tokens, l.amount_micros]
}

/// The lines of the invoices of `month` that are not issued yet, per team: the month's usage, then adjustment
/// lines for late usage of every earlier month the team already has an issued invoice for —
/// `rollups(M) − Σ lines frozen for M` (its own invoice and adjustments already carried into others), per line.
async fn compute_lines(
    conn: &impl ConnectionTrait,
    month: Month,
    team_id: Option<i64>,
) -> Result<BTreeMap<i64, Vec<InvoiceLine>>, DomainError> {
    let mut out: BTreeMap<i64, Vec<InvoiceLine>> = month_lines(conn, month, team_id)
        .await?
        .into_iter()
        .map(|(team, lines)| (team, lines.into_values().collect()))
        .collect();
    // Earlier issued months of these teams, grouped by month so each month costs two queries, not two per team.
    let mut q = invoices::Entity::find().filter(invoices::Column::Month.lt(month.to_string()));
    if let Some(t) = team_id {
        q = q.filter(invoices::Column::TeamId.eq(t));
    }
    let issued: Vec<(i64, String, String)> = q
        .select_only()
        .column(invoices::Column::TeamId)
        .column(invoices::Column::Month)
        .column(invoices::Column::Number)
        .into_tuple()
        .all(conn)
        .await?;
    let mut by_month: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for (team, m, number) in issued {
        by_month.entry(m).or_default().push((team, number));
    }
    for (m, teams_of_month) in by_month {
        let earlier = Month::parse(&m)?;
        let single = if teams_of_month.len() == 1 { teams_of_month.first().map(|t| t.0) } else { team_id };
        let rollups = month_lines(conn, earlier, single).await?;
        let frozen = frozen_lines(conn, earlier, single).await?;
        for (team, number) in teams_of_month {
            let (used, billed) = (rollups.get(&team), frozen.get(&team));
            let keys: std::collections::BTreeSet<&LineKey> =
                used.into_iter().flat_map(|u| u.keys()).chain(billed.into_iter().flat_map(|b| b.keys())).collect();
            for key in keys {
                let now = used.and_then(|u| u.get(key)).map(sums).unwrap_or_default();
                let then = billed.and_then(|b| b.get(key)).copied().unwrap_or_default();
                let diff: [i64; 6] = std::array::from_fn(|i| now[i] - then[i]);
                if diff == [0; 6] {
                    continue;
                }
                let mut line = line_from_row(key.0.clone(), key.1, diff);
                line.kind = ADJUSTMENT.to_owned();
                line.usage_month = m.clone();
                line.description = format!("Adjustment: late usage for {m} ({number}): {}", key.0);
                line.adjusts_invoice = Some(number.clone());
                out.entry(team).or_default().push(line);
            }
        }
    }
    Ok(out)
}

async fn price_sheets(conn: &impl ConnectionTrait, ids: Vec<i64>) -> Result<HashMap<i64, PriceSheet>, DomainError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(price_versions::Entity::find()
        .filter(price_versions::Column::Id.is_in(ids))
        .all(conn)
        .await?
        .into_iter()
        .map(|v| {
            let sheet = PriceSheet {
                input_per_mtok: v.input_per_mtok,
                output_per_mtok: v.output_per_mtok,
                cached_input_per_mtok: v.cached_input_per_mtok,
                cache_write_per_mtok: v.cache_write_per_mtok,
            };
            (v.id, sheet)
        })
        .collect())
}

/// A draft from its lines: unit prices filled in, subtotal, the team's current discount or markup, total.
fn assemble(
    currency: Currency,
    team: &teams::Team,
    month: Month,
    period: Period,
    mut lines: Vec<InvoiceLine>,
    prices: &HashMap<i64, PriceSheet>,
) -> Invoice {
    for line in &mut lines {
        line.unit_prices = line.price_version_id.and_then(|id| prices.get(&id).copied());
    }
    let subtotal_micros: i64 = lines.iter().map(|l| l.amount_micros).sum();
    let markup_micros = markup_amount(subtotal_micros, team.markup_bp);
    Invoice {
        team_id: team.id,
        team_name: team.name.clone(),
        month: month.to_string(),
        status: "draft".to_owned(),
        number: None,
        currency: currency.to_string(),
        period_start: period.start,
        period_end: period.end,
        lines,
        subtotal_micros,
        markup_bp: team.markup_bp,
        markup_micros,
        total_micros: subtotal_micros + markup_micros,
        issued_at: None,
        issued_by: None,
    }
}

async fn compute_draft(
    conn: &impl ConnectionTrait,
    store: &Store,
    team: &teams::Team,
    month: Month,
) -> Result<Invoice, DomainError> {
    let lines = compute_lines(conn, month, Some(team.id)).await?.remove(&team.id).unwrap_or_default();
    let prices = price_sheets(conn, lines.iter().filter_map(|l| l.price_version_id).collect()).await?;
    Ok(assemble(store.currency, team, month, month.period(store), lines, &prices))
}

fn stored(row: &invoices::Model) -> Result<Invoice, DomainError> {
    serde_json::from_str(&row.document)
        .map_err(|e| DomainError::Internal(format!("issued invoice {} does not parse: {e}", row.number)))
}

async fn issued_row(
    conn: &impl ConnectionTrait,
    team_id: i64,
    month: Month,
) -> Result<Option<invoices::Model>, DomainError> {
    Ok(invoices::Entity::find()
        .filter(invoices::Column::TeamId.eq(team_id))
        .filter(invoices::Column::Month.eq(month.to_string()))
        .one(conn)
        .await?)
}

/// A team's invoice for a month: the stored document once issued (nothing recomputes it), the live draft before.
pub async fn get(store: &Store, team_id: i64, month: Month) -> Result<Invoice, DomainError> {
    let team = teams::get(store, team_id).await?;
    if let Some(row) = issued_row(&store.db, team_id, month).await? {
        return stored(&row);
    }
    compute_draft(&store.db, store, &team, month).await
}

/// Issues a team's invoice for a month that has ended in the reporting zone: freezes the draft as it is at this
/// instant, with the next number of the deployment-wide sequence, in one transaction that also stores the lines
/// by usage month and the audit row. The counter row is taken first, so issuers queue on it (across replicas)
/// and a rolled-back issue gives its number back: numbers are gap-free.
pub async fn issue(
    store: &Store,
    actor: &Actor,
    issued_by: &str,
    team_id: i64,
    month: Month,
    now: DateTime<Utc>,
) -> Result<Invoice, DomainError> {
    let team = teams::get(store, team_id).await?;
    let period = month.period(store);
    if period.end > now {
        return Err(DomainError::Conflict(format!(
            "{month} has not ended yet in the reporting time zone (it ends at {}); issue it after that",
            period.end.to_rfc3339()
        )));
    }
    let txn = begin_write(&store.db).await?;
    invoice_counter::Entity::update_many()
        .col_expr(invoice_counter::Column::LastSeq, Expr::col(invoice_counter::Column::LastSeq).add(1))
        .filter(invoice_counter::Column::Id.eq(invoice_counter::ROW_ID))
        .exec(&txn)
        .await?;
    if let Some(row) = issued_row(&txn, team_id, month).await? {
        return Err(already_issued(&row.number, team_id, month));
    }
    let seq = invoice_counter::Entity::find_by_id(invoice_counter::ROW_ID)
        .one(&txn)
        .await?
        .ok_or_else(|| DomainError::Internal("the invoice_counter row is missing".into()))?
        .last_seq;
    // The team as of this transaction, so the discount/markup frozen is the one in force at the instant of issue.
    let team: teams::Team = crate::entities::teams::Entity::find_by_id(team.id)
        .one(&txn)
        .await?
        .ok_or(DomainError::NotFound("team"))?
        .into();
    let mut doc = compute_draft(&txn, store, &team, month).await?;
    let number = format!("INV-{seq:06}");
    doc.status = "issued".to_owned();
    doc.number = Some(number.clone());
    doc.issued_at = Some(now);
    doc.issued_by = Some(issued_by.to_owned());
    let document = serde_json::to_string(&doc).map_err(|e| DomainError::Internal(e.to_string()))?;
    let row = invoices::ActiveModel {
        team_id: Set(team_id),
        month: Set(doc.month.clone()),
        seq: Set(seq),
        number: Set(number.clone()),
        currency: Set(doc.currency.clone()),
        subtotal_micros: Set(doc.subtotal_micros),
        markup_bp: Set(doc.markup_bp),
        markup_micros: Set(doc.markup_micros),
        total_micros: Set(doc.total_micros),
        issued_at: Set(now),
        issued_by: Set(issued_by.to_owned()),
        document: Set(document),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .map_err(|e| DomainError::on_unique(e, || already_issued_message(team_id, month)))?;
    let lines: Vec<invoice_lines::ActiveModel> = doc
        .lines
        .iter()
        .map(|l| invoice_lines::ActiveModel {
            invoice_id: Set(row.id),
            team_id: Set(team_id),
            usage_month: Set(l.usage_month.clone()),
            model: Set(l.model.clone()),
            price_version_id: Set(l.price_version_id.unwrap_or(0)),
            requests: Set(l.requests),
            prompt_tokens: Set(l.prompt_tokens),
            cached_input_tokens: Set(l.cached_input_tokens),
            cache_write_tokens: Set(l.cache_write_tokens),
            completion_tokens: Set(l.completion_tokens),
            amount_micros: Set(l.amount_micros),
            ..Default::default()
        })
        .collect();
    if !lines.is_empty() {
        invoice_lines::Entity::insert_many(lines).exec(&txn).await?;
    }
    let entry = AuditEntry::new(
        "invoice.issue",
        "invoice",
        &number,
        serde_json::json!({
            "team_id": team_id, "month": doc.month, "number": number, "subtotal_micros": doc.subtotal_micros,
            "markup_bp": doc.markup_bp, "total_micros": doc.total_micros, "currency": doc.currency,
        }),
    );
    tracing::info!(actor = actor.as_str(), team_id, month = %month, number = %number, "invoice issued");
    audit::record(&txn, actor, entry, now).await?;
    txn.commit().await?;
    Ok(doc)
}

fn already_issued_message(team_id: i64, month: Month) -> String {
    format!("the invoice of team {team_id} for {month} is already issued; an issued invoice never changes")
}

fn already_issued(number: &str, team_id: i64, month: Month) -> DomainError {
    DomainError::Conflict(format!(
        "the invoice of team {team_id} for {month} is already issued as {number}; an issued invoice never changes"
    ))
}

/// One row of the invoice list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceSummary {
    pub team_id: i64,
    pub team_name: String,
    pub month: String,
    pub status: String,
    pub number: Option<String>,
    pub currency: String,
    pub lines: usize,
    pub subtotal_micros: i64,
    pub markup_bp: i32,
    pub markup_micros: i64,
    pub total_micros: i64,
    pub issued_at: Option<DateTime<Utc>>,
}

impl From<&Invoice> for InvoiceSummary {
    fn from(inv: &Invoice) -> Self {
        Self {
            team_id: inv.team_id,
            team_name: inv.team_name.clone(),
            month: inv.month.clone(),
            status: inv.status.clone(),
            number: inv.number.clone(),
            currency: inv.currency.clone(),
            lines: inv.lines.len(),
            subtotal_micros: inv.subtotal_micros,
            markup_bp: inv.markup_bp,
            markup_micros: inv.markup_micros,
            total_micros: inv.total_micros,
            issued_at: inv.issued_at,
        }
    }
}

/// Every listed team's invoice for the month, by team id: issued ones as stored, the others as drafts (computed
/// for all teams at once: a query per issued earlier month, not per team). `teams` of `None` means every team.
pub async fn list(
    store: &Store,
    month: Month,
    teams_filter: Option<&[i64]>,
) -> Result<Vec<InvoiceSummary>, DomainError> {
    let mut all = teams::list(store).await?;
    if let Some(ids) = teams_filter {
        all.retain(|t| ids.contains(&t.id));
    }
    if all.is_empty() {
        return Ok(Vec::new());
    }
    let single = match all.as_slice() {
        [one] => Some(one.id),
        _ => None,
    };
    let issued: HashMap<i64, invoices::Model> = {
        let mut q = invoices::Entity::find().filter(invoices::Column::Month.eq(month.to_string()));
        if let Some(t) = single {
            q = q.filter(invoices::Column::TeamId.eq(t));
        }
        q.all(&store.db).await?.into_iter().map(|r| (r.team_id, r)).collect()
    };
    let mut lines = compute_lines(&store.db, month, single).await?;
    let ids = lines.values().flatten().filter_map(|l| l.price_version_id).collect::<Vec<_>>();
    let prices = price_sheets(&store.db, ids).await?;
    let period = month.period(store);
    let mut out = Vec::with_capacity(all.len());
    for team in &all {
        let inv = match issued.get(&team.id) {
            Some(row) => stored(row)?,
            None => assemble(store.currency, team, month, period, lines.remove(&team.id).unwrap_or_default(), &prices),
        };
        out.push(InvoiceSummary::from(&inv));
    }
    Ok(out)
}

/// Micro-units as a decimal amount with six places (`1.234500`).
pub fn decimal(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    format!("{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
}

pub const CSV_HEADER: &str = "team_id,month,model,price_version_id,requests,prompt_tokens,cached_input_tokens,\
cache_write_tokens,completion_tokens,input_per_mtok,cached_input_per_mtok,cache_write_per_mtok,output_per_mtok,\
amount_micros,amount,kind,usage_month,invoice_number,currency,description";

/// The invoice as CSV: a header, one row per line item (`kind` usage or adjustment), a `markup` row when the
/// invoice has a discount or markup, and a `total` row; the rows before `total` sum to it exactly.
pub fn to_csv(inv: &Invoice) -> String {
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    let number = field(inv.number.as_deref().unwrap_or_default());
    let currency = field(&inv.currency);
    let mut out = format!("{CSV_HEADER}\n");
    for l in &inv.lines {
        let p = l.unit_prices;
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            inv.team_id,
            inv.month,
            field(&l.model),
            opt(l.price_version_id),
            l.requests,
            l.prompt_tokens,
            l.cached_input_tokens,
            l.cache_write_tokens,
            l.completion_tokens,
            opt(p.map(|p| p.input_per_mtok)),
            opt(p.and_then(|p| p.cached_input_per_mtok)),
            opt(p.and_then(|p| p.cache_write_per_mtok)),
            opt(p.map(|p| p.output_per_mtok)),
            l.amount_micros,
            decimal(l.amount_micros),
            field(&l.kind),
            field(&l.usage_month),
            number,
            currency,
            field(&l.description),
        );
    }
    if inv.markup_bp != 0 {
        let what = if inv.markup_bp < 0 { "Discount" } else { "Markup" };
        let _ = writeln!(
            out,
            "{},{},markup,,,,,,,,,,,{},{},markup,,{number},{currency},{}",
            inv.team_id,
            inv.month,
            inv.markup_micros,
            decimal(inv.markup_micros),
            field(&format!("{what} {} of the subtotal {}", percent(inv.markup_bp), decimal(inv.subtotal_micros))),
        );
    }
    let _ = writeln!(
        out,
        "{},{},total,,,,,,,,,,,{},{},total,,{number},{currency},Total",
        inv.team_id,
        inv.month,
        inv.total_micros,
        decimal(inv.total_micros)
    );
    out
}

/// Basis points as an unsigned percentage with two decimals (`-1250` → `12.50%`).
pub fn percent(bp: i32) -> String {
    let abs = bp.unsigned_abs();
    format!("{}.{:02}%", abs / 100, abs % 100)
}

/// A usage month checked end to end: what invoices billed for it (the month's issued invoices, adjustments
/// carried into later issued invoices, and what is still unbilled on drafts) against the raw costed records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciliation {
    pub month: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// Teams with usage or an issued invoice in the month.
    pub teams: u64,
    /// Invoices issued for the month.
    pub issued_invoices: u64,
    /// Usage of the month frozen on its issued invoices.
    pub issued_micros: i64,
    /// Late usage of the month carried as adjustment lines into later issued invoices.
    pub adjusted_micros: i64,
    /// Usage of the month not frozen yet: drafts, and late usage still waiting for the next invoice.
    pub unbilled_micros: i64,
    /// Frozen lines that exceed the month's usage (should never happen): 0 when nothing was over-billed.
    pub overbilled_micros: i64,
    /// `issued + adjusted + unbilled`: everything billed or billable for the month's usage, before discounts
    /// and markups (which are not usage).
    pub invoice_total_micros: i64,
    /// What the invoices were compared with: `"records"` (a SUM of the raw costed records) or, for a month whose
    /// raw records were dropped by the retention setting, `"rollups"` (the month's usage rollups, which retention
    /// verified against the records before dropping them).
    pub source: String,
    /// Whether the month's raw records are still kept (`false`: before `usage_retention.records_from`).
    pub records_retained: bool,
    /// Records (or, from the rollups, requests) of the month.
    pub usage_records: i64,
    pub records_cost_micros: i64,
    /// Invoice totals minus the records' costs: 0 when they reconcile.
    pub difference_micros: i64,
}

/// Where [`Reconciliation`] took the month's usage from.
pub const SOURCE_RECORDS: &str = "records";
pub const SOURCE_ROLLUPS: &str = "rollups";

/// Reconciles a usage month. Per team and line, the month's usage (rollups) is split into what its issued
/// invoice froze, what later invoices carried as adjustments, and the positive rest (unbilled); a negative rest
/// (frozen more than used) is counted as over-billed and added to the invoice total too, so it shows up as a
/// difference. The sum is compared with a direct SUM of the raw records that started in the month (a scan: this is
/// the check, not a report) — or, for a month before `usage_retention.records_from` (its raw records dropped by
/// the retention setting), with the month's rollups, and the answer says so (`source`, `records_retained`).
pub async fn reconcile(store: &Store, month: Month) -> Result<Reconciliation, DomainError> {
    use usage_records::Column as C;
    let used = month_lines(&store.db, month, None).await?;
    let frozen = frozen_lines(&store.db, month, None).await?;
    let issued: Vec<(i64, i64)> = invoices::Entity::find()
        .filter(invoices::Column::Month.eq(month.to_string()))
        .select_only()
        .column(invoices::Column::Id)
        .column(invoices::Column::TeamId)
        .into_tuple()
        .all(&store.db)
        .await?;
    let own_ids: Vec<i64> = issued.iter().map(|r| r.0).collect();
    let issued_micros: i64 = if own_ids.is_empty() {
        0
    } else {
        invoice_lines::Entity::find()
            .filter(invoice_lines::Column::InvoiceId.is_in(own_ids))
            .filter(invoice_lines::Column::UsageMonth.eq(month.to_string()))
            .select_only()
            .column_as(sum_bigint(invoice_lines::Column::AmountMicros), "amount")
            .into_tuple::<i64>()
            .one(&store.db)
            .await?
            .unwrap_or_default()
    };
    let frozen_micros: i64 = frozen.values().flat_map(|m| m.values()).map(|s| s[5]).sum();
    let mut team_ids: std::collections::BTreeSet<i64> = used.keys().chain(frozen.keys()).copied().collect();
    team_ids.extend(issued.iter().map(|r| r.1));
    let (mut unbilled_micros, mut overbilled_micros) = (0i64, 0i64);
    for team in &team_ids {
        let (u, f) = (used.get(team), frozen.get(team));
        let keys: std::collections::BTreeSet<&LineKey> =
            u.into_iter().flat_map(|m| m.keys()).chain(f.into_iter().flat_map(|m| m.keys())).collect();
        for key in keys {
            let rest = u.and_then(|m| m.get(key)).map_or(0, |l| l.amount_micros)
                - f.and_then(|m| m.get(key)).map_or(0, |s| s[5]);
            if rest >= 0 {
                unbilled_micros += rest;
            } else {
                overbilled_micros -= rest;
            }
        }
    }
    let period = month.period(store);
    let records_retained = super::partitions::records_from(&store.db).await?.is_none_or(|from| month.first >= from);
    let (usage_records, records_cost_micros) = if records_retained {
        usage_records::Entity::find()
            .filter(C::StartedAt.gte(period.start))
            .filter(C::StartedAt.lt(period.end))
            .select_only()
            .column_as(Expr::from(Func::count(Expr::col(C::Id))), "records")
            .column_as(sum_bigint(C::CostMicros), "cost_micros")
            .into_tuple::<(i64, i64)>()
            .one(&store.db)
            .await?
            .unwrap_or_default()
    } else {
        // Retention dropped the month's records (only after checking its rollups matched them exactly).
        used.values().flat_map(|m| m.values()).fold((0, 0), |(n, c), l| (n + l.requests, c + l.amount_micros))
    };
    let invoice_total_micros = frozen_micros + unbilled_micros + overbilled_micros;
    Ok(Reconciliation {
        month: month.to_string(),
        period_start: period.start,
        period_end: period.end,
        teams: team_ids.len() as u64,
        issued_invoices: issued.len() as u64,
        issued_micros,
        adjusted_micros: frozen_micros - issued_micros,
        unbilled_micros,
        overbilled_micros,
        invoice_total_micros,
        source: if records_retained { SOURCE_RECORDS } else { SOURCE_ROLLUPS }.to_owned(),
        records_retained,
        usage_records,
        records_cost_micros,
        difference_micros: invoice_total_micros - records_cost_micros,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_strictly_and_roll_over_the_year() {
        let dec = Month::parse("2026-12").unwrap();
        assert_eq!((dec.to_string(), dec.next_first().to_string()), ("2026-12".into(), "2027-01-01".into()));
        for bad in ["2026-13", "2026-1", "26-01", "2026/01", "x"] {
            assert!(Month::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn amounts_and_rates_print_exactly() {
        assert_eq!(decimal(1_234_500), "1.234500");
        assert_eq!(decimal(-5), "-0.000005");
        assert_eq!(percent(-1250), "12.50%");
    }

    #[test]
    fn markups_round_half_away_from_zero_once() {
        // 10 % off 7 288 = 728.8 → 729 off; 2.5 % of 7 288 = 182.2 → 182; 1 bp of 5 000 = 0.5 → 1 (and −1).
        assert_eq!(markup_amount(7_288, -1_000), -729);
        assert_eq!(markup_amount(7_288, 250), 182);
        assert_eq!(markup_amount(5_000, 1), 1);
        assert_eq!(markup_amount(5_000, -1), -1);
        assert_eq!(markup_amount(4_999, -1), 0);
        assert_eq!(markup_amount(-5_000, 1), -1);
        assert_eq!(markup_amount(123, 0), 0);
        assert_eq!(markup_amount(7_288, -10_000), -7_288);
    }

    #[test]
    fn currencies_are_three_uppercase_letters() {
        assert_eq!(Currency::parse("EUR").unwrap().as_str(), "EUR");
        assert_eq!(Currency::default().to_string(), "USD");
        for bad in ["eur", "EURO", "EU", "", "E1R", "ÉUR"] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn months_step_back_and_forth() {
        let jan = Month::parse("2027-01").unwrap();
        assert_eq!((jan.previous().to_string(), jan.next().to_string()), ("2026-12".into(), "2027-02".into()));
    }
}
