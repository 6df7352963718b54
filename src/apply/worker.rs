//! The background worker: claims stored events in batches with `FOR UPDATE SKIP LOCKED`, applies
//! them through the transaction rules and records each outcome, all in one database transaction.
//!
//! Claims are row locks, not leases: if this process dies mid-batch its connection drops, the
//! transaction rolls back and the events are pending again for any replica. A batch is applied
//! with a few set-based statements; if that fails, its events are applied one by one, each in its
//! own savepoint, so one bad event is retried with exponential backoff (then parked as `dead`)
//! without holding back the others.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock},
    time::Instant,
};

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use serde::Deserialize;

use super::{
    mapping::{self, Meaning, StoredEvent},
    transactions::{self, Applied, ApplyError, Prepared},
};
use crate::{
    backoff,
    intake::providers::Providers,
    store::{
        database::{Failure, Wakeups},
        rows::EventStatus,
    },
};

/// `[worker]`: the background application of stored events; see `config/default.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// Whether this process applies events at all.
    pub enabled: bool,
    /// Worker tasks in this process.
    pub concurrency: usize,
    /// Events per claiming transaction.
    pub batch_size: i64,
    /// Poll period for due work.
    pub poll_interval_ms: u64,
    /// First retry delay after a failed application.
    pub retry_base_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
    /// Failed attempts before an event is parked as `dead`.
    pub max_attempts: i32,
}

impl WorkerSettings {
    /// The poll period as a `Duration`.
    pub fn poll_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.poll_interval_ms)
    }

    /// The rules of `[worker]`; the first broken one is reported with its key.
    pub fn rules(&self) -> Vec<(bool, &'static str, &'static str)> {
        vec![
            (
                !(1..=64).contains(&self.concurrency),
                "worker.concurrency",
                "must be 1 to 64",
            ),
            (
                !(1..=10_000).contains(&self.batch_size),
                "worker.batch_size",
                "must be 1 to 10000",
            ),
            (
                self.poll_interval_ms == 0,
                "worker.poll_interval_ms",
                "must be at least 1",
            ),
            (
                self.max_attempts < 1,
                "worker.max_attempts",
                "must be at least 1",
            ),
            (
                self.retry_base_ms > self.retry_max_ms,
                "worker.retry_base_ms",
                "must not exceed worker.retry_max_ms",
            ),
        ]
    }
}

/// The channel a statement-level trigger on `webhook_events` notifies, so every replica's worker
/// wakes up when any replica stores events.
pub const CHANNEL: &str = "webhook_events";

/// Claims due pending events. The status is written into the text (not bound) so the planner
/// uses the partial index `webhook_events_pending_idx`.
static CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT id, provider, event_id, event_type, raw_body, received_at, attempts \
         FROM webhook_events \
         WHERE status = '{}' AND next_attempt_at <= now() \
         ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        EventStatus::Pending
    )
});

/// A claimed row of `webhook_events`.
#[derive(sqlx::FromRow)]
struct Claimed {
    id: i64,
    provider: String,
    event_id: String,
    event_type: String,
    /// The body as received (for rows stored before bodies were kept as bytes, its jsonb text).
    raw_body: Vec<u8>,
    received_at: DateTime<Utc>,
    attempts: i32,
}

/// How one event ended in this batch, written back in one statement.
struct Finished {
    /// The event's key: (`provider`, `event_id`) is the primary key of `webhook_events`.
    provider: String,
    event_id: String,
    status: EventStatus,
    outcome: Option<&'static str>,
    error: Option<String>,
    retry_in_ms: Option<i64>,
    /// The transaction the event is about, when it is a transaction event.
    reference: Option<String>,
    /// Applied with another amount or currency than the merchant expected.
    amount_mismatch: bool,
}

impl Finished {
    fn new(
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
            retry_in_ms: None,
            reference: None,
            amount_mismatch: false,
        }
    }
}

/// Applies stored events until told to stop.
#[derive(Clone)]
pub struct Worker {
    pool: PgPool,
    providers: Arc<Providers>,
    settings: WorkerSettings,
    wake: Arc<Notify>,
}

