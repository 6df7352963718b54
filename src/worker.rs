//! The background worker: claims stored events in batches with `FOR UPDATE SKIP LOCKED`, applies
//! each through the transaction rules and records the outcome, all in one database transaction.
//!
//! Claims are row locks, not leases: if this process dies mid-batch its connection drops, the
//! transaction rolls back and the events are pending again for any replica. An event whose
//! application fails is retried with exponential backoff, then parked as `failed`.

use std::{sync::Arc, time::Instant};

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgPool, postgres::PgListener};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    config::WorkerSettings,
    payload::FluidEvent,
    transactions::{self, ApplyError, EventRef, parse_time, rules::Status},
};

/// The channel a statement-level trigger on `webhook_events` notifies, so every replica's worker
/// wakes up when any replica stores an event.
pub const CHANNEL: &str = "webhook_events";

/// A claimed row of `webhook_events`.
#[derive(sqlx::FromRow)]
struct Claimed {
    id: i64,
    event_id: String,
    event_type: String,
    payload: String,
    received_at: DateTime<Utc>,
    attempts: i32,
}

/// How one event ended in this batch, written back in one statement.
struct Finished {
    id: i64,
    status: &'static str,
    outcome: Option<&'static str>,
    error: Option<String>,
    retry_in_ms: Option<i64>,
}

/// Applies stored events until told to stop.
#[derive(Clone)]
pub struct Worker {
    pool: PgPool,
    settings: WorkerSettings,
    wake: Arc<Notify>,
}

impl Worker {
    /// A worker over `pool`; `wake` is notified by the webhook route after each new event.
    pub fn new(pool: PgPool, settings: WorkerSettings, wake: Arc<Notify>) -> Self {
        Self {
            pool,
            settings,
            wake,
        }
    }

    /// Runs until `shutdown` is cancelled, then returns after the batch in hand is committed.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut listener: Option<PgListener> = None;
        let mut backoff_ms = 0u64;
        while !shutdown.is_cancelled() {
            match self.drain(&shutdown).await {
                Ok(()) => backoff_ms = 0,
                Err(e) => {
                    backoff_ms =
                        (backoff_ms * 2).clamp(self.settings.poll_interval_ms.min(250), 10_000);
                    tracing::warn!(error = %e, retry_in_ms = backoff_ms, "worker cannot reach the database");
                    listener = None;
                }
            }
            if listener.is_none() && backoff_ms == 0 {
                listener = self.listen().await;
            }
            let pause = if backoff_ms > 0 {
                std::time::Duration::from_millis(backoff_ms)
            } else {
                self.settings.poll_interval()
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
                notified = recv(&mut listener) => {
                    if notified.is_err() {
                        listener = None;
                    }
                }
            }
        }
        tracing::debug!("worker stopped");
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await.ok()?;
        listener.listen(CHANNEL).await.ok()?;
        Some(listener)
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
        let mut tx = self.pool.begin().await?;
        let claimed: Vec<Claimed> = sqlx::query_as(
            "SELECT id, event_id, event_type, payload::text AS payload, received_at, attempts \
             FROM webhook_events \
             WHERE status = 'pending' AND next_attempt_at <= now() \
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(self.settings.batch_size)
        .fetch_all(&mut *tx)
        .await?;
        if claimed.is_empty() {
            return Ok(0);
        }

        // Parse first, then apply grouped by transaction and in event-time order: fewer stale
        // events, and every worker locks transaction rows in the same order (no deadlocks).
        let mut work: Vec<(Claimed, Result<FluidEvent, String>)> = claimed
            .into_iter()
            .map(|c| {
                let parsed =
                    serde_json::from_str::<FluidEvent>(&c.payload).map_err(|e| e.to_string());
                (c, parsed)
            })
            .collect();
        work.sort_by(|(a, pa), (b, pb)| {
            let key = |c: &Claimed, p: &Result<FluidEvent, String>| match p {
                Ok(e) => (e.data.transaction.reference.clone(), event_time(c, e), c.id),
                Err(_) => (String::new(), c.received_at, c.id),
            };
            key(a, pa).cmp(&key(b, pb))
        });

        let count = work.len();
        let mut finished = Vec::with_capacity(count);
        for (event, parsed) in work {
            let started = Instant::now();
            let done = self.apply_one(&mut tx, &event, parsed).await?;
            tracing::info!(
                event_id = %event.event_id,
                event_type = %event.event_type,
                status = done.status,
                outcome = done.outcome.unwrap_or("-"),
                attempt = event.attempts + 1,
                error = done.error.as_deref().unwrap_or(""),
                elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                "event processed"
            );
            finished.push(done);
        }
        record(&mut tx, &finished).await?;
        tx.commit().await?;
        Ok(count)
    }

