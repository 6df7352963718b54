//! `fluid-webhooks serve`: the database (embedded if `DATABASE_URL` is unset), migrations, then
//! the application until SIGTERM or SIGINT.

use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::{
    app::{
        config::Settings,
        startup::{Application, cancel_on_signal},
        telemetry,
    },
    secret::Secret,
    store::{database, embedded_postgres::EmbeddedPostgres},
};

/// Reads the settings, starts the logs and serves.
pub async fn run() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    telemetry::init(settings.log.format);
    serve(settings).await
}

/// `fluid-webhooks serve`: the database (embedded if `DATABASE_URL` is unset), migrations, then
/// the application until SIGTERM or SIGINT.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let embedded = match &settings.database_url {
        Some(_) => None,
        None => Some(EmbeddedPostgres::start(&settings.database.embedded_data_dir).await?),
    };
    let result = serve_with(&settings, embedded.as_ref().map(EmbeddedPostgres::url)).await;
    if let Some(pg) = embedded {
        if let Err(e) = pg.stop().await {
            tracing::warn!(
                error = format!("{e:#}"),
                "could not stop the embedded PostgreSQL"
            );
        }
    }
    result
}

async fn serve_with(settings: &Settings, embedded_url: Option<Secret>) -> anyhow::Result<()> {
    let url = embedded_url
        .or_else(|| settings.database_url.clone())
        .context("no database URL")?;
    let pool = database::pool(&url, &settings.database)?;
    database::migrate(
        &pool,
        Duration::from_secs(settings.database.startup_timeout_secs),
    )
    .await?;
    let app = Application::build(settings.clone(), pool.clone()).await?;
    tracing::info!(
        address = %app.local_addr()?,
        env = settings.env.name(),
        worker = settings.worker.enabled,
        "fluid-webhooks listening; POST /webhooks/fluid"
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    app.run(shutdown).await?;
    pool.close().await;
    tracing::info!("stopped cleanly");
    Ok(())
}
