//! `GET /admin/events` (filters, paging), `GET /admin/events/{provider}/{event_id}` (one event with
//! its payload and history), and the replays: one event, or every dead letter. A replay puts the
//! event back in the queue, and the worker applies it through the same rules: idempotent.

use axum::{
    Json,
    extract::{Path, Query, State},
};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::{FromRow, Row};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};

use crate::{
    http::{
        AppState,
        error::{Error, Result},
    },
    intake::evidence::{StoredDelivery, Verdict},
    store::rows::{EventStatus, Source},
};

/// Filters and paging of `GET /admin/events`.
#[derive(Debug, Deserialize)]
pub(super) struct EventFilter {
    status: Option<String>,
    event_type: Option<String>,
    provider: Option<String>,
    /// `webhook` or `poll`.
    source: Option<String>,
    /// Received at or after (RFC 3339); default 24 hours ago.
    since: Option<DateTime<Utc>>,
    /// Received before (RFC 3339).
    until: Option<DateTime<Utc>>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<i64>,
    /// Only events older than this `id` (the `next_before` of the previous page).
    before: Option<i64>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub(super) struct EventSummary {
    id: i64,
    provider: String,
    event_id: String,
    event_type: String,
    /// `webhook` or `poll`.
    source: String,
    status: String,
    outcome: Option<String>,
    attempts: i32,
    reference: Option<String>,
    received_at: DateTime<Utc>,
    processed_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
}

pub(super) const SUMMARY: &str = "id, provider, event_id, event_type, source, status, outcome, attempts, \
                       reference, received_at, processed_at, last_error";

/// `GET /admin/events`.
pub(super) async fn list(
    State(state): State<AppState>,
    Query(f): Query<EventFilter>,
) -> Result<Json<Value>> {
    let limit = f.limit.unwrap_or(50).clamp(1, 500);
    let since = f.since.unwrap_or_else(|| Utc::now() - Duration::hours(24));
    let sql = format!(
        "SELECT {SUMMARY} FROM webhook_events \
         WHERE received_at >= $1 AND ($2::timestamptz IS NULL OR received_at < $2) \
           AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR event_type = $4) \
           AND ($5::text IS NULL OR provider = $5) AND ($6::bigint IS NULL OR id < $6) \
           AND ($8::text IS NULL OR source = $8) \
         ORDER BY id DESC LIMIT $7"
    );
    let events: Vec<EventSummary> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(since)
        .bind(f.until)
        .bind(&f.status)
        .bind(&f.event_type)
        .bind(&f.provider)
        .bind(f.before)
        .bind(limit)
        .bind(&f.source)
        .fetch_all(&state.pool)
        .await?;
    let next_before = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    Ok(Json(
        json!({ "events": events, "next_before": next_before }),
    ))
}

/// `GET /admin/events/{provider}/{event_id}`: the event, its exact body and signature, whether it
/// verifies now, and its history.
pub(super) async fn one(
    State(state): State<AppState>,
    Path((provider, event_id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let sql = format!(
        "SELECT {SUMMARY}, raw_body, raw_exact, signature, key_id, history, delivery_id, \
             delivery_event, delivery_timestamp, next_attempt_at \
         FROM webhook_events WHERE provider = $1 AND event_id = $2"
    );
    let found = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&provider)
        .bind(&event_id)
        .fetch_optional(&state.pool)
        .await?
        .ok_or(Error::NotFound)?;
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
    // The payload is read from the stored bytes, not from a re-serialisation: every number comes
    // out digit for digit as it was sent.
    let (raw_text, payload) = match std::str::from_utf8(&raw_body) {
        Ok(text) => (
            Some(text),
            serde_json::value::RawValue::from_string(text.to_string()).ok(),
        ),
        Err(_) => (None, None),
    };
    let mut body = json!({
        "event": summary,
        "payload": payload,
        "raw_exact": raw_exact,
        "signature": signature,
        "key_id": key_id,
        "verifies_now": verdict.verifies(),
        "history": found.try_get::<sqlx::types::Json<Value>, _>("history")?.0,
        "delivery": {
            "id": text("delivery_id")?,
            "event": text("delivery_event")?,
            "timestamp": timestamp,
        },
        "next_attempt_at": found.try_get::<DateTime<Utc>, _>("next_attempt_at")?,
    });
    match raw_text {
        Some(text) => body["raw_body"] = json!(text),
        None => body["raw_body_base64"] = json!(BASE64.encode(&raw_body)),
    }
    Ok(Json(body))
}

/// Puts events back in the queue: pending, due now, attempts reset (the history keeps them).
const REPLAY: &str = "UPDATE webhook_events SET status = $1, outcome = NULL, attempts = 0, \
                      next_attempt_at = now(), last_error = NULL";

/// `POST /admin/events/{provider}/{event_id}/replay`.
pub(super) async fn replay_one(
    State(state): State<AppState>,
    Path((provider, event_id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let sql =
        format!("{REPLAY} WHERE provider = $2 AND event_id = $3 AND status <> $1 RETURNING id");
    let replayed: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(EventStatus::Pending.as_str())
        .bind(&provider)
        .bind(&event_id)
        .fetch_optional(&state.pool)
        .await?;
    if replayed.is_none() {
        let exists: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM webhook_events WHERE provider = $1 AND event_id = $2",
        )
        .bind(&provider)
        .bind(&event_id)
        .fetch_optional(&state.pool)
        .await?;
        exists.ok_or(Error::NotFound)?;
    }
    state.wake.notify_one();
    tracing::info!(
        provider,
        event_id,
        queued = replayed.is_some(),
        "admin: replay"
    );
    Ok(Json(
        json!({ "replayed": replayed.is_some(), "already_pending": replayed.is_none() }),
    ))
}

/// `POST /admin/events/replay-dead`.
pub(super) async fn replay_dead(State(state): State<AppState>) -> Result<Json<Value>> {
    // The dead status in the text, so the partial index `webhook_events_dead_idx` serves it.
    let sql = format!("{REPLAY} WHERE status = '{}'", EventStatus::Dead);
    let replayed = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(EventStatus::Pending.as_str())
        .execute(&state.pool)
        .await?
        .rows_affected();
    state.wake.notify_one();
    tracing::info!(replayed, "admin: replay of every dead event");
    Ok(Json(json!({ "replayed": replayed })))
}
