//! The `transactions` table: one row per FLUID transaction, moved by events through [`rules`].
//!
//! [`apply`] takes a batch of events and settles it in a few statements inside the worker's
//! database transaction: it locks every transaction the batch touches (advisory locks keyed by
//! reference, so also transactions not created yet), reads their state, runs the rules over the
//! events in time order in memory, then writes all new rows with one `INSERT` and all changed rows
//! with one conditional `UPDATE`. Two workers or replicas touching the same transaction take turns.

pub mod rules;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use rules::{Current, Decision, Incoming, Status};

/// The details of a transaction an event carries; `None` leaves the stored value.
#[derive(Debug, Clone, Default)]
pub struct Details {
    /// FLUID's `id` (`dt_...`).
    pub fluid_id: Option<String>,
    /// FLUID's `uuid`.
    pub fluid_uuid: Option<String>,
    /// The merchant's own reference.
    pub partner_reference: Option<String>,
    /// Exact decimal text.
    pub amount: Option<String>,
    /// Currency code.
    pub currency: Option<String>,
    /// Exact decimal text.
    pub fee: Option<String>,
    /// Narration.
    pub narration: Option<String>,
    /// How the customer approved.
    pub approval_method: Option<String>,
    /// JSON text of the failure details.
    pub error_details: Option<String>,
    /// The provider's creation time.
    pub fluid_created_at: Option<DateTime<Utc>>,
    /// When processed.
    pub processed_at: Option<DateTime<Utc>>,
    /// When completed.
    pub completed_at: Option<DateTime<Utc>>,
}

impl Details {
    /// Takes every detail the newer event carries, as applying the two events one after the
    /// other would.
    fn merge(&mut self, newer: &Details) {
        fn take<T: Clone>(slot: &mut Option<T>, newer: &Option<T>) {
            if newer.is_some() {
                slot.clone_from(newer);
            }
        }
        take(&mut self.fluid_id, &newer.fluid_id);
        take(&mut self.fluid_uuid, &newer.fluid_uuid);
        take(&mut self.partner_reference, &newer.partner_reference);
        take(&mut self.amount, &newer.amount);
        take(&mut self.currency, &newer.currency);
        take(&mut self.fee, &newer.fee);
        take(&mut self.narration, &newer.narration);
        take(&mut self.approval_method, &newer.approval_method);
        take(&mut self.error_details, &newer.error_details);
        take(&mut self.fluid_created_at, &newer.fluid_created_at);
        take(&mut self.processed_at, &newer.processed_at);
        take(&mut self.completed_at, &newer.completed_at);
    }
}

/// A transaction event, read from its payload (see `mapping`) and ready to apply.
#[derive(Debug)]
pub struct Prepared {
    /// Who sent it.
    pub provider: String,
    /// The provider's reference of the transaction.
    pub reference: String,
    /// `webhook_events.event_id`.
    pub event_id: String,
    /// `webhook_events.event_type`.
    pub event_type: String,
    /// The status the event sets.
    pub status: Status,
    /// When the event happened: its own time, or its arrival when it has no readable one.
    pub at: DateTime<Utc>,
    /// What it says about the transaction.
    pub details: Details,
}

/// An RFC 3339 time, or `None` when absent or unreadable (the payload keeps the original text).
pub fn parse_time(text: Option<&str>) -> Option<DateTime<Utc>> {
    text.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// What the batch does to one transaction row.
struct Plan<'a> {
    provider: &'a str,
    reference: &'a str,
    /// The row as read under the lock; `None`: it does not exist yet.
    seen: Option<Current>,
    /// The row after the events applied so far.
    now: Option<Current>,
    details: Details,
    last_event: Option<&'a Prepared>,
}

