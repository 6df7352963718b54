//! Reconciliation by polling FLUID's API. FLUID stops retrying a webhook about a minute after its
//! first attempt, so an event missed while this service, its database or the network was down is
//! lost unless someone asks. With `FLUID_API_KEY` set, every replica that runs the worker polls
//! `GET {base_url}/payment-providers/debit-requests/{reference}` for the FLUID transactions that
//! stay non-final longer than `reconciliation.after_secs`.
//!
//! - **Which**: the `reconciliation` table, which a database trigger keeps to exactly the FLUID
//!   transactions that are not final (migration 0005).
//! - **Claims and rate**: FLUID's rate limit is per API key, so all replicas draw from one token
//!   bucket, the single row of `reconciliation_budget`. A round locks that row, takes as many due
//!   transactions as it has tokens and moves their `next_poll_at` past the request timeout: a
//!   lease, so a replica that dies mid-poll leaves them to the others. A 429 (or
//!   `RateLimit-Remaining: 0`) pauses every replica until FLUID's `Retry-After` (or reset).
//! - **Answers**: a status that differs from ours is stored as an event in `webhook_events` with
//!   `source = 'poll'` and event id `poll:<reference>:<status>:<time>`, so the worker applies it
//!   through the same state rules as a webhook (a stale or backward answer changes nothing) and a
//!   repeated answer is stored once.
//! - **Backoff**: `retry_base_ms * 2^(polls-1)` up to `retry_max_ms`, at most `max_attempts` polls
//!   (then `next_poll_at = 'infinity'`: given up, visible in the table and in metrics).

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::{StatusCode, Url, header};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{
    backoff, error,
    inbox::{MAX_DEPTH, MAX_KEY_LEN, nesting_depth},
    secret::Secret,
    transactions::{parse_time, rules::Status},
};

/// The variable holding FLUID's API key; polling is off without it.
pub const API_KEY_VAR: &str = "FLUID_API_KEY";

/// Largest answer read from FLUID's API (a debit request is well under 4 KiB).
const MAX_ANSWER_BYTES: usize = 1 << 20;
/// When the non-final transactions are looked for a second time after start: longer than any
/// worker transaction lasts (`database.statement_timeout_ms` is 10 s by default).
const ONE_MORE_WATCH_AFTER: Duration = Duration::from_secs(60);

/// Longest pause a `Retry-After` or `RateLimit-Reset` is believed for.
const MAX_PAUSE: Duration = Duration::from_secs(3600);

/// `[reconciliation]`: see `config/default.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconciliationSettings {
    /// FLUID's API, e.g. `https://api.fluid-network.com/api/v1`.
    pub base_url: String,
    /// A transaction not final this long after it became non-final is polled.
    pub after_secs: u64,
    /// First delay between two polls of one transaction.
    pub retry_base_ms: u64,
    /// Longest delay.
    pub retry_max_ms: u64,
    /// Polls of one transaction before giving up (at most 10).
    pub max_attempts: i32,
    /// Per-request timeout.
    pub timeout_ms: u64,
    /// Requests a minute, all replicas together.
    pub rate_per_minute: u32,
    /// Requests allowed at once after a quiet spell.
    pub burst: u32,
    /// Polls in flight at once in this process.
    pub concurrency: u32,
    /// How often the poller looks for due transactions.
    pub interval_ms: u64,
}

/// What FLUID's API said about one debit request.
#[derive(Debug)]
pub enum Answer {
    /// The request's status, and the whole body.
    Status {
        /// `data.status`.
        status: String,
        /// The body.
        body: Value,
    },
    /// 404: FLUID does not know the reference.
    NotFound,
    /// 429.
    RateLimited,
    /// 401 or 403: the API key is wrong or lacks the right.
    Unauthorized(u16),
    /// Another HTTP status, or the connection failed.
    Failed(String),
    /// No answer within the timeout.
    Timeout,
    /// An answer that is not the documented JSON.
    Invalid(String),
}

impl Answer {
    /// The `outcome` label of `fluid_webhooks_reconciliation_polls_total` (and of the table).
    /// A status is `changed` or `unchanged` once compared with ours, which `record` does.
    fn outcome(&self) -> &'static str {
        match self {
            Self::Status { .. } => "answered",
            Self::NotFound => "not_found",
            Self::RateLimited => "rate_limited",
            Self::Unauthorized(_) => "unauthorized",
            Self::Failed(_) => "error",
            Self::Timeout => "timeout",
            Self::Invalid(_) => "invalid",
        }
    }

    /// What is kept in `reconciliation.last_error` for answers that are not a status.
    fn error(&self) -> Option<String> {
        match self {
            Self::Status { .. } | Self::RateLimited | Self::Timeout => None,
            Self::NotFound => Some("FLUID does not know this reference".into()),
            Self::Unauthorized(code) => Some(format!(
                "FLUID refused the API key (HTTP {code}); check {API_KEY_VAR}"
            )),
            Self::Failed(e) | Self::Invalid(e) => Some(e.clone()),
        }
    }
}