    /// Applies one event inside a savepoint, so its failure undoes only its own writes.
    /// Returns `Err` only when the connection itself is gone (the whole batch then rolls back).
    async fn apply_one(
        &self,
        tx: &mut sqlx::PgConnection,
        event: &Claimed,
        parsed: Result<FluidEvent, String>,
    ) -> Result<Finished, sqlx::Error> {
        let finished = |status, outcome, error| Finished {
            id: event.id,
            status,
            outcome,
            error,
            retry_in_ms: None,
        };
        let Some(status) = Status::from_event_type(&event.event_type) else {
            return Ok(finished("ignored", None, None));
        };
        let payload = match parsed {
            Ok(p) => p,
            Err(e) => {
                return Ok(finished(
                    "failed",
                    None,
                    Some(format!("invalid payload: {e}")),
                ));
            }
        };
        let at = event_time(event, &payload);
        let reference = EventRef {
            event_id: &event.event_id,
            event_type: &event.event_type,
            at,
        };
        let mut savepoint = tx.begin().await?;
        match transactions::apply(&mut savepoint, &reference, status, payload).await {
            Ok(decision) => {
                savepoint.commit().await?;
                Ok(finished("processed", Some(decision.outcome()), None))
            }
            Err(ApplyError::Invalid(msg)) => {
                savepoint.rollback().await?;
                Ok(finished(
                    "failed",
                    None,
                    Some(format!("invalid payload: {msg}")),
                ))
            }
            Err(ApplyError::Database(e)) if !matches!(e, sqlx::Error::Database(_)) => Err(e),
            Err(ApplyError::Database(e)) => {
                savepoint.rollback().await?;
                let attempts = event.attempts + 1;
                if attempts >= self.settings.max_attempts {
                    Ok(finished("failed", None, Some(e.to_string())))
                } else {
                    Ok(Finished {
                        retry_in_ms: Some(self.backoff_ms(attempts)),
                        ..finished("pending", None, Some(e.to_string()))
                    })
                }
            }
        }
    }

    /// `retry_base_ms * 2^(attempts-1)`, at most `retry_max_ms`.
    fn backoff_ms(&self, attempts: i32) -> i64 {
        let exp = (attempts - 1).clamp(0, 30) as u32;
        let delay = self
            .settings
            .retry_base_ms
            .saturating_mul(1u64 << exp)
            .min(self.settings.retry_max_ms);
        i64::try_from(delay).unwrap_or(i64::MAX)
    }
}

/// When the event happened: its own timestamp, or its arrival when it has none or an unreadable one.
fn event_time(claimed: &Claimed, event: &FluidEvent) -> DateTime<Utc> {
    parse_time(event.timestamp.as_deref()).unwrap_or(claimed.received_at)
}

async fn recv(listener: &mut Option<PgListener>) -> Result<(), sqlx::Error> {
    match listener {
        Some(l) => l.recv().await.map(|_| ()),
        None => std::future::pending().await,
    }
}

/// Writes every event's outcome in one statement.
async fn record(tx: &mut sqlx::PgConnection, finished: &[Finished]) -> Result<(), sqlx::Error> {
    let ids: Vec<i64> = finished.iter().map(|f| f.id).collect();
    let statuses: Vec<&str> = finished.iter().map(|f| f.status).collect();
    let outcomes: Vec<Option<&str>> = finished.iter().map(|f| f.outcome).collect();
    let errors: Vec<Option<&str>> = finished.iter().map(|f| f.error.as_deref()).collect();
    let retries: Vec<Option<i64>> = finished.iter().map(|f| f.retry_in_ms).collect();
    sqlx::query(
        "UPDATE webhook_events AS e SET \
             status = f.status, outcome = f.outcome, last_error = f.error, \
             attempts = e.attempts + 1, \
             next_attempt_at = CASE WHEN f.retry_in_ms IS NULL THEN e.next_attempt_at \
                                    ELSE now() + f.retry_in_ms * interval '1 millisecond' END, \
             processed_at = CASE WHEN f.status = 'pending' THEN NULL ELSE now() END \
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[]) \
             AS f(id, status, outcome, error, retry_in_ms) \
         WHERE e.id = f.id",
    )
    .bind(&ids)
    .bind(&statuses)
    .bind(&outcomes)
    .bind(&errors)
    .bind(&retries)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