/// Applies `events` in the caller's database transaction and returns the rules' decision for each,
/// in order. Events of one transaction must be in time order (the worker sorts the batch by
/// reference, time and arrival). An `Err` leaves the caller's transaction to be rolled back.
pub async fn apply(
    conn: &mut PgConnection,
    events: &[Prepared],
) -> Result<Vec<Decision>, sqlx::Error> {
    let mut keys: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.provider.as_str(), e.reference.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let (providers, references): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
    // Locks are taken in key order, so workers holding several never wait on each other in a cycle.
    sqlx::query(
        "SELECT pg_advisory_xact_lock(k) \
         FROM (SELECT DISTINCT hashtextextended(p || '/' || r, 0) AS k FROM unnest($1::text[], $2::text[]) AS t(p, r)) \
             AS keys ORDER BY k",
    )
    .bind(&providers)
    .bind(&references)
    .execute(&mut *conn)
    .await?;
    let stored: Vec<(String, String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT provider, reference, status, last_event_at FROM transactions \
         WHERE (provider, reference) IN (SELECT p, r FROM unnest($1::text[], $2::text[]) AS t(p, r)) FOR UPDATE",
    )
    .bind(&providers)
    .bind(&references)
    .fetch_all(&mut *conn)
    .await?;

    let mut plans: BTreeMap<(&str, &str), Plan<'_>> = BTreeMap::new();
    for (provider, reference, status, last_event_at) in &stored {
        let status = Status::parse(status)
            .ok_or_else(|| sqlx::Error::Protocol(format!("stored status `{status}` is unknown")))?;
        let seen = Some(Current {
            status,
            last_event_at: *last_event_at,
        });
        // The plan borrows its key from the events, like every other plan.
        let Ok(i) = keys.binary_search(&(provider.as_str(), reference.as_str())) else {
            continue;
        };
        let (provider, reference) = keys[i];
        plans.insert(
            (provider, reference),
            Plan {
                provider,
                reference,
                seen,
                now: seen,
                details: Details::default(),
                last_event: None,
            },
        );
    }
    let mut decisions = Vec::with_capacity(events.len());
    for event in events {
        let plan = plans
            .entry((event.provider.as_str(), event.reference.as_str()))
            .or_insert_with(|| Plan {
                provider: event.provider.as_str(),
                reference: event.reference.as_str(),
                seen: None,
                now: None,
                details: Details::default(),
                last_event: None,
            });
        let decision = rules::decide(
            plan.now,
            Incoming {
                status: event.status,
                at: event.at,
            },
        );
        if decision.changes_status() {
            plan.now = Some(Current {
                status: event.status,
                last_event_at: event.at,
            });
            plan.details.merge(&event.details);
            plan.last_event = Some(event);
        }
        decisions.push(decision);
    }

    for plan in plans.values() {
        observe_final(plan);
    }
    let (created, moved): (Vec<&Plan<'_>>, Vec<&Plan<'_>>) = plans
        .values()
        .filter(|p| p.last_event.is_some())
        .partition(|p| p.seen.is_none());
    if !created.is_empty() {
        insert(conn, &created).await?;
    }
    if !moved.is_empty() {
        update(conn, &moved).await?;
    }
    Ok(decisions)
}

/// A transaction that reached a final state in this batch: how long it took from its creation
/// (FLUID's `created_at`, when the events said) to the event that ended it.
fn observe_final(plan: &Plan<'_>) {
    let (Some(now), Some(_), Some(created)) =
        (plan.now, plan.last_event, plan.details.fluid_created_at)
    else {
        return;
    };
    if now.status.is_final() {
        let seconds = (now.last_event_at - created).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::histogram!("fluid_webhooks_transaction_duration_seconds", "provider" => plan.provider.to_string(), "status" => now.status.as_str())
            .record(seconds);
    }
}

/// The rows to write, column by column, for `unnest`.
#[derive(Default)]
struct Columns<'a> {
    reference: Vec<&'a str>,
    status: Vec<&'static str>,
    fluid_id: Vec<Option<&'a str>>,
    fluid_uuid: Vec<Option<&'a str>>,
    partner_reference: Vec<Option<&'a str>>,
    amount: Vec<Option<&'a str>>,
    currency: Vec<Option<&'a str>>,
    fee: Vec<Option<&'a str>>,
    narration: Vec<Option<&'a str>>,
    approval_method: Vec<Option<&'a str>>,
    error_details: Vec<Option<&'a str>>,
    fluid_created_at: Vec<Option<DateTime<Utc>>>,
    processed_at: Vec<Option<DateTime<Utc>>>,
    completed_at: Vec<Option<DateTime<Utc>>>,
    last_event_id: Vec<&'a str>,
    last_event_type: Vec<&'a str>,
    last_event_at: Vec<DateTime<Utc>>,
    provider: Vec<&'a str>,
}

impl<'a> Columns<'a> {
    fn of(plans: &[&'a Plan<'a>]) -> Self {
        let mut c = Self::default();
        for plan in plans {
            let (Some(event), Some(now)) = (plan.last_event, plan.now) else {
                continue;
            };
            let d = &plan.details;
            c.reference.push(plan.reference);
            c.status.push(now.status.as_str());
            c.fluid_id.push(d.fluid_id.as_deref());
            c.fluid_uuid.push(d.fluid_uuid.as_deref());
            c.partner_reference.push(d.partner_reference.as_deref());
            c.amount.push(d.amount.as_deref());
            c.currency.push(d.currency.as_deref());
            c.fee.push(d.fee.as_deref());
            c.narration.push(d.narration.as_deref());
            c.approval_method.push(d.approval_method.as_deref());
            c.error_details.push(d.error_details.as_deref());
            c.fluid_created_at.push(d.fluid_created_at);
            c.processed_at.push(d.processed_at);
            c.completed_at.push(d.completed_at);
            c.last_event_id.push(&event.event_id);
            c.last_event_type.push(&event.event_type);
            c.last_event_at.push(now.last_event_at);
            c.provider.push(plan.provider);
        }
        c
    }

