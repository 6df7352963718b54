//! The background worker: claims stored events in batches with `FOR UPDATE SKIP LOCKED`, applies
//! them through the transaction rules and records each outcome, all in one database transaction.
//!
//! Claims are row locks, not leases: if this process dies mid-batch its connection drops, the
//! transaction rolls back and the events are pending again for any replica. A batch is applied
//! with a few set-based statements; if that fails, its events are applied one by one, each in its
//! own savepoint, so one bad event is retried with exponential backoff (then parked as `dead`)
//! without holding back the others.

mod finished;

use std::{
    sync::{Arc, LazyLock},
    time::Instant,
};

use crate::store::db::Db;
use sqlx::{Connection, PgConnection};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use serde::Deserialize;

use finished::{Claimed, Finished, record, report};

use super::{
    mapping::{self, Meaning, StoredEvent},
    transactions::{self, Applied, ApplyError, Prepared},
};
use crate::{
    backoff,
    intake::{inbox::Activity, providers::Providers},
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
    /// Events per claiming transaction while deliveries arrive.
    pub batch_size: i64,
    /// Events per claiming transaction once none arrived for a moment (at least `batch_size`).
    pub catch_up_batch_size: i64,
    /// Poll period for due work.
    pub poll_interval_ms: u64,
    /// First retry delay after a failed application.
    pub retry_base_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
    /// Failed attempts before an event is parked as `dead`.
    pub max_attempts: i32,
}

/// How long no delivery must have been stored before the worker claims catch-up batches.
const QUIET: std::time::Duration = std::time::Duration::from_millis(50);

impl WorkerSettings {
    /// Events to claim next: `batch_size` while deliveries arrive, the larger catch-up batch once
    /// the intake has been `quiet`.
    pub fn batch_for(&self, quiet: bool) -> i64 {
        if quiet {
            self.catch_up_batch_size.max(self.batch_size)
        } else {
            self.batch_size
        }
    }

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
                !(1..=10_000).contains(&self.catch_up_batch_size),
                "worker.catch_up_batch_size",
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

/// Takes one event for an admin's replay, whatever its status; waits for a worker holding it.
const REPLAY_CLAIM: &str = "SELECT id, provider, event_id, event_type, raw_body, received_at, attempts \
                            FROM webhook_events WHERE provider = $1 AND event_id = $2 FOR UPDATE";

/// How a replayed event ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Its status now: `processed`, `ignored`, `dead`, or `pending` (failed, retried later).
    pub status: EventStatus,
    /// The rules' outcome when it was processed: applied, unchanged, stale or refused.
    pub outcome: Option<&'static str>,
    /// Why: the rules' reason for stale and refused, the error for dead and pending.
    pub reason: Option<String>,
}

/// Applies stored events until told to stop.
#[derive(Clone)]
pub struct Worker {
    pool: Db,
    providers: Arc<Providers>,
    settings: WorkerSettings,
    wake: Arc<Notify>,
    /// When this process last stored deliveries: the batch size follows it.
    intake: Activity,
}

impl Worker {
    /// A worker over `pool`; `wake` is notified by the webhook route after each new event, and
    /// `intake` says when the inbox last stored some.
    pub fn new(
        pool: Db,
        providers: Arc<Providers>,
        settings: WorkerSettings,
        wake: Arc<Notify>,
        intake: Activity,
    ) -> Self {
        Self {
            pool,
            providers,
            settings,
            wake,
            intake,
        }
    }

