//! How each claimed event ended: written back to `webhook_events` in one statement (its status,
//! outcome, error, an entry in its history), then logged and counted once committed.

use std::{collections::HashMap, time::Instant};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::store::rows::EventStatus;

/// A claimed row of `webhook_events`.
#[derive(sqlx::FromRow)]
pub(super) struct Claimed {
    pub id: i64,
    pub provider: String,
    pub event_id: String,
    pub event_type: String,
    /// The body as received (for rows stored before bodies were kept as bytes, its jsonb text).
    pub raw_body: Vec<u8>,
    pub received_at: DateTime<Utc>,
    /// Attempts so far: one per entry of the event's history.
    pub attempts: i32,
}

/// How one event ended in this batch, written back in one statement.
pub(super) struct Finished {
    /// The event's key: (`provider`, `event_id`) is the primary key of `webhook_events`.
    pub provider: String,
    pub event_id: String,
    pub status: EventStatus,
    pub outcome: Option<&'static str>,
    pub error: Option<String>,
    /// Why a stale or refused event changed nothing.
    pub reason: Option<String>,
    pub retry_in_ms: Option<i64>,
    /// The transaction the event is about: the applied one, or what a dead letter's body names.
    pub reference: Option<String>,
    /// The merchant's reference a dead letter's body names (applied events reach it through
    /// their transaction).
    pub partner_reference: Option<String>,
    /// Applied with another amount or currency than the merchant expected.
    pub amount_mismatch: bool,
}

impl Finished {
    pub fn new(
        event: &Claimed,
        status: EventStatus,
        outcome: Option<&'static str>,
        error: Option<String>,
    ) -> Self {
        Self {
            provider: event.provider.clone(),
            event_id: event.event_id.clone(),
            status,
            outcome,
            error,
            reason: None,
            retry_in_ms: None,
            reference: None,
            partner_reference: None,
            amount_mismatch: false,
        }
    }
}

/// Writes every event's outcome in one statement, and appends the attempt to its history: an
/// event's `attempts` is the length of its `history`.
pub(super) async fn record(
    tx: &mut PgConnection,
    finished: &[Finished],
) -> Result<(), sqlx::Error> {
    let providers: Vec<&str> = finished.iter().map(|f| f.provider.as_str()).collect();
    let ids: Vec<&str> = finished.iter().map(|f| f.event_id.as_str()).collect();
    let statuses: Vec<&str> = finished.iter().map(|f| f.status.as_str()).collect();
    let done: Vec<bool> = finished
        .iter()
        .map(|f| f.status != EventStatus::Pending)
        .collect();
    let outcomes: Vec<Option<&str>> = finished.iter().map(|f| f.outcome).collect();
    let errors: Vec<Option<&str>> = finished.iter().map(|f| f.error.as_deref()).collect();
    let reasons: Vec<Option<&str>> = finished.iter().map(|f| f.reason.as_deref()).collect();
    let retries: Vec<Option<i64>> = finished.iter().map(|f| f.retry_in_ms).collect();
    let references: Vec<Option<&str>> = finished.iter().map(|f| f.reference.as_deref()).collect();
    let partners: Vec<Option<&str>> = finished
        .iter()
        .map(|f| f.partner_reference.as_deref())
        .collect();
    sqlx::query(
        "UPDATE webhook_events AS e SET \
             status = f.status, outcome = f.outcome, last_error = f.error, \
             attempts = e.attempts + 1, \
             next_attempt_at = CASE WHEN f.retry_in_ms IS NULL THEN e.next_attempt_at \
                                    ELSE now() + f.retry_in_ms * interval '1 millisecond' END, \
             processed_at = CASE WHEN f.done THEN now() END, \
             reference = COALESCE(f.reference, e.reference), \
             partner_reference = COALESCE(f.partner_reference, e.partner_reference), \
             history = e.history || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object( \
                 'at', now(), 'status', f.status, 'outcome', f.outcome, 'error', f.error, \
                 'reason', f.reason))) \
         FROM unnest($6::text[], $1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $7::text[], \
                     $8::bool[], $9::text[], $10::text[]) \
             AS f(provider, event_id, status, outcome, error, retry_in_ms, reference, done, reason, partner_reference) \
         WHERE e.provider = f.provider AND e.event_id = f.event_id",
    )
    .bind(&ids)
    .bind(&statuses)
    .bind(&outcomes)
    .bind(&errors)
    .bind(&retries)
    .bind(&providers)
    .bind(&references)
    .bind(&done)
    .bind(&reasons)
    .bind(&partners)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Logs one line per event (WARN for a dead letter or an amount mismatch) and counts it, once the
/// batch is committed.
pub(super) fn report(claimed: &[Claimed], finished: &[Finished], started: Instant) {
    let batch_ms = started.elapsed().as_secs_f64() * 1000.0;
    let now = Utc::now();
    let by_id: HashMap<(&str, &str), &Claimed> = claimed
        .iter()
        .map(|c| ((c.provider.as_str(), c.event_id.as_str()), c))
        .collect();
    for (done, event) in finished.iter().filter_map(|f| {
        by_id
            .get(&(f.provider.as_str(), f.event_id.as_str()))
            .map(|c| (f, c))
    }) {
        macro_rules! processed {
            ($level:ident, $message:literal) => {
                tracing::$level!(
                    provider = %event.provider,
                    event_id = %event.event_id,
                    event_type = %event.event_type,
                    status = done.status.as_str(),
                    outcome = done.outcome.unwrap_or("-"),
                    attempt = event.attempts + 1,
                    error = done.error.as_deref().unwrap_or(""),
                    reason = done.reason.as_deref().unwrap_or(""),
                    reference = done.reference.as_deref().unwrap_or(""),
                    amount_mismatch = done.amount_mismatch,
                    lag_ms = (now - event.received_at).num_milliseconds(),
                    batch_ms,
                    $message
                )
            };
        }
        let provider = event.provider.clone();
        if done.status == EventStatus::Dead {
            // A dead letter waits for a person: fix the cause, then replay it.
            processed!(
                warn,
                "event processed: parked dead; fix the cause, then replay it"
            );
        } else if done.amount_mismatch {
            // Applied as FLUID says, but not what the merchant initiated: someone must look.
            processed!(warn, "event processed");
            metrics::counter!("fluid_webhooks_amount_mismatches_total", "provider" => provider.clone())
                .increment(1);
        } else {
            processed!(info, "event processed");
        }
        let outcome = done.outcome.unwrap_or("-");
        metrics::counter!("fluid_webhooks_processed_total", "provider" => provider.clone(), "status" => done.status.as_str(), "outcome" => outcome)
            .increment(1);
        if done.error.is_some() {
            metrics::counter!("fluid_webhooks_processing_failures_total", "provider" => provider.clone()).increment(1);
        }
        if done.status != EventStatus::Pending {
            let lag = (now - event.received_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
            metrics::histogram!("fluid_webhooks_processing_seconds", "provider" => provider)
                .record(lag.max(0.0));
        }
    }
}