/// An answer, and how long FLUID asked every client of this key to wait (429's `Retry-After`, or
/// `RateLimit-Reset` once `RateLimit-Remaining` reached 0).
#[derive(Debug)]
pub struct Polled {
    /// What FLUID said.
    pub answer: Answer,
    /// Pause all polling this long.
    pub pause: Option<Duration>,
}

/// FLUID's API, with one HTTP client whose connections are reused.
#[derive(Clone)]
pub struct FluidApi {
    client: reqwest::Client,
    base: Url,
    key: Secret,
}

impl FluidApi {
    /// A client for `base_url`, authenticated with `key`, giving each request `timeout`.
    pub fn new(base_url: &str, key: Secret, timeout: Duration) -> anyhow::Result<Self> {
        let base = Url::parse(base_url.trim_end_matches('/'))
            .map_err(|e| anyhow::anyhow!("reconciliation.base_url `{base_url}`: {e}"))?;
        anyhow::ensure!(
            matches!(base.scheme(), "http" | "https") && !base.cannot_be_a_base(),
            "reconciliation.base_url must be an http(s) URL, not `{base_url}`"
        );
        let client = crate::http_client(timeout)?;
        Ok(Self { client, base, key })
    }

    /// The URL of one debit request; the reference is percent-encoded as one path segment.
    pub fn debit_request_url(&self, reference: &str) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .extend(["payment-providers", "debit-requests", reference]);
        }
        url
    }

    /// `GET /payment-providers/debit-requests/{reference}`.
    pub async fn debit_request(&self, reference: &str) -> Polled {
        let sent = self
            .client
            .get(self.debit_request_url(reference))
            .bearer_auth(self.key.expose())
            .header(header::ACCEPT, "application/json")
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => return unanswered(&e),
        };
        let status = response.status();
        let pause = pause_asked(status, response.headers());
        let answer = match status {
            StatusCode::TOO_MANY_REQUESTS => Answer::RateLimited,
            StatusCode::NOT_FOUND => Answer::NotFound,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Answer::Unauthorized(status.as_u16())
            }
            s if !s.is_success() => Answer::Failed(format!("FLUID answered HTTP {}", s.as_u16())),
            _ => {
                let mut body = Vec::new();
                loop {
                    match response.chunk().await {
                        Ok(Some(chunk)) if body.len() + chunk.len() <= MAX_ANSWER_BYTES => {
                            body.extend_from_slice(&chunk)
                        }
                        Ok(Some(_)) => {
                            break Answer::Invalid(format!(
                                "answer larger than {MAX_ANSWER_BYTES} bytes"
                            ));
                        }
                        Ok(None) => break read_answer(&body),
                        Err(e) => return unanswered(&e),
                    }
                }
            }
        };
        Polled { answer, pause }
    }
}

fn unanswered(e: &reqwest::Error) -> Polled {
    let answer = if e.is_timeout() {
        Answer::Timeout
    } else {
        // The error names the URL (the reference, never the key) and its causes.
        Answer::Failed(error::chain(e))
    };
    Polled {
        answer,
        pause: None,
    }
}

/// FLUID's documented answer: `{"success": true, "data": {"reference", "status", "response": {...}}}`.
fn read_answer(body: &[u8]) -> Answer {
    if nesting_depth(body) > MAX_DEPTH {
        return Answer::Invalid(format!("answer nested deeper than {MAX_DEPTH} levels"));
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(e) => return Answer::Invalid(format!("answer is not JSON: {e}")),
    };
    let data = &value["data"];
    let status = data["status"]
        .as_str()
        .or_else(|| data["response"]["status"].as_str());
    match status {
        _ if value["success"] == Value::Bool(false) => {
            Answer::Invalid(format!("FLUID answered success=false: {}", value["error"]))
        }
        Some(status) => Answer::Status {
            status: status.to_string(),
            body: value,
        },
        None => Answer::Invalid("answer has no data.status".into()),
    }
}

