//! `fluid-webhooks serve`: the database (embedded if `DATABASE_URL` is unset), migrations, then
//! the application until SIGTERM or SIGINT.

use tokio_util::sync::CancellationToken;

use crate::{
    app::{
        config::Settings,
        startup::{Application, cancel_on_signal},
        telemetry,
    },
    store::database::Database,
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
    let database = Database::open(settings.database_url.as_ref(), &settings.database).await?;
    let result = serve_on(&settings, &database).await;
    if let Err(e) = database.close().await {
        tracing::warn!(
            error = format!("{e:#}"),
            "could not stop the embedded PostgreSQL"
        );
    }
    result
}

async fn serve_on(settings: &Settings, database: &Database) -> anyhow::Result<()> {
    let pool = database.migrated_pool(&settings.database).await?;
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
