//! `GET /admin/events` (filters, paging), `GET /admin/events/{provider}/{event_id}` (one event with
//! its payload and history), and the replays: one event, or every dead letter. A replay puts the
//! event back in the queue, and the worker applies it through the same rules: idempotent.

use crate::http::extract::{Path, Query};
use axum::{Json, extract::State};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json, value::RawValue};
use sqlx::{FromRow, Row};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};

use crate::{
    apply::worker::Replayed,
    http::{
        AppState,
        error::{Error, Result},
    },
    intake::evidence::{StoredDelivery, Verdict},
    store::rows::{EventStatus, Source},
};

/// Filters and paging of `GET /admin/events`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct EventFilter {
    pub(crate) status: Option<String>,
    pub(crate) event_type: Option<String>,
    pub(crate) provider: Option<String>,
    /// `webhook` or `poll`.
    pub(crate) source: Option<String>,
    /// Received at or after (RFC 3339); default 24 hours ago.
    pub(crate) since: Option<DateTime<Utc>>,
    /// Received before (RFC 3339).
    pub(crate) until: Option<DateTime<Utc>>,
    /// Page size, 1 to 500 (default 50).
    pub(crate) limit: Option<i64>,
    /// Only events older than this `id` (the `next_before` of the previous page).
    pub(crate) before: Option<i64>,
    /// Look at no more than this many of the newest events of the window (the console's bound, so
    /// that a filter matching nothing in a million events still answers at once); `None`: as many
    /// as it takes to fill the page (the admin API).
    #[serde(skip)]
    pub(crate) scan: Option<i64>,
}

/// A page of events.
#[derive(Debug)]
pub(crate) struct EventPage {
    /// Newest first.
    pub(crate) events: Vec<EventSummary>,
    /// The `before` of the next page.
    pub(crate) next_before: Option<i64>,
    /// The page stopped at the scan bound: older events may match too.
    pub(crate) cut_short: bool,
}

/// The time window, the cursor, and an id bound that stands for `until` ($9), so that a window in
/// the past starts its scan of the id index where the window ends.
const WINDOW: &str = "received_at >= $1 AND ($2::timestamptz IS NULL OR received_at < $2) \
     AND ($6::bigint IS NULL OR id < $6) AND ($9::bigint IS NULL OR id <= $9)";
/// The filters on top of the window.
const FILTERS: &str = "($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR event_type = $4) \
     AND ($5::text IS NULL OR provider = $5) AND ($8::text IS NULL OR source = $8)";

#[derive(Debug, Serialize, sqlx::FromRow)]
pub(crate) struct EventSummary {
    pub(crate) id: i64,
    pub(crate) provider: String,
    pub(crate) event_id: String,
    pub(crate) event_type: String,
    /// `webhook` or `poll`.
    pub(crate) source: String,
    pub(crate) status: String,
    pub(crate) outcome: Option<String>,
    pub(crate) attempts: i32,
    pub(crate) reference: Option<String>,
    /// The merchant's reference a dead letter's body names (applied events: see their transaction).
    pub(crate) partner_reference: Option<String>,
    /// The body's own `timestamp`, as the sender wrote it.
    pub(crate) timestamp: Option<String>,
    pub(crate) received_at: DateTime<Utc>,
    pub(crate) processed_at: Option<DateTime<Utc>>,
    pub(crate) last_error: Option<String>,
}

pub(crate) const SUMMARY: &str = "id, provider, event_id, event_type, source, status, outcome, attempts, \
                       reference, partner_reference, event_timestamp AS timestamp, received_at, processed_at, last_error";