    /// Runs until `shutdown` is cancelled, then returns after the batch in hand is committed.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut wakeups = Wakeups::new(&self.pool, CHANNEL);
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
        while !shutdown.is_cancelled() {
            let limit = self.settings.batch_for(self.intake.quiet_for(QUIET));
            if self.process_batch(limit).await? < limit as usize {
                break;
            }
        }
        Ok(())
    }

    /// Claims up to `limit` due events, applies them and commits; returns how many it claimed.
    pub async fn process_batch(&self, limit: i64) -> Result<usize, sqlx::Error> {
        let started = Instant::now();
        let mut tx = self.pool.begin().await?;
        let claimed: Vec<Claimed> = sqlx::query_as(sqlx::AssertSqlSafe(CLAIM.as_str()))
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let finished = self.process(&mut tx, &claimed).await?;
        tx.commit().await?;
        report(&claimed, &finished, started);
        Ok(claimed.len())
    }

    /// Applies one stored event again now, whatever its status, through the same rules (an
    /// admin's replay: idempotent), and says how it ended; `None` when there is no such event.
    pub async fn replay(
        &self,
        provider: &str,
        event_id: &str,
    ) -> Result<Option<Replayed>, sqlx::Error> {
        let started = Instant::now();
        let mut tx = self.pool.begin().await?;
        let Some(claimed) = sqlx::query_as::<_, Claimed>(REPLAY_CLAIM)
            .bind(provider)
            .bind(event_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let claimed = [claimed];
        let finished = self.process(&mut tx, &claimed).await?;
        tx.commit().await?;
        report(&claimed, &finished, started);
        Ok(finished.into_iter().next().map(|f| Replayed {
            status: f.status,
            outcome: f.outcome,
            reason: f.reason.or(f.error),
        }))
    }

    /// Applies claimed events in the caller's transaction and records how each ended.
    async fn process(
        &self,
        tx: &mut PgConnection,
        claimed: &[Claimed],
    ) -> Result<Vec<Finished>, sqlx::Error> {
        let mut finished = Vec::with_capacity(claimed.len());
        let mut ready: Vec<(Prepared, &Claimed)> = Vec::with_capacity(claimed.len());
        for event in claimed {
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
            let provider = self.providers.get(&event.provider);
            match mapping::interpret(provider, stored) {
                Meaning::Apply(p) => ready.push((*p, event)),
                Meaning::Ignore => {
                    finished.push(Finished::new(event, EventStatus::Ignored, None, None))
                }
                Meaning::Invalid(e) => {
                    // It can never be applied, but it still shows with the transaction it names.
                    let names = mapping::names(provider, payload);
                    finished.push(Finished {
                        reference: names.reference,
                        partner_reference: names.partner_reference,
                        ..Finished::new(
                            event,
                            EventStatus::Dead,
                            None,
                            Some(format!("invalid payload: {e}")),
                        )
                    })
                }
            }
        }
        // Each transaction's events in the order they happened (then arrived): fewer stale
        // events, and the same order whichever worker holds them.
        ready.sort_by(|(a, ca), (b, cb)| {
            (&a.provider, &a.reference, a.at, ca.id).cmp(&(&b.provider, &b.reference, b.at, cb.id))
        });
        let (events, claims): (Vec<Prepared>, Vec<&Claimed>) = ready.into_iter().unzip();
        finished.extend(self.apply_all(tx, &events, &claims).await?);
        record(tx, &finished).await?;
        Ok(finished)
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
            reason: applied.reason,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(batch_size: i64, catch_up_batch_size: i64) -> WorkerSettings {
        WorkerSettings {
            enabled: true,
            concurrency: 1,
            batch_size,
            catch_up_batch_size,
            poll_interval_ms: 1000,
            retry_base_ms: 1000,
            retry_max_ms: 300_000,
            max_attempts: 10,
        }
    }

    #[test]
    fn the_catch_up_batch_is_taken_only_once_the_intake_is_quiet_and_never_below_the_batch() {
        let s = settings(100, 400);
        assert_eq!((s.batch_for(false), s.batch_for(true)), (100, 400));
        let smaller = settings(1000, 400);
        assert_eq!(
            (smaller.batch_for(false), smaller.batch_for(true)),
            (1000, 1000)
        );
    }

    #[test]
    fn a_catch_up_batch_out_of_range_names_its_key() {
        for bad in [0, 10_001] {
            let broken: Vec<_> = settings(100, bad)
                .rules()
                .into_iter()
                .filter(|(broken, _, _)| *broken)
                .map(|(_, key, _)| key)
                .collect();
            assert_eq!(broken, ["worker.catch_up_batch_size"]);
        }
    }
}
