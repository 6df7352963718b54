//! The poller: each round claims due transactions within the shared budget, asks FLUID about each
//! (concurrently, up to `reconciliation.concurrency`), stores a changed status as an event for the
//! worker and schedules the next poll with backoff, or gives up after `max_attempts`.

use std::time::{Duration, Instant};

use crate::store::db::Db;
use chrono::Utc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{
    ReconciliationSettings,
    api::{Answer, FluidApi, Polled},
    budget::{self, Claim},
    poll_event::PollEvent,
};
use crate::{
    apply::transactions::rules::Status,
    backoff,
    intake::{inbox::Inbox, providers::FLUID},
    secret::Secret,
    store::database::Failure,
};

/// When the non-final transactions are looked for a second time after start: longer than any
/// worker transaction lasts (`database.statement_timeout_ms` is 10 s by default).
const ONE_MORE_WATCH_AFTER: Duration = Duration::from_secs(60);

/// Polls FLUID for transactions that stay non-final, until told to stop.
pub struct Poller {
    pool: Db,
    inbox: Inbox,
    api: FluidApi,
    settings: ReconciliationSettings,
}

impl Poller {
    /// A poller over `pool`, asking FLUID with `key` and handing changed statuses to `inbox`.
    pub fn new(
        pool: Db,
        inbox: Inbox,
        key: Secret,
        settings: ReconciliationSettings,
    ) -> anyhow::Result<Self> {
        let api = FluidApi::new(
            settings.base_url.clone(),
            key,
            Duration::from_millis(settings.timeout_ms),
        )?;
        Ok(Self {
            pool,
            inbox,
            api,
            settings,
        })
    }

    /// Turns polling on for every replica (the budget's row makes the trigger watch new
    /// non-final transactions) and watches the non-final transactions already stored. Every
    /// start does it, so a transaction whose creation raced with turning polling on is not
    /// missed; `ON CONFLICT DO NOTHING` keeps the state of those already watched.
    async fn start(&self) -> Result<u64, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO reconciliation_budget DEFAULT VALUES ON CONFLICT DO NOTHING")
            .execute(&mut *tx)
            .await?;
        let not_final: Vec<&str> = Status::ALL
            .into_iter()
            .filter(|s| !s.is_final())
            .map(Status::as_str)
            .collect();
        let watched = sqlx::query(
            "INSERT INTO reconciliation (provider, reference, since) \
             SELECT provider, reference, updated_at FROM transactions \
             WHERE provider = $1 AND status = ANY($2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(FLUID)
        .bind(&not_final)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(watched)
    }

