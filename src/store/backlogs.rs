//! How far behind the service is, read from the database: the inbox, reconciliation and
//! forwarding queues, and the transactions by status ([`Backlogs`]): `/metrics` turns it into
//! gauges, the console's overview shows it; and what waits for a person ([`ForPeople`]), for the
//! console only.

use std::sync::LazyLock;

use super::db::Db;

use super::rows::EventStatus;

/// The queues and counts, as of one read.
#[derive(Debug, Clone, Default)]
pub struct Backlogs {
    /// Stored events still to apply.
    pub inbox: i64,
    /// Age in seconds of the oldest of them.
    pub inbox_oldest_secs: Option<f64>,
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
}

/// What waits for a person, for the console (`/metrics` counts these as they happen instead).
#[derive(Debug, Clone, Default)]
pub struct ForPeople {
    /// Dead letters waiting for a replay.
    pub dead: i64,
    /// Transactions whose amount or currency is not what the merchant expected.
    pub amount_mismatches: i64,
}

/// The dead letters; the status in the text, so their partial index serves it.
static DEAD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT (SELECT count(*) FROM webhook_events WHERE status = '{}'), \
                (SELECT count(*) FROM transactions WHERE amount_mismatch)",
        EventStatus::Dead
    )
});

impl ForPeople {
    /// Reads them.
    pub async fn read(pool: &Db) -> Result<Self, sqlx::Error> {
        let (dead, amount_mismatches): (i64, i64) =
            sqlx::query_as(sqlx::AssertSqlSafe(DEAD.as_str()))
                .fetch_one(pool)
                .await?;
        Ok(Self {
            dead,
            amount_mismatches,
        })
    }
}

/// The inbox; the status in the text, so the partial index of pending events serves it.
static EVENTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT count(*), extract(epoch FROM now() - min(received_at))::float8 \
         FROM webhook_events WHERE status = '{}'",
        EventStatus::Pending
    )
});

impl Backlogs {
    /// Reads them all.
    pub async fn read(pool: &Db) -> Result<Self, sqlx::Error> {
        let (inbox, inbox_oldest_secs): (i64, Option<f64>) =
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
        Ok(Self {
            inbox,
            inbox_oldest_secs,
            polling,
            given_up,
            unforwarded,
            unforwarded_oldest_secs,
            transactions,
        })
    }
}
