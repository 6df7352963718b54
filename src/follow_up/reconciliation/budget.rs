//! The one budget of polls every replica draws from: FLUID's rate limit is per API key, so the
//! token bucket is the single locked row of `reconciliation_budget`. A claim takes as many due
//! transactions as the bucket has tokens and leases them (moves their `next_poll_at` past the
//! request timeout), so a replica that dies mid-poll leaves them to the others. A pause FLUID asks
//! for (429, or an exhausted rate limit) is written there too, for every replica.

use std::time::Duration;

use crate::store::db::Db;
use sqlx::PgConnection;

use super::ReconciliationSettings;
use crate::backoff;

/// A transaction claimed for a poll.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claim {
    /// Who sent the transaction's events.
    pub provider: String,
    /// The transaction.
    pub reference: String,
    /// Polls already answered.
    pub polls: i32,
}

/// Takes tokens from the shared bucket and leases that many due transactions, oldest due first.
/// Nothing before polling is turned on (no budget row yet).
pub async fn claim(pool: &Db, s: &ReconciliationSettings) -> Result<Vec<Claim>, sqlx::Error> {
    let mut tx = pool.begin().await?;
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
        .bind(backoff::lease_ms(s.timeout_ms))
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

/// Pauses every replica's polling for `pause` (never shortening a pause already asked for).
pub async fn pause(tx: &mut PgConnection, pause: Duration) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE reconciliation_budget \
         SET paused_until = greatest(paused_until, now() + $1 * interval '1 millisecond')",
    )
    .bind(i64::try_from(pause.as_millis()).unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await?;
    Ok(())
}
