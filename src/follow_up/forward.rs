//! Downstream actions ("fulfil the order, send the receipt"). Every status change of a transaction
//! is recorded in `transaction_changes` and announced with `NOTIFY transaction_status` by a
//! database trigger, in the transaction that makes it (migration 0005). With `forward.url` set,
//! the forwarder also POSTs each change there as JSON signed the Standard Webhooks way
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`, keyed with
//! `FORWARD_SECRET`), so the receiver can use any Standard Webhooks library to check it.
//!
//! - **At least once**: a change counts as delivered only when the URL answered 2xx; until then it
//!   is retried with backoff (`retry_base_ms` doubling up to `retry_max_ms`), for ever. A claim is
//!   a lease (`next_attempt_at` moved past the request timeout), so a replica that dies mid-POST
//!   leaves the change to the others, and the receiver may see a change twice (same `webhook-id`).
//! - **In order per transaction**: a change is claimed only when every earlier change of the same
//!   transaction has been delivered. That is settled in the claim's SQL, so it holds across replicas.
//! - Changes are recorded once forwarding is on: the first forwarder to start inserts the row of
//!   `forwarding`, for every replica. What happened before is not sent.

use std::time::{Duration, Instant};

use crate::store::db::Db;
use chrono::{DateTime, Utc};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{error_chain, http_client};
use crate::{backoff, intake::signature::standard, secret::Secret, store::database::Wakeups};

/// The variable holding the forwarding key: a Standard Webhooks secret, `whsec_<base64>`.
pub const SECRET_VAR: &str = "FORWARD_SECRET";

/// The channel the status-change trigger notifies once per database transaction that recorded
/// changes, to wake the forwarders.
pub const CHANNEL: &str = "transaction_changes";

/// `[forward]`: see `config/default.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardSettings {
    /// Where changes are POSTed; `None` (empty in the file): not forwarded.
    #[serde(deserialize_with = "super::deserialize_optional_url")]
    pub url: Option<Url>,
    /// Per-request timeout.
    pub timeout_ms: u64,
    /// First delay after a failed delivery.
    pub retry_base_ms: u64,
    /// Longest delay.
    pub retry_max_ms: u64,
    /// Changes in flight at once in this process (of different transactions).
    pub concurrency: u32,
    /// How often the forwarder looks for due changes besides being woken.
    pub interval_ms: u64,
}

impl ForwardSettings {
    /// The rules of `[forward]`; the first broken one is reported with its key.
    pub fn rules(&self) -> Vec<(bool, &'static str, &'static str)> {
        vec![
            (
                !(1..=256).contains(&self.concurrency),
                "forward.concurrency",
                "must be 1 to 256",
            ),
            (
                self.timeout_ms == 0 || self.interval_ms == 0,
                "forward.timeout_ms and interval_ms",
                "must be at least 1",
            ),
            (
                self.retry_base_ms > self.retry_max_ms,
                "forward.retry_base_ms",
                "must not exceed forward.retry_max_ms",
            ),
        ]
    }
}

/// One status change, as it is POSTed.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Change {
    /// `transaction.status_changed`.
    #[sqlx(skip)]
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The change's id: increasing, also the `webhook-id` (`change_<id>`).
    pub id: i64,
    /// Who sent the events.
    pub provider: String,
    /// The provider's reference of the transaction.
    pub reference: String,
    /// The merchant's own id (order id).
    pub partner_reference: Option<String>,
    /// The new status.
    pub status: String,
    /// The status before; `null` when the change created the transaction.
    pub previous_status: Option<String>,
    /// Exact decimal text.
    pub amount: Option<String>,
    /// Currency code.
    pub currency: Option<String>,
    /// The event that made the change; `null` when the merchant's expectation created it.
    pub event_id: Option<String>,
    /// That event's time; `null` when no event made it.
    pub at: Option<DateTime<Utc>>,
    /// When the change was made here.
    pub recorded_at: DateTime<Utc>,
    /// Deliveries tried, this one included.
    #[serde(skip)]
    pub attempts: i32,
}