    /// Binds the columns as `$1` to `$18`, in the order of `ROWS` below.
    fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(&self.reference)
            .bind(&self.status)
            .bind(&self.fluid_id)
            .bind(&self.fluid_uuid)
            .bind(&self.partner_reference)
            .bind(&self.amount)
            .bind(&self.currency)
            .bind(&self.fee)
            .bind(&self.narration)
            .bind(&self.approval_method)
            .bind(&self.error_details)
            .bind(&self.fluid_created_at)
            .bind(&self.processed_at)
            .bind(&self.completed_at)
            .bind(&self.last_event_id)
            .bind(&self.last_event_type)
            .bind(&self.last_event_at)
            .bind(&self.provider)
    }
}

/// `$1` to `$18` as a table `r`.
const ROWS: &str = "unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
     $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[], \
     $13::timestamptz[], $14::timestamptz[], $15::text[], $16::text[], $17::timestamptz[], $18::text[]";
const ROW_NAMES: &str = "r(reference, status, fluid_id, fluid_uuid, partner_reference, amount, currency, fee, \
     narration, approval_method, error_details, fluid_created_at, processed_at, completed_at, \
     last_event_id, last_event_type, last_event_at, provider";

/// Creates the transactions first seen in this batch. The advisory locks make a concurrent
/// creation impossible; should a row appear anyway, the unique key refuses it and the batch fails.
async fn insert(conn: &mut PgConnection, plans: &[&Plan<'_>]) -> Result<(), sqlx::Error> {
    let columns = Columns::of(plans);
    let sql = format!(
        "INSERT INTO transactions (provider, reference, status, fluid_id, fluid_uuid, partner_reference, amount, \
             currency, fee, narration, approval_method, error_details, fluid_created_at, processed_at, \
             completed_at, last_event_id, last_event_type, last_event_at) \
         SELECT r.provider, r.reference, r.status, r.fluid_id, r.fluid_uuid, r.partner_reference, r.amount::numeric, \
             r.currency, r.fee::numeric, r.narration, r.approval_method, r.error_details::jsonb, \
             r.fluid_created_at, r.processed_at, r.completed_at, r.last_event_id, r.last_event_type, \
             r.last_event_at \
         FROM {ROWS}) AS {ROW_NAMES})"
    );
    columns
        .bind(sqlx::query(sqlx::AssertSqlSafe(sql)))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Moves the locked transactions. The `WHERE` repeats what the rules saw, so a row changed under
/// us (impossible while we hold the locks, but cheap to check) is not overwritten. Details an
/// event leaves out keep their stored value.
async fn update(conn: &mut PgConnection, plans: &[&Plan<'_>]) -> Result<(), sqlx::Error> {
    let columns = Columns::of(plans);
    let seen_status: Vec<&str> = plans
        .iter()
        .filter_map(|p| p.seen)
        .map(|s| s.status.as_str())
        .collect();
    let seen_at: Vec<DateTime<Utc>> = plans
        .iter()
        .filter_map(|p| p.seen)
        .map(|s| s.last_event_at)
        .collect();
    let sql = format!(
        "UPDATE transactions AS t SET status = r.status, \
             fluid_id = COALESCE(r.fluid_id, t.fluid_id), fluid_uuid = COALESCE(r.fluid_uuid, t.fluid_uuid), \
             partner_reference = COALESCE(r.partner_reference, t.partner_reference), \
             amount = COALESCE(r.amount::numeric, t.amount), currency = COALESCE(r.currency, t.currency), \
             fee = COALESCE(r.fee::numeric, t.fee), narration = COALESCE(r.narration, t.narration), \
             approval_method = COALESCE(r.approval_method, t.approval_method), \
             error_details = COALESCE(r.error_details::jsonb, t.error_details), \
             fluid_created_at = COALESCE(r.fluid_created_at, t.fluid_created_at), \
             processed_at = COALESCE(r.processed_at, t.processed_at), \
             completed_at = COALESCE(r.completed_at, t.completed_at), \
             last_event_id = r.last_event_id, last_event_type = r.last_event_type, \
             last_event_at = r.last_event_at, updated_at = now() \
         FROM {ROWS}, $19::text[], $20::timestamptz[]) AS {ROW_NAMES}, seen_status, seen_at) \
         WHERE t.provider = r.provider AND t.reference = r.reference \
             AND t.status = r.seen_status AND t.last_event_at = r.seen_at"
    );
    let done = columns
        .bind(sqlx::query(sqlx::AssertSqlSafe(sql)))
        .bind(&seen_status)
        .bind(&seen_at)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == plans.len() as u64 {
        Ok(())
    } else {
        Err(sqlx::Error::Protocol(
            "a locked transaction changed under the worker".into(),
        ))
    }
}
