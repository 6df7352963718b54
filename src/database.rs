//! The connection pool and the embedded migrations.

use std::{str::FromStr, time::Duration};

use anyhow::Context;
use sqlx::{
    PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::{config::DatabaseSettings, secret::Secret};

/// The migrations in `migrations/`, compiled into the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// A pool that connects on demand: the service starts, and recovers, without the database being
/// up at that moment; requests get 503 while it is away.
pub fn pool(url: &Secret, settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    // The URL may hold a password: the error names the variable, never the value.
    let options = PgConnectOptions::from_str(url.expose())
        .map_err(|_| anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL"))?
        .application_name("fluid-webhooks")
        .options([(
            "statement_timeout",
            settings.statement_timeout_ms.to_string(),
        )]);
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
        // No ping before each use: a connection broken by a database restart fails its one batch
        // (503, FLUID retries) and is replaced; the ping would cost a round trip per batch.
        .test_before_acquire(false)
        .connect_lazy_with(options))
}

/// Applies pending migrations, trying again until `timeout` while the database is not reachable.
/// Replicas starting together are safe: sqlx holds an advisory lock while it migrates.
pub async fn migrate(pool: &PgPool, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match MIGRATOR.run(pool).await {
            Ok(()) => return Ok(()),
            Err(sqlx::migrate::MigrateError::Execute(e))
                if is_unreachable(&e) && tokio::time::Instant::now() < deadline =>
            {
                tracing::warn!(error = %e, "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e).context("applying database migrations"),
        }
    }
}

/// Whether an error means the database could not be reached or went away mid-conversation
/// (as opposed to refusing a statement, or a bug in ours).
pub fn is_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // 08: connection exception; 57P: the server is shutting down or restarting.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

/// Drops the notifications already received: they only wake a loop, and one pass of it serves
/// them all (otherwise a busy loop would wake once for each, long after the work was done).
pub fn drain_notifications(listener: &mut sqlx::postgres::PgListener) {
    while listener.next_buffered().is_some() {}
}
