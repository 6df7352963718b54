//! `fluid-webhooks migrate`: apply the database migrations and exit (no webhook secret needed).

use std::time::Duration;

use crate::{
    app::{config::Settings, telemetry},
    store::{database, embedded_postgres::EmbeddedPostgres},
};

/// Applies the migrations to `DATABASE_URL`, or to the embedded PostgreSQL when it is unset.
pub async fn run() -> anyhow::Result<()> {
    let settings = Settings::without_secret(&std::env::vars().collect())?;
    telemetry::init(settings.log.format);
    let embedded = match &settings.database_url {
        Some(_) => None,
        None => Some(EmbeddedPostgres::start(&settings.database.embedded_data_dir).await?),
    };
    let url = match (&embedded, &settings.database_url) {
        (Some(pg), _) => pg.url(),
        (None, Some(url)) => url.clone(),
        (None, None) => unreachable!("one of the two is set"),
    };
    let pool = database::pool(&url, &settings.database)?;
    let result = database::migrate(
        &pool,
        Duration::from_secs(settings.database.startup_timeout_secs),
    )
    .await;
    pool.close().await;
    if let Some(pg) = embedded {
        pg.stop().await?;
    }
    result?;
    println!("migrations applied");
    Ok(())
}