impl EventFilter {
    /// The page of events this filter selects, newest first, and the `before` of the next page.
    /// An unknown status or source is a 400 naming the accepted values.
    pub(crate) async fn fetch(&self, state: &AppState) -> Result<EventPage> {
        if let Some(status) = self
            .status
            .as_deref()
            .filter(|s| EventStatus::parse(s).is_none())
        {
            return Err(Error::BadRequest(format!(
                "`status={status}` is not a status; use one of {}",
                EventStatus::ALL.map(EventStatus::as_str).join(", ")
            )));
        }
        if let Some(source) = self
            .source
            .as_deref()
            .filter(|s| Source::parse(s).is_none())
        {
            return Err(Error::BadRequest(format!(
                "`source={source}` is not a source; use webhook or poll"
            )));
        }
        let limit = self.limit.unwrap_or(50).clamp(1, 500);
        let since = self
            .since
            .unwrap_or_else(|| Utc::now() - Duration::hours(24));
        // Ids grow with arrival: the newest event received before `until` is among the last ten
        // minutes before it (a transaction that stored an event ten minutes before committing it
        // would be needed to break this), found through the BRIN index on received_at.
        let upto: Option<i64> = match self.until {
            None => None,
            Some(until) => {
                sqlx::query_scalar(
                    "SELECT max(id) FROM webhook_events \
                 WHERE received_at < $1 AND received_at >= $1 - interval '10 minutes'",
                )
                .bind(until)
                .fetch_one(&state.pool)
                .await?
            }
        };
        // No filter needs no bound (the first rows of the window fill the page), and neither do
        // pending and dead events (their partial indexes find them).
        let filtered = self.event_type.is_some()
            || self.provider.is_some()
            || self.source.is_some()
            || self.status.as_deref().is_some_and(|s| {
                ![EventStatus::Pending, EventStatus::Dead]
                    .iter()
                    .any(|partial| partial.as_str() == s)
            });
        let scan = self.scan.filter(|_| filtered);
        let sql = match scan {
            None => format!(
                "SELECT {SUMMARY}, NULL::bigint AS low, NULL::bigint AS scanned FROM webhook_events \
                 WHERE {WINDOW} AND {FILTERS} ORDER BY id DESC LIMIT $7"
            ),
            // The newest $10 events of the window, then the filters over them; always one row,
            // which says how far the scan went even when nothing matched.
            Some(_) => format!(
                "WITH window_events AS MATERIALIZED ( \
                     SELECT {SUMMARY} FROM webhook_events WHERE {WINDOW} ORDER BY id DESC LIMIT $10) \
                 SELECT m.*, e.low, e.scanned \
                 FROM (SELECT min(id) AS low, count(*) AS scanned FROM window_events) AS e \
                 LEFT JOIN LATERAL (SELECT * FROM window_events WHERE {FILTERS} \
                                    ORDER BY id DESC LIMIT $7) AS m ON true \
                 ORDER BY m.id DESC"
            ),
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(since)
            .bind(self.until)
            .bind(&self.status)
            .bind(&self.event_type)
            .bind(&self.provider)
            .bind(self.before)
            .bind(limit)
            .bind(&self.source)
            .bind(upto)
            .bind(scan)
            .fetch_all(&state.pool)
            .await?;
        let mut events = Vec::with_capacity(rows.len());
        let (mut low, mut scanned) = (None, 0);
        for row in &rows {
            low = row.try_get::<Option<i64>, _>("low")?;
            scanned = row.try_get::<Option<i64>, _>("scanned")?.unwrap_or(0);
            if row.try_get::<Option<i64>, _>("id")?.is_some() {
                events.push(EventSummary::from_row(row)?);
            }
        }
        let full = events.len() as i64 == limit;
        let cut_short = !full && scan.is_some_and(|scan| scanned == scan);
        let next_before = if full {
            events.last().map(|e| e.id)
        } else if cut_short {
            low
        } else {
            None
        };
        Ok(EventPage {
            events,
            next_before,
            cut_short,
        })
    }
}

/// `GET /admin/events`.
pub(super) async fn list(
    State(state): State<AppState>,
    Query(f): Query<EventFilter>,
) -> Result<Json<Value>> {
    let page = f.fetch(&state).await?;
    Ok(Json(
        json!({ "events": page.events, "next_before": page.next_before }),
    ))
}

/// One event as `GET /admin/events/{provider}/{event_id}` shows it.
#[derive(Serialize)]
pub(crate) struct EventView {
    pub(crate) event: EventSummary,
    /// The body as JSON, written out byte for byte as stored (`null` if it is not UTF-8).
    pub(crate) payload: Option<Box<RawValue>>,
    /// The body as text, exactly as received; absent when it is not UTF-8...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) raw_body: Option<String>,
    /// ...then in base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) raw_body_base64: Option<String>,
    pub(crate) raw_exact: bool,
    pub(crate) signature: Option<String>,
    pub(crate) key_id: Option<String>,
    pub(crate) verifies_now: Option<bool>,
    pub(crate) history: Value,
    pub(crate) delivery: Value,
    pub(crate) next_attempt_at: DateTime<Utc>,
}

/// `GET /admin/events/{provider}/{event_id}`: the event, its exact body and signature, whether it
/// verifies now, and its history.
pub(super) async fn one(
    State(state): State<AppState>,
    Path((provider, event_id)): Path<(String, String)>,
) -> Result<Json<EventView>> {
    Ok(Json(EventView::load(&state, &provider, &event_id).await?))
}

impl EventView {
    /// One stored event, with whether it verifies now; the admin API and the console show it.
    pub(crate) async fn load(state: &AppState, provider: &str, event_id: &str) -> Result<Self> {
        let sql = format!(
            "SELECT {SUMMARY}, raw_body, raw_exact, signature, key_id, history, delivery_id, \
             delivery_event, delivery_timestamp, next_attempt_at \
         FROM webhook_events WHERE provider = $1 AND event_id = $2"
        );
        let found = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(provider)
            .bind(event_id)
            .fetch_optional(&state.pool)
            .await?
            .ok_or(Error::NoSuchEvent)?;
        let summary = EventSummary::from_row(&found)?;
        let text = |name: &str| found.try_get::<Option<String>, _>(name);
        let raw_body: Vec<u8> = found.try_get("raw_body")?;
        let raw_exact: bool = found.try_get("raw_exact")?;
        let (signature, key_id, timestamp) = (
            text("signature")?,
            text("key_id")?,
            text("delivery_timestamp")?,
        );
        let verdict = Verdict::of(
            &state.providers,
            &StoredDelivery {
                provider: &summary.provider,
                event_id: &summary.event_id,
                source: Source::parse(&summary.source).unwrap_or(Source::Webhook),
                raw_exact,
                key_id: key_id.as_deref(),
                signature: signature.as_deref(),
                delivery_timestamp: timestamp.as_deref(),
                body: &raw_body,
                received_at: summary.received_at.timestamp(),
            },
        );
        // The payload is the stored bytes, written out as they are (a `RawValue` in a struct that
        // is serialised once): every number comes out digit for digit as it was sent. Going through
        // a `serde_json::Value` would turn `100.00` into `100.0`.
        let raw_text = std::str::from_utf8(&raw_body).ok().map(str::to_string);
        let view = EventView {
            event: summary,
            payload: raw_text.clone().and_then(|t| RawValue::from_string(t).ok()),
            raw_body: raw_text.clone(),
            raw_body_base64: raw_text.is_none().then(|| BASE64.encode(&raw_body)),
            raw_exact,
            verifies_now: verdict.verifies(),
            history: found.try_get::<sqlx::types::Json<Value>, _>("history")?.0,
            delivery: json!({
                "id": text("delivery_id")?,
                "event": text("delivery_event")?,
                "timestamp": timestamp,
            }),
            next_attempt_at: found.try_get("next_attempt_at")?,
            signature,
            key_id,
        };
        Ok(view)
    }
}

/// `POST /admin/events/{provider}/{event_id}/replay`: applies the event again now, through the
/// same rules, and answers how it ended.
pub(super) async fn replay_one(
    State(state): State<AppState>,
    Path((provider, event_id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let (replayed, outcome) = replay_now(&state, &provider, &event_id, "admin").await?;
    Ok(Json(json!({
        "replayed": true,
        "status": replayed.status.as_str(),
        "outcome": outcome,
        "reason": replayed.reason,
    })))
}

/// Applies one event again now (the admin API's and the console's replay, `by` says which) and
/// says how it ended: processed events with the rules' outcome, the others with their status.
pub(crate) async fn replay_now(
    state: &AppState,
    provider: &str,
    event_id: &str,
    by: &str,
) -> Result<(Replayed, &'static str)> {
    let replayed = state
        .worker
        .replay(provider, event_id)
        .await?
        .ok_or(Error::NoSuchEvent)?;
    let outcome = replayed.outcome.unwrap_or(replayed.status.as_str());
    tracing::info!(provider, event_id, outcome, by, "replay");
    Ok((replayed, outcome))
}

/// Puts every dead letter back in the queue, due now. `attempts` is kept: it counts the history.
const REPLAY: &str = "UPDATE webhook_events SET status = $1, outcome = NULL, \
                      next_attempt_at = now(), last_error = NULL";

/// `POST /admin/events/replay-dead`.
pub(super) async fn replay_dead(State(state): State<AppState>) -> Result<Json<Value>> {
    let replayed = queue_dead(&state).await?;
    Ok(Json(json!({ "replayed": replayed })))
}

/// Puts every dead letter back in the queue and wakes the workers; how many. The console's
/// "replay all" too.
pub(crate) async fn queue_dead(state: &AppState) -> Result<u64> {
    // The dead status in the text, so the partial index `webhook_events_dead_idx` serves it.
    let sql = format!("{REPLAY} WHERE status = '{}'", EventStatus::Dead);
    let replayed = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(EventStatus::Pending.as_str())
        .execute(&state.pool)
        .await?
        .rows_affected();
    state.wake.notify_one();
    tracing::info!(replayed, "replay of every dead event");
    Ok(replayed)
}