    /// Runs rounds until `shutdown`, which also abandons a round in progress.
    pub async fn run(self, shutdown: CancellationToken) {
        // Watching starts twice: at once, and once more after any worker transaction that began
        // before polling was on has ended (it created its transactions without watching them).
        let mut watch_from_scratch = vec![Instant::now() + ONE_MORE_WATCH_AFTER, Instant::now()];
        tracing::info!(
            base_url = %self.settings.base_url,
            after_secs = self.settings.after_secs,
            rate_per_minute = self.settings.rate_per_minute,
            "reconciliation: polling FLUID for transactions that stay non-final"
        );
        while !shutdown.is_cancelled() {
            if watch_from_scratch
                .last()
                .is_some_and(|at| *at <= Instant::now())
            {
                match self.start().await {
                    Ok(watched) => {
                        watch_from_scratch.pop();
                        tracing::info!(
                            newly_watched = watched,
                            "reconciliation: non-final transactions watched"
                        );
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reconciliation: cannot start; will try again")
                    }
                }
            }
            // A shutdown does not wait for FLUID: an unrecorded poll keeps its lease and is
            // polled again by a replica that is still running.
            let round = tokio::select! {
                () = shutdown.cancelled() => break,
                round = self.round() => round,
            };
            let polled = match round {
                Ok(polled) => polled,
                Err(e) => {
                    tracing::warn!(error = %e, "reconciliation: round failed; will try again");
                    0
                }
            };
            if polled == 0 {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(self.settings.interval_ms)) => {}
                }
            }
        }
    }

    /// Claims due transactions within the shared budget, polls them concurrently and records
    /// each answer; returns how many it polled.
    pub async fn round(&self) -> Result<usize, Failure> {
        let claimed = budget::claim(&self.pool, &self.settings).await?;
        let mut polls = JoinSet::new();
        for claim in claimed.iter().cloned() {
            let api = self.api.clone();
            polls.spawn(async move {
                let started = Instant::now();
                let polled = api.debit_request(&claim.reference).await;
                (claim, polled, started.elapsed())
            });
        }
        while let Some(done) = polls.join_next().await {
            if let Ok((claim, polled, took)) = done {
                self.record(&claim, polled, took).await?;
            }
        }
        Ok(claimed.len())
    }

    /// Hands a changed status to the inbox as an event for the worker (poll -> inbox -> worker,
    /// like a webhook), then schedules the next poll (or gives up) and passes a pause FLUID asked
    /// for on to every replica, in one database transaction. Should this process die between the
    /// two, the lease ends, the transaction is polled again, and the same answer is the same event.
    async fn record(&self, claim: &Claim, polled: Polled, took: Duration) -> Result<(), Failure> {
        let s = &self.settings;
        let (outcome, error) = match &polled.answer {
            Answer::Status { status, body } => match Status::parse(status) {
                None => ("invalid", Some(format!("unknown status `{status}`"))),
                Some(theirs) => {
                    let ours: Option<String> = sqlx::query_scalar(
                        "SELECT status FROM transactions WHERE provider = $1 AND reference = $2",
                    )
                    .bind(&claim.provider)
                    .bind(&claim.reference)
                    .fetch_optional(&self.pool)
                    .await?;
                    if ours.as_deref() == Some(theirs.as_str()) {
                        ("unchanged", None)
                    } else {
                        let event = PollEvent::new(&claim.reference, theirs, body, Utc::now());
                        self.inbox.store(event.into_event()).await?;
                        ("changed", None)
                    }
                }
            },
            other => (other.outcome(), other.error()),
        };
        let mut tx = self.pool.begin().await?;
        if let Some(pause) = polled.pause {
            budget::pause(&mut tx, pause).await?;
        }
        // A 429 is FLUID's limit, not an answer: it does not count as one of the polls.
        let counted = !matches!(polled.answer, Answer::RateLimited);
        let polls = claim.polls + i32::from(counted);
        let gave_up = counted && polls >= s.max_attempts;
        let next_in_ms = if counted {
            backoff::delay_ms(s.retry_base_ms, s.retry_max_ms, polls)
        } else {
            i64::try_from(polled.pause.unwrap_or_default().as_millis()).unwrap_or(i64::MAX)
        };
        sqlx::query(
            "UPDATE reconciliation SET polls = $3, last_polled_at = now(), last_outcome = $4, \
                 last_error = $5, \
                 next_poll_at = CASE WHEN $6 THEN 'infinity'::timestamptz \
                                     ELSE now() + $7 * interval '1 millisecond' END \
             WHERE provider = $1 AND reference = $2",
        )
        .bind(&claim.provider)
        .bind(&claim.reference)
        .bind(polls)
        .bind(outcome)
        .bind(&error)
        .bind(gave_up)
        .bind(next_in_ms)
        .execute(&mut *tx)
        .await?;
        let answered = match &polled.answer {
            Answer::Status { status, .. } => Some(status.as_str()),
            _ => None,
        };
        // Every poll, for the transaction's timeline in the console.
        sqlx::query(
            "INSERT INTO reconciliation_polls (provider, reference, outcome, status, error, took_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&claim.provider)
        .bind(&claim.reference)
        .bind(outcome)
        .bind(answered)
        .bind(&error)
        .bind(i32::try_from(took.as_millis()).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await?;
        // Counted before the commit: the poll happened whatever becomes of the commit.
        metrics::counter!("fluid_webhooks_reconciliation_polls_total", "outcome" => outcome)
            .increment(1);
        metrics::histogram!("fluid_webhooks_reconciliation_poll_seconds")
            .record(took.as_secs_f64());
        tx.commit().await?;

        tracing::info!(
            reference = %claim.reference,
            outcome,
            status = answered.unwrap_or("-"),
            polls,
            took_ms = took.as_millis() as u64,
            error = error.as_deref().unwrap_or(""),
            "reconciliation: polled FLUID"
        );
        if gave_up {
            metrics::counter!("fluid_webhooks_reconciliation_exhausted_total").increment(1);
            tracing::warn!(
                reference = %claim.reference,
                polls,
                "reconciliation: still not final after the last poll; giving up on this transaction"
            );
        }
        Ok(())
    }
}