impl Worker {
    /// A worker over `pool`; `wake` is notified by the webhook route after each new event.
    pub fn new(
        pool: PgPool,
        providers: Arc<Providers>,
        settings: WorkerSettings,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            pool,
            providers,
            settings,
            wake,
        }
    }

    /// Runs until `shutdown` is cancelled, then returns after the batch in hand is committed.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut wakeups = Wakeups::new(self.pool.clone(), CHANNEL);
        let mut backoff_ms = 0u64;
        while !shutdown.is_cancelled() {
            match self.drain(&shutdown).await {
                Ok(()) => backoff_ms = 0,
                Err(e) => {
                    backoff_ms =
                        (backoff_ms * 2).clamp(self.settings.poll_interval_ms.min(250), 10_000);
                    tracing::warn!(error = %Failure::of(&e), retry_in_ms = backoff_ms, "worker: batch not applied; will try again");
                    wakeups.forget();
                }
            }
            // Should listening fail, the worker still looks every poll interval.
            if backoff_ms == 0 {
                wakeups.listen().await.ok();
            }
            let pause = if backoff_ms > 0 {
                std::time::Duration::from_millis(backoff_ms)
            } else {
                self.settings.poll_interval()
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {}
                () = wakeups.wait(pause) => {}
            }
        }
        tracing::debug!("worker stopped");
    }

    /// Applies batches until no due event is left, or until shutdown (between batches).
    pub async fn drain(&self, shutdown: &CancellationToken) -> Result<(), sqlx::Error> {
        while !shutdown.is_cancelled()
            && self.process_batch().await? == self.settings.batch_size as usize
        {}
        Ok(())
    }

    /// Claims up to `batch_size` due events, applies them and commits; returns how many it claimed.
    pub async fn process_batch(&self) -> Result<usize, sqlx::Error> {
        let started = Instant::now();
        let mut tx = self.pool.begin().await?;
        let claimed: Vec<Claimed> = sqlx::query_as(sqlx::AssertSqlSafe(CLAIM.as_str()))
            .bind(self.settings.batch_size)
            .fetch_all(&mut *tx)
            .await?;
        let count = claimed.len();
        if count == 0 {
            return Ok(0);
        }

        let mut finished = Vec::with_capacity(count);
        let mut ready: Vec<(Prepared, &Claimed)> = Vec::with_capacity(count);
        for event in &claimed {
            // The inbox stores only verified UTF-8; anything else was written behind its back.
            let Ok(payload) = std::str::from_utf8(&event.raw_body) else {
                finished.push(Finished::new(
                    event,
                    EventStatus::Dead,
                    None,
                    Some("invalid payload: the stored body is not UTF-8".into()),
                ));
                continue;
            };
            let stored = StoredEvent {
                provider: &event.provider,
                event_id: &event.event_id,
                event_type: &event.event_type,
                payload,
                received_at: event.received_at,
            };
            match mapping::interpret(self.providers.get(&event.provider), stored) {
                Meaning::Apply(p) => ready.push((*p, event)),
                Meaning::Ignore => {
                    finished.push(Finished::new(event, EventStatus::Ignored, None, None))
                }
                Meaning::Invalid(e) => finished.push(Finished::new(
                    event,
                    EventStatus::Dead,
                    None,
                    Some(format!("invalid payload: {e}")),
                )),
            }
        }
        // Each transaction's events in the order they happened (then arrived): fewer stale
        // events, and the same order whichever worker holds them.
        ready.sort_by(|(a, ca), (b, cb)| {
            (&a.provider, &a.reference, a.at, ca.id).cmp(&(&b.provider, &b.reference, b.at, cb.id))
        });
        let (events, claims): (Vec<Prepared>, Vec<&Claimed>) = ready.into_iter().unzip();
        finished.extend(self.apply_all(&mut tx, &events, &claims).await?);

        record(&mut tx, &finished).await?;
        tx.commit().await?;
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
                ($level:ident) => {
                    tracing::$level!(
                        provider = %event.provider,
                        event_id = %event.event_id,
                        event_type = %event.event_type,
                        status = done.status.as_str(),
                        outcome = done.outcome.unwrap_or("-"),
                        attempt = event.attempts + 1,
                        error = done.error.as_deref().unwrap_or(""),
                        amount_mismatch = done.amount_mismatch,
                        lag_ms = (now - event.received_at).num_milliseconds(),
                        batch_ms,
                        "event processed"
                    )
                };
            }
            let provider = event.provider.clone();
            if done.amount_mismatch {
                // Applied as FLUID says, but not what the merchant initiated: someone must look.
                processed!(warn);
                metrics::counter!("fluid_webhooks_amount_mismatches_total", "provider" => provider.clone())
                    .increment(1);
            } else {
                processed!(info);
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
        Ok(count)
    }

    /// Applies the whole batch at once; if the database refuses that, applies the events one by
    /// one so that only the failing ones are retried. `Err` only when the connection is gone.
    async fn apply_all(
        &self,
        tx: &mut PgConnection,
        events: &[Prepared],
        claims: &[&Claimed],
    ) -> Result<Vec<Finished>, sqlx::Error> {
        let processed = |claim: &Claimed, event: &Prepared, applied: Applied| Finished {
            reference: Some(event.reference.clone()),
            amount_mismatch: applied.amount_mismatch,
            ..Finished::new(
                claim,
                EventStatus::Processed,
                Some(applied.decision.outcome()),
                None,
            )
        };
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut savepoint = tx.begin().await?;
        match transactions::apply(&mut savepoint, events).await {
            Ok(decisions) => {
                savepoint.commit().await?;
                return Ok(claims
                    .iter()
                    .zip(events)
                    .zip(decisions)
                    .map(|((c, e), d)| processed(c, e, d))
                    .collect());
            }
            Err(ApplyError::Unreachable(e)) => return Err(e),
            Err(e) => {
                savepoint.rollback().await?;
                tracing::debug!(error = %e, "batch refused; applying its events one by one");
            }
        }
        let mut finished = Vec::with_capacity(events.len());
        for (event, claim) in events.iter().zip(claims) {
            let mut savepoint = tx.begin().await?;
            match transactions::apply(&mut savepoint, std::slice::from_ref(event)).await {
                Ok(decisions) => {
                    savepoint.commit().await?;
                    finished.extend(decisions.into_iter().map(|d| processed(claim, event, d)));
                }
                Err(ApplyError::Unreachable(e)) => return Err(e),
                Err(e) => {
                    savepoint.rollback().await?;
                    let failed = match e {
                        ApplyError::Broken(_) => {
                            tracing::error!(
                                provider = %claim.provider,
                                event_id = %claim.event_id,
                                error = %e,
                                "event parked: a promise of the data is broken; fix it, then replay"
                            );
                            Finished::new(claim, EventStatus::Dead, None, Some(e.to_string()))
                        }
                        _ => self.failed_attempt(claim, e.to_string()),
                    };
                    finished.push(Finished {
                        reference: Some(event.reference.clone()),
                        ..failed
                    });
                }
            }
        }
        Ok(finished)
    }

    /// A failed attempt: retried after a backoff, or parked as `dead` after `max_attempts`.
    fn failed_attempt(&self, claim: &Claimed, error: String) -> Finished {
        let attempts = claim.attempts + 1;
        if attempts >= self.settings.max_attempts {
            return Finished::new(claim, EventStatus::Dead, None, Some(error));
        }
        let delay = backoff::delay_ms(
            self.settings.retry_base_ms,
            self.settings.retry_max_ms,
            attempts,
        );
        Finished {
            retry_in_ms: Some(delay),
            ..Finished::new(claim, EventStatus::Pending, None, Some(error))
        }
    }
}

