//! Retention: finished events (processed or ignored) older than `retention.applied_events_days`
//! are deleted in small batches, so the inbox does not grow for ever and no purge holds locks for
//! long; so are recorded status changes of the same age that were forwarded (or all of them once
//! forwarding was turned off with `DELETE FROM forwarding`), and polls of FLUID's API of that age.
//! Pending and dead events,
//! changes still to be forwarded, and all transactions are kept. Every replica may run it: batches
//! are claimed with `SKIP LOCKED`.

use std::{sync::LazyLock, time::Duration};

use super::db::Db;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::rows::{EventStatus, sql_list};

/// `[retention]`: see `config/default.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Age in days after which finished events are deleted; 0 keeps them for ever.
    pub applied_events_days: u32,
    /// Events deleted per statement.
    pub batch_size: i64,
    /// How often the purge runs.
    pub interval_secs: u64,
}

impl RetentionSettings {
    /// The rules of `[retention]`; the first broken one is reported with its key.
    pub fn rules(&self) -> Vec<(bool, &'static str, &'static str)> {
        vec![
            (
                !(1..=100_000).contains(&self.batch_size),
                "retention.batch_size",
                "must be 1 to 100000",
            ),
            (
                self.interval_secs == 0,
                "retention.interval_secs",
                "must be at least 1",
            ),
        ]
    }
}

/// What is purged: per table, a statement deleting at most `$2` rows older than `$1` days.
static PURGES: LazyLock<[(&str, String); 3]> = LazyLock::new(|| {
    let finished = EventStatus::ALL.into_iter().filter(|s| s.is_finished());
    [
        (
            "webhook_events",
            format!(
                "DELETE FROM webhook_events WHERE (provider, event_id) IN ( \
             SELECT provider, event_id FROM webhook_events \
             WHERE received_at < now() - make_interval(days => $1) \
               AND status IN ({}) \
             LIMIT $2 FOR UPDATE SKIP LOCKED)",
                sql_list(finished.map(EventStatus::as_str))
            ),
        ),
        (
            "transaction_changes",
            // By ctid, the cheapest way back to a row; its forwarding attempts go with it
            // (ON DELETE CASCADE).
            "DELETE FROM transaction_changes WHERE ctid = ANY(ARRAY( \
             SELECT c.ctid FROM transaction_changes c \
             WHERE c.recorded_at < now() - make_interval(days => $1) \
               AND (c.forwarded_at IS NOT NULL OR NOT EXISTS (SELECT 1 FROM forwarding)) \
             LIMIT $2 FOR UPDATE SKIP LOCKED))"
                .to_string(),
        ),
        (
            "reconciliation_polls",
            "DELETE FROM reconciliation_polls WHERE ctid = ANY(ARRAY( \
             SELECT p.ctid FROM reconciliation_polls p \
             WHERE p.polled_at < now() - make_interval(days => $1) \
             LIMIT $2 FOR UPDATE SKIP LOCKED))"
                .to_string(),
        ),
    ]
});

/// Deletes what is older than `days` days, `batch` rows at a time, until none is left (or
/// `shutdown`); returns how many rows it deleted.
pub async fn purge(
    pool: &Db,
    days: u32,
    batch: i64,
    shutdown: &CancellationToken,
) -> Result<u64, sqlx::Error> {
    let mut purged = 0;
    for (table, sql) in PURGES.iter() {
        while !shutdown.is_cancelled() {
            let deleted = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(i32::try_from(days).unwrap_or(i32::MAX))
                .bind(batch)
                .execute(pool)
                .await?
                .rows_affected();
            purged += deleted;
            metrics::counter!("fluid_webhooks_purged_total", "table" => *table).increment(deleted);
            if deleted < u64::try_from(batch).unwrap_or(0) {
                break;
            }
        }
    }
    Ok(purged)
}

/// Runs [`purge`] every `interval_secs` until `shutdown`.
pub async fn run(pool: Db, settings: RetentionSettings, shutdown: CancellationToken) {
    if settings.applied_events_days == 0 {
        return;
    }
    loop {
        match purge(
            &pool,
            settings.applied_events_days,
            settings.batch_size,
            &shutdown,
        )
        .await
        {
            Ok(0) => {}
            Ok(purged) => tracing::info!(
                purged,
                days = settings.applied_events_days,
                "retention: old finished events and forwarded changes deleted"
            ),
            Err(e) => tracing::warn!(error = %e, "retention: purge failed; will try again"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(settings.interval_secs)) => {}
        }
    }
}
