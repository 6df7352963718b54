//! The admin API under `/admin`, for the engineer on call: list and inspect stored events, replay
//! one or every dead letter (re-applied through the same rules, so a replay is idempotent),
//! statistics over a window, and a transaction with its events. Mounted only when `ADMIN_TOKEN`
//! is set; every request needs `Authorization: Bearer <ADMIN_TOKEN>`, compared in constant time.
//! Described by `docs/openapi.json`, which a test checks against [`ROUTES`].

use axum::{
    Json, Router,
    extract::{Path, Query, Request, State},
    http::header,
    middleware::{self, Next},
    response::IntoResponse,
    routing::{get, post},
};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{FromRow, Row};
use subtle::ConstantTimeEq;

use crate::{
    error::{Error, Result},
    secret::Secret,
    startup::AppState,
};

/// Every admin route, as `(method, path)`; the router and the OpenAPI test both read this list.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/admin/events"),
    ("get", "/admin/events/{provider}/{event_id}"),
    ("post", "/admin/events/{provider}/{event_id}/replay"),
    ("post", "/admin/events/replay-dead"),
    ("get", "/admin/stats"),
    ("get", "/admin/transactions"),
];

/// The admin routes, behind the bearer token.
pub fn router(token: Secret) -> Router<AppState> {
    let expected = Sha256::digest(token.expose().as_bytes());
    Router::new()
        .route(ROUTES[0].1, get(list_events))
        .route(ROUTES[1].1, get(one_event))
        .route(ROUTES[2].1, post(replay_one))
        .route(ROUTES[3].1, post(replay_dead))
        .route(ROUTES[4].1, get(stats))
        .route(ROUTES[5].1, get(transactions))
        .route_layer(middleware::from_fn(move |request: Request, next: Next| {
            let expected = expected;
            async move {
                let presented = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(|t| Sha256::digest(t.trim().as_bytes()));
                // Hashing both sides first makes the comparison constant-time whatever the lengths.
                match presented {
                    Some(p) if bool::from(p.ct_eq(&expected)) => next.run(request).await,
                    _ => Error::Unauthorized.into_response(),
                }
            }
        }))
}

