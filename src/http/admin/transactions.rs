//! `GET /admin/transactions`: a transaction by reference (or the merchant's partner reference),
//! with its events, its status changes and their forwarding, and where reconciliation stands.
//! `POST /admin/transactions`: an expected debit, announced before any webhook.

use crate::http::extract::Query;
use axum::{Json, body::Bytes, extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::FromRow;

use super::events::{EventSummary, SUMMARY};
use crate::{
    apply::{
        expected::{ExpectError, Expectation, Expected, expect},
        mapping::decimal_text,
    },
    http::{
        AppState,
        error::{Error, Result},
    },
};

/// `GET /admin/transactions?reference=...[&provider=fluid]` or `?partner_reference=...`.
#[derive(Debug, Deserialize)]
pub(super) struct TransactionLookup {
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
    expected_amount: Option<String>,
    expected_currency: Option<String>,
    amount_mismatch: bool,
    last_event_id: Option<String>,
    last_event_type: Option<String>,
    last_event_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// One status change of a transaction, and its forwarding.
#[derive(Debug, Serialize, FromRow)]
struct ChangeRow {
    id: i64,
    status: String,
    previous_status: Option<String>,
    event_id: Option<String>,
    event_at: Option<DateTime<Utc>>,
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

/// A transaction's events, and the dead letters that name only its partner reference, in the
/// order they were stored; the admin API and the console's timeline show them.
pub(crate) async fn events_of(
    state: &AppState,
    provider: &str,
    reference: &str,
    partner_reference: Option<&str>,
) -> Result<Vec<EventSummary>> {
    let sql = format!(
        "SELECT {SUMMARY} FROM webhook_events WHERE provider = $1 AND reference = $2 \
         UNION ALL \
         SELECT {SUMMARY} FROM webhook_events \
         WHERE partner_reference = $3 AND provider = $1 AND reference IS NULL \
         ORDER BY id"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(provider)
        .bind(reference)
        .bind(partner_reference)
        .fetch_all(&state.pool)
        .await?)
}

/// `GET /admin/transactions`.
pub(super) async fn lookup(
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
             expected_amount::text AS expected_amount, expected_currency, amount_mismatch, last_event_id, last_event_type, last_event_at, created_at, updated_at \
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
        let events = events_of(
            &state,
            &row.provider,
            &row.reference,
            row.partner_reference.as_deref(),
        )
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
        // No transaction, but maybe events that name it and could not create it (dead letters):
        // they explain why there is none.
        let sql = format!(
            "SELECT {SUMMARY} FROM webhook_events \
             WHERE (($1::text IS NOT NULL AND reference = $1 AND ($2::text IS NULL OR provider = $2)) \
                 OR ($3::text IS NOT NULL AND partner_reference = $3)) \
             ORDER BY id LIMIT 100"
        );
        let events: Vec<EventSummary> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&q.reference)
            .bind(&q.provider)
            .bind(&q.partner_reference)
            .fetch_all(&state.pool)
            .await?;
        if events.is_empty() {
            return Err(Error::NoSuchTransaction);
        }
        return Ok(Json(json!({ "transactions": [], "events": events })));
    }
    Ok(Json(json!({ "transactions": found, "events": [] })))
}

/// The body of `POST /admin/transactions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectBody {
    reference: String,
    partner_reference: String,
    /// A JSON number or a string holding one, kept exactly.
    amount: Box<serde_json::value::RawValue>,
    /// Default `GHS`.
    #[serde(default)]
    currency: Option<String>,
}

/// `POST /admin/transactions`: 201 with the new row, 200 with the stored one when it agrees, 409
/// when the reference is stored with another amount, currency or partner reference.
pub(super) async fn expected(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    let body: ExpectBody = serde_json::from_slice(&body).map_err(|e| {
        Error::BadRequest(format!(
            "the body must be {{\"reference\", \"partner_reference\", \"amount\", \"currency\"}}: {e}"
        ))
    })?;
    let expectation = Expectation {
        reference: body.reference,
        partner_reference: body.partner_reference,
        amount: decimal_text(&body.amount)
            .map_err(|e| Error::BadRequest(format!("`amount`: {e}")))?,
        currency: body.currency.unwrap_or_else(|| "GHS".into()),
    };
    let (status, row) = match expect(&state.pool, &expectation).await {
        Ok(Expected::Created(row)) => (StatusCode::CREATED, row),
        Ok(Expected::Agreed(row)) => (StatusCode::OK, row),
        Err(ExpectError::Invalid(message)) => return Err(Error::BadRequest(message)),
        Err(ExpectError::Conflict(message)) => return Err(Error::Conflict(message)),
        Err(ExpectError::Store(failure)) => return Err(failure.into()),
    };
    tracing::info!(
        reference = %row.reference,
        partner_reference = row.partner_reference.as_deref().unwrap_or(""),
        created = status == StatusCode::CREATED,
        "admin: expected debit"
    );
    Ok((status, Json(json!({ "transaction": row }))))
}
