//! `GET /admin/stats`: counts and processing times of the events received in a window, per
//! provider, type and status, and in total.

use crate::http::extract::Query;
use axum::{Json, extract::State};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::http::{AppState, error::Result};

/// The window of `GET /admin/stats` (default: the last 24 hours).
#[derive(Debug, Deserialize)]
pub(super) struct Window {
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

/// `GET /admin/stats`.
pub(super) async fn stats(
    State(state): State<AppState>,
    Query(w): Query<Window>,
) -> Result<Json<Value>> {
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