/// Filters and paging of `GET /admin/events`.
#[derive(Debug, Deserialize)]
struct EventFilter {
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
struct EventSummary {
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

const SUMMARY: &str = "id, provider, event_id, event_type, source, status, outcome, attempts, \
                       reference, received_at, processed_at, last_error";

async fn list_events(
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

async fn one_event(
    State(state): State<AppState>,
    Path((provider, event_id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let sql = format!(
        "SELECT {SUMMARY}, payload, history, delivery_id, delivery_event, delivery_timestamp, next_attempt_at \
         FROM webhook_events WHERE provider = $1 AND event_id = $2"
    );
    let found = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&provider)
        .bind(&event_id)
        .fetch_optional(&state.pool)
        .await?
        .ok_or(Error::NotFound)?;
    let summary = EventSummary::from_row(&found)?;
    let get_json = |name: &str| {
        found
            .try_get::<sqlx::types::Json<Value>, _>(name)
            .map(|j| j.0)
    };
    let text = |name: &str| found.try_get::<Option<String>, _>(name);
    let body = json!({
        "event": summary,
        "payload": get_json("payload")?,
        "history": get_json("history")?,
        "delivery": {
            "id": text("delivery_id")?,
            "event": text("delivery_event")?,
            "timestamp": text("delivery_timestamp")?,
        },
        "next_attempt_at": found.try_get::<DateTime<Utc>, _>("next_attempt_at")?,
    });
    Ok(Json(body))
}

/// Puts events back in the queue: pending, due now, attempts reset (the history keeps them).
const REPLAY: &str = "UPDATE webhook_events SET status = 'pending', outcome = NULL, attempts = 0, \
                      next_attempt_at = now(), last_error = NULL";

async fn replay_one(
    State(state): State<AppState>,
    Path((provider, event_id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let sql = format!(
        "{REPLAY} WHERE provider = $1 AND event_id = $2 AND status <> 'pending' RETURNING id"
    );
    let replayed: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
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

async fn replay_dead(State(state): State<AppState>) -> Result<Json<Value>> {
    let sql = format!("{REPLAY} WHERE status = 'dead'");
    let replayed = sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&state.pool)
        .await?
        .rows_affected();
    state.wake.notify_one();
    tracing::info!(replayed, "admin: replay of every dead event");
    Ok(Json(json!({ "replayed": replayed })))
}

/// The window of `GET /admin/stats` (default: the last 24 hours).
#[derive(Debug, Deserialize)]
struct Window {
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct Group {
    provider: Option<String>,
    event_type: Option<String>,
    status: Option<String>,
    count: i64,
    avg_processing_seconds: Option<f64>,
    p95_processing_seconds: Option<f64>,
}

async fn stats(State(state): State<AppState>, Query(w): Query<Window>) -> Result<Json<Value>> {
    let until = w.until.unwrap_or_else(Utc::now);
    let since = w.since.unwrap_or(until - Duration::hours(24));
    // GROUPING SETS: per (provider, type, status), and the whole window (all three NULL).
    let groups: Vec<Group> = sqlx::query_as(
        "SELECT provider, event_type, status, count(*) AS count, \
             avg(extract(epoch FROM processed_at - received_at))::float8 AS avg_processing_seconds, \
             (percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at)))::float8 \
                 AS p95_processing_seconds \
         FROM webhook_events WHERE received_at >= $1 AND received_at < $2 \
         GROUP BY GROUPING SETS ((provider, event_type, status), ()) \
         ORDER BY provider NULLS FIRST, event_type, status",
    )
    .bind(since)
    .bind(until)
    .fetch_all(&state.pool)
    .await
    ?;
    let (total, groups): (Vec<Group>, Vec<Group>) =
        groups.into_iter().partition(|g| g.provider.is_none());
    Ok(Json(
        json!({ "since": since, "until": until, "total": total.first(), "groups": groups }),
    ))
}

/// `GET /admin/transactions?reference=...[&provider=fluid]` or `?partner_reference=...`.
#[derive(Debug, Deserialize)]
struct TransactionLookup {
    reference: Option<String>,
    provider: Option<String>,
    partner_reference: Option<String>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct TransactionRow {
    provider: String,
    reference: String,
    partner_reference: Option<String>,
    status: String,
    amount: Option<String>,
    currency: Option<String>,
    fee: Option<String>,
    last_event_id: String,
    last_event_type: String,
    last_event_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// One status change of a transaction, and its forwarding.
#[derive(Debug, Serialize, FromRow)]
struct ChangeRow {
    id: i64,
    status: String,
    previous_status: Option<String>,
    event_id: String,
    event_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
    forwarded_at: Option<DateTime<Utc>>,
    attempts: i32,
    last_error: Option<String>,
}

/// Where reconciliation stands for a non-final FLUID transaction.
#[derive(Debug, Serialize, FromRow)]
struct PollingRow {
    since: DateTime<Utc>,
    polls: i32,
    /// `null` before the first poll; `infinity` once given up.
    next_poll_at: Option<String>,
    last_polled_at: Option<DateTime<Utc>>,
    last_outcome: Option<String>,
    last_error: Option<String>,
}

async fn transactions(
    State(state): State<AppState>,
    Query(q): Query<TransactionLookup>,
) -> Result<Json<Value>> {
    if q.reference.is_none() && q.partner_reference.is_none() {
        return Err(Error::BadRequest(
            "give `reference` (and optionally `provider`) or `partner_reference`".into(),
        ));
    }
    let rows: Vec<TransactionRow> = sqlx::query_as(
        "SELECT provider, reference, partner_reference, status, amount::text AS amount, currency, fee::text AS fee, \
             last_event_id, last_event_type, last_event_at, created_at, updated_at \
         FROM transactions \
         WHERE ($1::text IS NULL OR reference = $1) AND ($2::text IS NULL OR provider = $2) \
           AND ($3::text IS NULL OR partner_reference = $3) \
         ORDER BY created_at LIMIT 100",
    )
    .bind(&q.reference)
    .bind(&q.provider)
    .bind(&q.partner_reference)
    .fetch_all(&state.pool)
    .await
    ?;
    let mut found = Vec::with_capacity(rows.len());
    for row in rows {
        let sql = format!(
            "SELECT {SUMMARY} FROM webhook_events WHERE provider = $1 AND reference = $2 ORDER BY id"
        );
        let events: Vec<EventSummary> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&row.provider)
            .bind(&row.reference)
            .fetch_all(&state.pool)
            .await?;
        let changes: Vec<ChangeRow> = sqlx::query_as(
            "SELECT id, status, previous_status, event_id, event_at, recorded_at, forwarded_at, \
                 attempts, last_error \
             FROM transaction_changes WHERE provider = $1 AND reference = $2 ORDER BY id",
        )
        .bind(&row.provider)
        .bind(&row.reference)
        .fetch_all(&state.pool)
        .await?;
        let reconciliation: Option<PollingRow> = sqlx::query_as(
            "SELECT since, polls, next_poll_at::text AS next_poll_at, last_polled_at, last_outcome, \
                 last_error \
             FROM reconciliation WHERE provider = $1 AND reference = $2",
        )
        .bind(&row.provider)
        .bind(&row.reference)
        .fetch_optional(&state.pool)
        .await?;
        found.push(json!({
            "transaction": row,
            "events": events,
            "changes": changes,
            "reconciliation": reconciliation,
        }));
    }
    if found.is_empty() {
        return Err(Error::NotFound);
    }
    Ok(Json(json!({ "transactions": found })))
}