/// Writes every event's outcome in one statement, and appends the attempt to its history.
async fn record(tx: &mut PgConnection, finished: &[Finished]) -> Result<(), sqlx::Error> {
    let providers: Vec<&str> = finished.iter().map(|f| f.provider.as_str()).collect();
    let ids: Vec<&str> = finished.iter().map(|f| f.event_id.as_str()).collect();
    let statuses: Vec<&str> = finished.iter().map(|f| f.status.as_str()).collect();
    let done: Vec<bool> = finished
        .iter()
        .map(|f| f.status != EventStatus::Pending)
        .collect();
    let outcomes: Vec<Option<&str>> = finished.iter().map(|f| f.outcome).collect();
    let errors: Vec<Option<&str>> = finished.iter().map(|f| f.error.as_deref()).collect();
    let retries: Vec<Option<i64>> = finished.iter().map(|f| f.retry_in_ms).collect();
    let references: Vec<Option<&str>> = finished.iter().map(|f| f.reference.as_deref()).collect();
    sqlx::query(
        "UPDATE webhook_events AS e SET \
             status = f.status, outcome = f.outcome, last_error = f.error, \
             attempts = e.attempts + 1, \
             next_attempt_at = CASE WHEN f.retry_in_ms IS NULL THEN e.next_attempt_at \
                                    ELSE now() + f.retry_in_ms * interval '1 millisecond' END, \
             processed_at = CASE WHEN f.done THEN now() END, \
             reference = COALESCE(f.reference, e.reference), \
             history = e.history || jsonb_build_array(jsonb_build_object( \
                 'at', now(), 'status', f.status, 'outcome', f.outcome, 'error', f.error)) \
         FROM unnest($6::text[], $1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $7::text[], \
                     $8::bool[]) \
             AS f(provider, event_id, status, outcome, error, retry_in_ms, reference, done) \
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
    .execute(&mut *tx)
    .await?;
    Ok(())
}