/// How long FLUID asks us to wait: `Retry-After` on a 429 (60 s when absent), or `RateLimit-Reset`
/// once `RateLimit-Remaining` is 0. Capped at an hour.
fn pause_asked(status: StatusCode, headers: &header::HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let pause = if status == StatusCode::TOO_MANY_REQUESTS {
        Some(
            text("retry-after")
                .and_then(seconds_or_date)
                .unwrap_or(Duration::from_secs(60)),
        )
    } else if text("ratelimit-remaining") == Some("0") {
        text("ratelimit-reset").and_then(seconds_or_date)
    } else {
        None
    };
    pause.map(|p| p.min(MAX_PAUSE))
}

/// Delta-seconds, a Unix time (a reset given as an epoch), or an HTTP date.
fn seconds_or_date(text: &str) -> Option<Duration> {
    let now = Utc::now();
    if let Ok(n) = text.parse::<u64>() {
        return Some(if n > 1_000_000_000 {
            let at = DateTime::<Utc>::from_timestamp(i64::try_from(n).ok()?, 0)?;
            (at - now).to_std().unwrap_or_default()
        } else {
            Duration::from_secs(n)
        });
    }
    let at = DateTime::parse_from_rfc2822(text).ok()?;
    Some((at.with_timezone(&Utc) - now).to_std().unwrap_or_default())
}

/// A poll's answer as a FLUID-shaped event: what the worker stores and applies.
#[derive(Debug, PartialEq)]
pub struct PollEvent {
    /// `poll:<reference>:<status>:<time>`: the same answer twice is one event.
    pub event_id: String,
    /// `transaction.<status>`.
    pub event_type: String,
    /// FLUID's `meta.request_id`, kept as the delivery id.
    pub request_id: Option<String>,
    /// The body: `data.transaction` from the answer, `data.poll` the whole answer.
    pub payload: Value,
}

impl PollEvent {
    /// The event for `status` of `reference`, from FLUID's answer `body`. Its time is the
    /// answer's (`response.timestamp`, else `completed_at`, `processed_at`, `meta.timestamp`),
    /// else `now`.
    pub fn new(reference: &str, status: Status, body: &Value, now: DateTime<Utc>) -> Self {
        let response = &body["data"]["response"];
        let time = [
            &response["timestamp"],
            &response["completed_at"],
            &response["processed_at"],
            &body["meta"]["timestamp"],
        ]
        .into_iter()
        .filter_map(Value::as_str)
        .find(|t| parse_time(Some(t)).is_some())
        .map(str::to_string)
        .unwrap_or_else(|| now.to_rfc3339_opts(SecondsFormat::Micros, true));
        let mut transaction = json!({ "reference": reference, "status": status.as_str() });
        for field in [
            "uuid",
            "approval_method",
            "processed_at",
            "completed_at",
            "bank_reference",
        ] {
            if let Some(value) = response.get(field).filter(|v| v.is_string()) {
                transaction[field] = value.clone();
            }
        }
        let mut data = json!({ "transaction": transaction, "poll": body });
        if let Some(message) = response.get("error_message").filter(|v| !v.is_null()) {
            data["error_details"] = json!({ "message": message });
        }
        let event_type = format!("transaction.{}", status.as_str());
        let event_id: String = format!("poll:{reference}:{}:{time}", status.as_str())
            .chars()
            .take(MAX_KEY_LEN)
            .collect();
        Self {
            payload: json!({
                "event": event_type,
                "event_id": event_id,
                "timestamp": time,
                "api_version": "v1",
                "source": "poll",
                "data": data,
            }),
            event_id,
            event_type,
            request_id: body["meta"]["request_id"].as_str().map(str::to_string),
        }
    }
}

/// A transaction claimed for a poll.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Claim {
    provider: String,
    reference: String,
    polls: i32,
}

/// Polls FLUID for transactions that stay non-final, until told to stop.
pub struct Poller {
    pool: PgPool,
    api: FluidApi,
    settings: ReconciliationSettings,
}

