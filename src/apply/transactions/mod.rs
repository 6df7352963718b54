//! The `transactions` table: one row per FLUID transaction, moved by events through [`rules`].
//!
//! [`apply`] takes a batch of events and settles it in a few statements inside the worker's
//! database transaction: it locks every transaction the batch touches (advisory locks keyed by
//! reference, so also transactions not created yet), reads their state, runs the rules over the
//! events in time order in memory, then writes all new rows with one `INSERT` and all changed rows
//! with one conditional `UPDATE`. Two workers or replicas touching the same transaction take turns.

mod columns;
pub mod rules;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

pub use columns::Details;
use columns::{INSERT, Rows, UPDATE};
use rules::{Current, Decision, Incoming, Status};

use super::mapping::same_decimal;
use crate::store::database::Failure;

/// A row of `transactions` as the batch reads it.
#[derive(sqlx::FromRow)]
struct StoredRow {
    provider: String,
    reference: String,
    status: String,
    last_event_at: Option<DateTime<Utc>>,
    amount: Option<String>,
    currency: Option<String>,
    expected_amount: Option<String>,
    expected_currency: Option<String>,
}

/// Why a batch could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The database cannot be reached or went away: nothing is known to be wrong with the events;
    /// the whole batch rolls back and is tried again.
    #[error("database unavailable: {0}")]
    Unreachable(#[source] sqlx::Error),
    /// The database refused a statement (a constraint, the status guard, data it cannot hold): the
    /// event is retried with backoff, then parked as dead.
    #[error("{0}")]
    Refused(#[source] sqlx::Error),
    /// Something that must never happen did (a stored status the rules do not know, a locked row
    /// that changed): trying again will not help, so the event is parked as dead with the reason.
    #[error("broken invariant: {0}")]
    Broken(String),
}

impl From<sqlx::Error> for ApplyError {
    fn from(error: sqlx::Error) -> Self {
        match Failure::of(&error) {
            Failure::Unreachable(_) => Self::Unreachable(error),
            // A deadlock or timeout is retried with backoff like any refusal.
            Failure::BadData(_) | Failure::Contended(_) => Self::Refused(error),
            Failure::Bug(_) if matches!(error, sqlx::Error::Database(_)) => Self::Refused(error),
            Failure::Bug(message) => Self::Broken(message),
        }
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
    seen: Option<Seen>,
    /// The row after the events applied so far.
    now: Option<Current>,
    details: Details,
    last_event: Option<&'a Prepared>,
}

/// A stored row as read under the lock.
#[derive(Debug, Clone)]
struct Seen {
    status: Status,
    /// `None` for an expected transaction no event has reached yet.
    last_event_at: Option<DateTime<Utc>>,
    /// What it holds, exactly as stored.
    amount: Option<String>,
    currency: Option<String>,
    /// What the merchant expected (`POST /admin/transactions`, `fluid-webhooks expect`).
    expected_amount: Option<String>,
    expected_currency: Option<String>,
}

impl Seen {
    /// The state the rules start from: a row no event has reached counts as older than any event.
    fn current(&self) -> Current {
        Current {
            status: self.status,
            last_event_at: self.last_event_at.unwrap_or(DateTime::<Utc>::MIN_UTC),
        }
    }

    /// Whether an amount or currency differs from what was expected (only what both say counts).
    fn mismatches(&self, amount: Option<&str>, currency: Option<&str>) -> bool {
        let differs = |expected: &Option<String>,
                       said: Option<&str>,
                       same: fn(&str, &str) -> bool| {
            matches!((expected, said), (Some(e), Some(s)) if !same(e, s))
        };
        differs(&self.expected_amount, amount, same_decimal)
            || differs(&self.expected_currency, currency, |a, b| {
                a.eq_ignore_ascii_case(b)
            })
    }
}

/// What applying one event did: the rules' decision, and whether the event's amount or currency
/// differs from what the merchant expected (it is applied all the same: FLUID says what happened).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The rules' decision.
    pub decision: Decision,
    /// The event changed the transaction and says another amount or currency than expected.
    pub amount_mismatch: bool,
    /// Why a stale or refused event changed nothing (see `rules::reason`).
    pub reason: Option<String>,
}

/// Applies `events` in the caller's database transaction and returns the rules' decision for each,
/// in order. Events of one transaction must be in time order (the worker sorts the batch by
/// reference, time and arrival). An `Err` leaves the caller's transaction to be rolled back.
pub async fn apply(
    conn: &mut PgConnection,
    events: &[Prepared],
) -> Result<Vec<Applied>, ApplyError> {
    let mut keys: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.provider.as_str(), e.reference.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    lock(conn, &keys).await?;
    let (providers, references): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
    let stored: Vec<StoredRow> = sqlx::query_as(
        "SELECT provider, reference, status, last_event_at, amount::text AS amount, currency, \
             expected_amount::text AS expected_amount, expected_currency FROM transactions \
         WHERE (provider, reference) IN (SELECT p, r FROM unnest($1::text[], $2::text[]) AS t(p, r)) FOR UPDATE",
    )
    .bind(&providers)
    .bind(&references)
    .fetch_all(&mut *conn)
    .await?;

    let mut plans: BTreeMap<(&str, &str), Plan<'_>> = BTreeMap::new();
    for row in stored {
        let status = Status::parse(&row.status).ok_or_else(|| {
            ApplyError::Broken(format!("stored status `{}` is unknown", row.status))
        })?;
        let seen = Seen {
            status,
            last_event_at: row.last_event_at,
            amount: row.amount,
            currency: row.currency,
            expected_amount: row.expected_amount,
            expected_currency: row.expected_currency,
        };
        // The plan borrows its key from the events, like every other plan.
        let Ok(i) = keys.binary_search(&(row.provider.as_str(), row.reference.as_str())) else {
            continue;
        };
        let (provider, reference) = keys[i];
        plans.insert(
            (provider, reference),
            Plan {
                provider,
                reference,
                now: Some(seen.current()),
                seen: Some(seen),
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
        let incoming = Incoming {
            status: event.status,
            at: event.at,
        };
        let decision = rules::decide(plan.now, incoming);
        let reason = rules::reason(plan.now, incoming, decision);
        let mut amount_mismatch = false;
        if decision.changes_status() {
            plan.now = Some(Current {
                status: event.status,
                last_event_at: event.at,
            });
            plan.details.merge(&event.details);
            plan.last_event = Some(event);
            amount_mismatch = plan.seen.as_ref().is_some_and(|seen| {
                seen.mismatches(
                    event.details.amount.as_deref(),
                    event.details.currency.as_deref(),
                )
            });
        }
        decisions.push(Applied {
            decision,
            amount_mismatch,
            reason,
        });
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

/// Locks the transactions `keys` (provider, reference) until the end of the database transaction,
/// also those not created yet: advisory locks keyed by provider and reference, taken in key
/// order, so two holders of several never wait on each other in a cycle. The worker and an
/// expectation take turns on a transaction this way.
pub(crate) async fn lock(
    conn: &mut PgConnection,
    keys: &[(&str, &str)],
) -> Result<(), sqlx::Error> {
    let (providers, references): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
    sqlx::query(
        "SELECT pg_advisory_xact_lock(k) \
         FROM (SELECT DISTINCT hashtextextended(p || '/' || r, 0) AS k FROM unnest($1::text[], $2::text[]) AS t(p, r)) \
             AS keys ORDER BY k",
    )
    .bind(&providers)
    .bind(&references)
    .execute(&mut *conn)
    .await?;
    Ok(())
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

/// The plans' rows, column by column.
fn rows<'a>(plans: &[&'a Plan<'a>]) -> Rows<'a> {
    let mut rows = Rows::default();
    for plan in plans {
        let (Some(event), Some(now)) = (plan.last_event, plan.now) else {
            continue;
        };
        // The row's amount and currency once the batch is applied, against what was expected.
        let amount_mismatch = plan.seen.as_ref().is_some_and(|seen| {
            seen.mismatches(
                plan.details.amount.as_deref().or(seen.amount.as_deref()),
                plan.details
                    .currency
                    .as_deref()
                    .or(seen.currency.as_deref()),
            )
        });
        rows.push(
            plan.provider,
            plan.reference,
            now.status.as_str(),
            &event.event_id,
            &event.event_type,
            now.last_event_at,
            amount_mismatch,
            &plan.details,
        );
    }
    rows
}

/// Creates the transactions first seen in this batch. The advisory locks make a concurrent
/// creation impossible; should a row appear anyway, the unique key refuses it and the batch fails.
async fn insert(conn: &mut PgConnection, plans: &[&Plan<'_>]) -> Result<(), ApplyError> {
    rows(plans)
        .bind(sqlx::query(sqlx::AssertSqlSafe(INSERT.as_str())))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Moves the locked transactions. The `WHERE` repeats what the rules saw, so a row changed under
/// us (impossible while we hold the locks, but cheap to check) is not overwritten. Details an
/// event leaves out keep their stored value.
async fn update(conn: &mut PgConnection, plans: &[&Plan<'_>]) -> Result<(), ApplyError> {
    let rows = rows(plans);
    let seen: Vec<&Seen> = plans.iter().filter_map(|p| p.seen.as_ref()).collect();
    let seen_status: Vec<&str> = seen.iter().map(|s| s.status.as_str()).collect();
    let seen_at: Vec<Option<DateTime<Utc>>> = seen.iter().map(|s| s.last_event_at).collect();
    let done = rows
        .bind(sqlx::query(sqlx::AssertSqlSafe(UPDATE.as_str())))
        .bind(&seen_status)
        .bind(&seen_at)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == rows.len() as u64 {
        Ok(())
    } else {
        Err(ApplyError::Broken(
            "a locked transaction changed under the worker".into(),
        ))
    }
}
