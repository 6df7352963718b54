//! `fluid-webhooks migrate`: apply the database migrations and exit (no webhook secret needed).

use crate::{
    app::{config::Settings, telemetry},
    store::database::Database,
};

/// Applies the migrations to `DATABASE_URL`, or to the embedded PostgreSQL when it is unset.
pub async fn run() -> anyhow::Result<()> {
    let settings = Settings::without_secret(&std::env::vars().collect())?;
    telemetry::init(settings.log.format);
    let database = Database::open(settings.database_url.as_ref(), &settings.database).await?;
    let migrated = database.migrated_pool(&settings.database).await;
    if let Ok(pool) = &migrated {
        pool.close().await;
    }
    let closed = database.close().await;
    migrated?;
    closed?;
    println!("migrations applied");
    Ok(())
}