impl Change {
    /// The Standard Webhooks message id.
    pub fn webhook_id(&self) -> String {
        format!("change_{}", self.id)
    }
}

/// One POST: the change, whether it was acknowledged (else why not), and how long it took.
type Posted = (Change, Result<(), String>, Duration);

/// Forwards recorded changes to `forward.url`, until told to stop.
pub struct Forwarder {
    pool: Db,
    client: reqwest::Client,
    url: Url,
    key: Vec<u8>,
    settings: ForwardSettings,
}

impl Forwarder {
    /// A forwarder to `url`, signing with `secret` (`whsec_<base64>`).
    pub fn new(
        pool: Db,
        url: Url,
        secret: &Secret,
        settings: ForwardSettings,
    ) -> anyhow::Result<Self> {
        let key = standard::key_bytes(secret).map_err(|e| anyhow::anyhow!("{SECRET_VAR}: {e}"))?;
        let client = http_client(Duration::from_millis(settings.timeout_ms))?;
        Ok(Self {
            pool,
            client,
            url,
            key,
            settings,
        })
    }

    /// Runs until `shutdown` (which also abandons a round in progress); woken by
    /// `NOTIFY transaction_changes`, else every `interval_ms`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut wakeups = Wakeups::new(&self.pool, CHANNEL);
        let mut started = false;
        while !shutdown.is_cancelled() {
            // A shutdown does not wait for the receiver: an unrecorded delivery keeps its lease
            // and is sent again (at least once) by a replica that is still running.
            let round = async {
                if !started {
                    self.start().await?;
                    started = true;
                }
                wakeups.listen().await?;
                self.round().await
            };
            let result = tokio::select! {
                () = shutdown.cancelled() => break,
                result = round => result,
            };
            let busy = match result {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::warn!(error = %e, "forward: round failed; will try again");
                    wakeups.forget();
                    false
                }
            };
            if busy {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = wakeups.wait(Duration::from_millis(self.settings.interval_ms)) => {}
            }
        }
    }

    /// Turns recording of changes on (for every replica), the first time any replica forwards.
    async fn start(&self) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO forwarding DEFAULT VALUES ON CONFLICT DO NOTHING")
            .execute(&self.pool)
            .await?;
        tracing::info!(url = %self.url, "forward: forwarding status changes");
        Ok(())
    }

    /// Claims due changes (each the oldest undelivered of its transaction), POSTs them
    /// concurrently and records each result; returns how many it tried.
    pub async fn round(&self) -> Result<usize, sqlx::Error> {
        let claimed: Vec<Change> = sqlx::query_as(
            "UPDATE transaction_changes AS c \
             SET attempts = c.attempts + 1, next_attempt_at = now() + $2 * interval '1 millisecond' \
             FROM ( \
                 SELECT c.id FROM transaction_changes c \
                 WHERE c.forwarded_at IS NULL AND c.next_attempt_at <= now() \
                   AND NOT EXISTS ( \
                       SELECT 1 FROM transaction_changes p \
                       WHERE p.provider = c.provider AND p.reference = c.reference \
                         AND p.id < c.id AND p.forwarded_at IS NULL) \
                 ORDER BY c.id LIMIT $1 FOR UPDATE OF c SKIP LOCKED \
             ) AS due \
             WHERE c.id = due.id AND c.forwarded_at IS NULL \
             RETURNING c.id, c.provider, c.reference, c.partner_reference, c.status, \
                 c.previous_status, c.amount::text AS amount, c.currency, c.event_id, \
                 c.event_at AS at, c.recorded_at, c.attempts",
        )
        .bind(i64::from(self.settings.concurrency))
        // The lease outlasts the request, so nobody else sends it meanwhile.
        .bind(backoff::lease_ms(self.settings.timeout_ms))
        .fetch_all(&self.pool)
        .await?;
        let mut posts = JoinSet::new();
        for change in claimed.iter().cloned() {
            let post = self.post(change);
            posts.spawn(post);
        }
        // Each answer is recorded as soon as it is in (so the transaction's next change can go),
        // together with the others that are in by then: one statement for many under load.
        while let Some(first) = posts.join_next().await {
            let mut done: Vec<Posted> = first.into_iter().collect();
            while let Some(more) = posts.try_join_next() {
                done.extend(more);
            }
            self.record(&done).await?;
        }
        Ok(claimed.len())
    }

    /// POSTs one change; `Err` says why it was not acknowledged.
    fn post(&self, change: Change) -> impl Future<Output = Posted> + Send + 'static {
        let change = Change {
            kind: "transaction.status_changed",
            ..change
        };
        let request = serde_json::to_vec(&change).map(|body| {
            let id = change.webhook_id();
            let now = Utc::now().timestamp();
            self.client
                .post(self.url.clone())
                .header("content-type", "application/json")
                .header("webhook-id", &id)
                .header("webhook-timestamp", now.to_string())
                .header(
                    "webhook-signature",
                    standard::sign(&self.key, &id, now, &body),
                )
                .body(body)
        });
        async move {
            let started = Instant::now();
            let result = match request {
                Err(e) => Err(e.to_string()),
                Ok(request) => match request.send().await {
                    Ok(response) if response.status().is_success() => Ok(()),
                    Ok(response) => Err(format!("answered HTTP {}", response.status().as_u16())),
                    Err(e) => Err(error_chain(&e)),
                },
            };
            (change, result, started.elapsed())
        }
    }

    /// Records deliveries (`forwarded_at`) and failures (`last_error`, next attempt after the
    /// backoff) in one statement. The `forwarded_at IS NULL` lets the queue's index find the rows.
    async fn record(&self, done: &[Posted]) -> Result<(), sqlx::Error> {
        let mut ids = Vec::with_capacity(done.len());
        let mut errors = Vec::with_capacity(done.len());
        let mut retries = Vec::with_capacity(done.len());
        let mut attempts = Vec::with_capacity(done.len());
        let mut took_ms = Vec::with_capacity(done.len());
        for (change, result, took) in done {
            attempts.push(change.attempts);
            took_ms.push(i32::try_from(took.as_millis()).unwrap_or(i32::MAX));
            let retry_in_ms = backoff::delay_ms(
                self.settings.retry_base_ms,
                self.settings.retry_max_ms,
                change.attempts,
            );
            ids.push(change.id);
            errors.push(result.as_ref().err());
            retries.push(retry_in_ms);
            // Counted before the rows are written: the POST happened whatever becomes of the write.
            let outcome = if result.is_ok() {
                "delivered"
            } else {
                "failed"
            };
            metrics::counter!("fluid_webhooks_forwarded_total", "outcome" => outcome).increment(1);
            metrics::histogram!("fluid_webhooks_forward_seconds").record(took.as_secs_f64());
            match result {
                Ok(()) => tracing::info!(
                    change = change.id,
                    reference = %change.reference,
                    status = %change.status,
                    attempt = change.attempts,
                    "forward: change delivered"
                ),
                Err(e) => tracing::warn!(
                    change = change.id,
                    reference = %change.reference,
                    attempt = change.attempts,
                    retry_in_ms,
                    error = %e,
                    "forward: delivery failed; will retry"
                ),
            }
        }
        // And every attempt, for the transaction's timeline in the console.
        sqlx::query(
            "WITH r AS ( \
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::int[], $5::int[]) \
                     AS r(id, error, retry_in_ms, attempt, took_ms)), \
             recorded AS ( \
                 INSERT INTO forward_attempts (change_id, attempt, error, took_ms) \
                 SELECT id, attempt, error, took_ms FROM r \
                 ON CONFLICT (change_id, attempt) DO NOTHING) \
             UPDATE transaction_changes AS c SET \
                 forwarded_at = CASE WHEN r.error IS NULL THEN now() END, \
                 last_error = r.error, \
                 next_attempt_at = CASE WHEN r.error IS NULL THEN c.next_attempt_at \
                                        ELSE now() + r.retry_in_ms * interval '1 millisecond' END \
             FROM r WHERE c.id = r.id AND c.forwarded_at IS NULL",
        )
        .bind(&ids)
        .bind(&errors)
        .bind(&retries)
        .bind(&attempts)
        .bind(&took_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
