//! How far behind the service is, read from the database: the inbox, reconciliation and
//! forwarding queues, and the transactions by status. `/metrics` turns it into gauges; the
//! console's overview shows it.

use std::sync::LazyLock;

use sqlx::PgPool;

use super::rows::EventStatus;

/// The queues and counts, as of one read.
#[derive(Debug, Clone, Default)]
pub struct Backlogs {
    /// Stored events still to apply.
    pub inbox: i64,
    /// Age in seconds of the oldest of them.
    pub inbox_oldest_secs: Option<f64>,
    /// Dead letters waiting for a person.
    pub dead: i64,
    /// Non-final FLUID transactions reconciliation still polls.
    pub polling: i64,
    /// Those it gave up on after `max_attempts` polls.
    pub given_up: i64,
    /// Status changes still to forward.
    pub unforwarded: i64,
    /// Age in seconds of the oldest of them.
    pub unforwarded_oldest_secs: Option<f64>,
    /// Transactions by status.
    pub transactions: Vec<(String, i64)>,
    /// Transactions whose amount or currency is not what the merchant expected.
    pub amount_mismatches: i64,
}

/// The inbox and the dead letters; the statuses in the text, so their partial indexes serve it.
static EVENTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT (SELECT count(*) FROM webhook_events WHERE status = '{pending}'), \
                (SELECT extract(epoch FROM now() - min(received_at))::float8 FROM webhook_events WHERE status = '{pending}'), \
                (SELECT count(*) FROM webhook_events WHERE status = '{dead}')",
        pending = EventStatus::Pending,
        dead = EventStatus::Dead
    )
});

impl Backlogs {
    /// Reads them all.
    pub async fn read(pool: &PgPool) -> Result<Self, sqlx::Error> {
        let (inbox, inbox_oldest_secs, dead): (i64, Option<f64>, i64) =
            sqlx::query_as(sqlx::AssertSqlSafe(EVENTS.as_str()))
                .fetch_one(pool)
                .await?;
        let (polling, given_up): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE next_poll_at IS DISTINCT FROM 'infinity'), \
                    count(*) FILTER (WHERE next_poll_at = 'infinity') \
             FROM reconciliation",
        )
        .fetch_one(pool)
        .await?;
        let (unforwarded, unforwarded_oldest_secs): (i64, Option<f64>) = sqlx::query_as(
            "SELECT count(*), extract(epoch FROM now() - min(c.recorded_at))::float8 \
             FROM transaction_changes c WHERE c.forwarded_at IS NULL",
        )
        .fetch_one(pool)
        .await?;
        let transactions: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, count(*) FROM transactions GROUP BY status ORDER BY status",
        )
        .fetch_all(pool)
        .await?;
        let amount_mismatches: i64 =
            sqlx::query_scalar("SELECT count(*) FROM transactions WHERE amount_mismatch")
                .fetch_one(pool)
                .await?;
        Ok(Self {
            inbox,
            inbox_oldest_secs,
            dead,
            polling,
            given_up,
            unforwarded,
            unforwarded_oldest_secs,
            transactions,
            amount_mismatches,
        })
    }
}