impl Poller {
    /// A poller over `pool`, asking FLUID with `key`.
    pub fn new(
        pool: PgPool,
        key: Secret,
        settings: ReconciliationSettings,
    ) -> anyhow::Result<Self> {
        let api = FluidApi::new(
            &settings.base_url,
            key,
            Duration::from_millis(settings.timeout_ms),
        )?;
        Ok(Self {
            pool,
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
        let watched = sqlx::query(
            "INSERT INTO reconciliation (provider, reference, since) \
             SELECT provider, reference, updated_at FROM transactions \
             WHERE provider = 'fluid' AND status IN ('created', 'pending', 'processing') \
             ON CONFLICT DO NOTHING",
        )
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
    pub async fn round(&self) -> Result<usize, sqlx::Error> {
        let claimed = self.claim().await?;
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

    /// Takes tokens from the shared bucket and leases that many due transactions, oldest due first.
    async fn claim(&self) -> Result<Vec<Claim>, sqlx::Error> {
        let s = &self.settings;
        let mut tx = self.pool.begin().await?;
        let Some((tokens, idle_secs, paused)): Option<(f64, f64, bool)> = sqlx::query_as(
            "SELECT tokens, greatest(extract(epoch FROM clock_timestamp() - refilled_at)::float8, 0), \
                    paused_until > now() \
             FROM reconciliation_budget FOR UPDATE",
        )
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(Vec::new()); // not started yet
        };
        let available =
            (tokens + idle_secs * f64::from(s.rate_per_minute) / 60.0).min(f64::from(s.burst));
        let want = if paused {
            0
        } else {
            (available.floor() as i64).min(i64::from(s.concurrency))
        };
        let claimed: Vec<Claim> = if want > 0 {
            sqlx::query_as(
                "UPDATE reconciliation AS w SET next_poll_at = now() + $3 * interval '1 millisecond' \
                 FROM ( \
                     SELECT provider, reference FROM ( \
                         (SELECT provider, reference, since AS due FROM reconciliation \
                          WHERE next_poll_at IS NULL AND since <= now() - $1 * interval '1 second' \
                          ORDER BY since LIMIT $2) \
                         UNION ALL \
                         (SELECT provider, reference, next_poll_at FROM reconciliation \
                          WHERE next_poll_at <= now() ORDER BY next_poll_at LIMIT $2) \
                     ) AS candidates ORDER BY due LIMIT $2 \
                 ) AS due \
                 WHERE w.provider = due.provider AND w.reference = due.reference \
                 RETURNING w.provider, w.reference, w.polls",
            )
            .bind(i64::try_from(s.after_secs).unwrap_or(i64::MAX))
            .bind(want)
            // The lease outlasts the request, so nobody else polls it meanwhile.
            .bind(i64::try_from(s.timeout_ms.saturating_add(30_000)).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await?
        } else {
            Vec::new()
        };
        // Nothing taken: the bucket is as it was (its refill is computed from `refilled_at`), so
        // an idle round writes nothing.
        if !claimed.is_empty() {
            sqlx::query(
                "UPDATE reconciliation_budget SET tokens = $1, refilled_at = clock_timestamp()",
            )
            .bind(available - claimed.len() as f64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Stores a changed status as an event for the worker, schedules the next poll (or gives up)
    /// and passes a pause FLUID asked for on to every replica, in one database transaction.
    async fn record(
        &self,
        claim: &Claim,
        polled: Polled,
        took: Duration,
    ) -> Result<(), sqlx::Error> {
        let s = &self.settings;
        let mut tx = self.pool.begin().await?;
        let (outcome, error) = match &polled.answer {
            Answer::Status { status, body } => match Status::parse(status) {
                None => ("invalid", Some(format!("unknown status `{status}`"))),
                Some(theirs) => {
                    let ours: Option<String> = sqlx::query_scalar(
                        "SELECT status FROM transactions WHERE provider = $1 AND reference = $2",
                    )
                    .bind(&claim.provider)
                    .bind(&claim.reference)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if ours.as_deref() == Some(theirs.as_str()) {
                        ("unchanged", None)
                    } else {
                        let event = PollEvent::new(&claim.reference, theirs, body, Utc::now());
                        sqlx::query(
                            "INSERT INTO webhook_events \
                                 (provider, event_id, event_type, delivery_id, payload, source) \
                             VALUES ($1, $2, $3, $4, $5, 'poll') ON CONFLICT DO NOTHING",
                        )
                        .bind(&claim.provider)
                        .bind(&event.event_id)
                        .bind(&event.event_type)
                        .bind(&event.request_id)
                        .bind(&event.payload)
                        .execute(&mut *tx)
                        .await?;
                        ("changed", None)
                    }
                }
            },
            other => (other.outcome(), other.error()),
        };
        if let Some(pause) = polled.pause {
            sqlx::query(
                "UPDATE reconciliation_budget \
                 SET paused_until = greatest(paused_until, now() + $1 * interval '1 millisecond')",
            )
            .bind(i64::try_from(pause.as_millis()).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
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
        // Counted before the commit: the poll happened whatever becomes of the commit.
        metrics::counter!("fluid_webhooks_reconciliation_polls_total", "outcome" => outcome)
            .increment(1);
        metrics::histogram!("fluid_webhooks_reconciliation_poll_seconds")
            .record(took.as_secs_f64());
        tx.commit().await?;

        let status = match &polled.answer {
            Answer::Status { status, .. } => status.as_str(),
            _ => "-",
        };
        tracing::info!(
            reference = %claim.reference,
            outcome,
            status,
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

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = r#"{"success":true,"data":{"reference":"FLU-1","status":"completed","response":{"uuid":"u-1","status":"completed","timestamp":"2026-01-28T10:31:00Z","reference":"FLU-1","processed_at":"2026-01-28T10:30:30Z","completed_at":"2026-01-28T10:31:00Z","bank_reference":"BNK9","approval_method":"ussd","error_message":null}},"meta":{"timestamp":"2026-01-28T10:35:00Z","request_id":"req_7","api_version":"v1"}}"#;

    #[test]
    fn the_documented_answer_becomes_a_fluid_shaped_event() {
        let Answer::Status { status, body } = read_answer(ANSWER.as_bytes()) else {
            panic!("a status")
        };
        assert_eq!(status, "completed");
        let event = PollEvent::new("FLU-1", Status::Completed, &body, Utc::now());
        assert_eq!(event.event_id, "poll:FLU-1:completed:2026-01-28T10:31:00Z");
        assert_eq!(event.event_type, "transaction.completed");
        assert_eq!(event.request_id.as_deref(), Some("req_7"));
        let parsed: crate::payload::FluidEvent =
            serde_json::from_value(event.payload.clone()).expect("the worker can read it");
        assert_eq!(parsed.data.transaction.reference, "FLU-1");
        assert_eq!(parsed.timestamp.as_deref(), Some("2026-01-28T10:31:00Z"));
        assert_eq!(event.payload["source"], "poll");
        assert_eq!(
            event.payload["data"]["poll"]["data"]["response"]["bank_reference"],
            "BNK9"
        );
        assert!(event.payload["data"].get("error_details").is_none());
    }

    #[test]
    fn an_answer_without_a_time_is_dated_now_and_keeps_its_error_message() {
        let body: Value = serde_json::from_str(
            r#"{"data":{"status":"failed","response":{"error_message":"Insufficient funds"}}}"#,
        )
        .expect("json");
        let now = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("time");
        let event = PollEvent::new("FLU-2", Status::Failed, &body, now);
        assert_eq!(event.payload["timestamp"], "2027-01-15T08:00:00.000000Z");
        assert_eq!(
            event.payload["data"]["error_details"]["message"],
            "Insufficient funds"
        );
    }

    #[test]
    fn broken_answers_are_invalid() {
        for body in [
            "not json",
            r#"{"success":true,"data":{}}"#,
            r#"{"success":false,"error":{"code":3009,"message":"x"}}"#,
            &format!("{}{}", "[".repeat(100), "]".repeat(100)),
        ] {
            assert!(
                matches!(read_answer(body.as_bytes()), Answer::Invalid(_)),
                "{body}"
            );
        }
    }

    #[test]
    fn fluid_asks_for_pauses_with_retry_after_or_an_exhausted_rate_limit() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut map = header::HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, value.parse().expect("header value"));
            }
            map
        };
        let limited = StatusCode::TOO_MANY_REQUESTS;
        assert_eq!(
            pause_asked(limited, &headers(&[("retry-after", "7")])),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            pause_asked(limited, &headers(&[])),
            Some(Duration::from_secs(60)),
            "a 429 without Retry-After waits a minute"
        );
        assert_eq!(
            pause_asked(limited, &headers(&[("retry-after", "999999")])),
            Some(MAX_PAUSE)
        );
        let date = (Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let pause = pause_asked(limited, &headers(&[("retry-after", &date)])).expect("a pause");
        assert!((28..=30).contains(&pause.as_secs()), "{pause:?}");
        let ok = StatusCode::OK;
        assert_eq!(
            pause_asked(
                ok,
                &headers(&[("ratelimit-remaining", "0"), ("ratelimit-reset", "12")])
            ),
            Some(Duration::from_secs(12))
        );
        assert_eq!(
            pause_asked(
                ok,
                &headers(&[("ratelimit-remaining", "5"), ("ratelimit-reset", "12")])
            ),
            None
        );
    }

    #[test]
    fn the_reference_is_one_encoded_path_segment() {
        let api = FluidApi::new(
            "https://sandbox-api.fluid-network.com/api/v1/",
            Secret::new("k"),
            Duration::from_secs(1),
        )
        .expect("valid");
        assert_eq!(
            api.debit_request_url("FLU/../x y").as_str(),
            "https://sandbox-api.fluid-network.com/api/v1/payment-providers/debit-requests/FLU%2F..%2Fx%20y"
        );
        assert!(FluidApi::new("ftp://x", Secret::new("k"), Duration::from_secs(1)).is_err());
    }
}
