//! `fluid-webhooks serve`: the database (embedded if `DATABASE_URL` is unset), migrations, then
//! the application until SIGTERM or SIGINT.

use tokio_util::sync::CancellationToken;

use crate::{
    app::{
        config::Settings,
        startup::{self, Application, cancel_on_signal},
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
    // The port first: a port already taken fails before the database is touched.
    let listener = startup::bind(&settings).await?;
    let database = Database::open(settings.database_url.as_ref(), &settings.database).await?;
    let result = serve_on(listener, &settings, &database).await;
    if let Err(e) = database.close().await {
        tracing::warn!(
            error = format!("{e:#}"),
            "could not stop the embedded PostgreSQL"
        );
    }
    result
}

async fn serve_on(
    listener: tokio::net::TcpListener,
    settings: &Settings,
    database: &Database,
) -> anyhow::Result<()> {
    let pool = database.migrated_pool(&settings.database).await?;
    let app = Application::build_on(listener, settings.clone(), pool.clone())?;
    let providers = settings.providers()?;
    let limits = &settings.limits;
    // One line that says what is on, so the operator need not read the configuration.
    tracing::info!(
        address = %app.local_addr()?,
        env = settings.env.name(),
        providers = providers.names().join(","),
        worker = settings.worker.enabled,
        admin_api = settings.admin_token.is_some(),
        console = settings.admin_token.is_some(),
        reconciliation = settings.worker.enabled && settings.fluid_api_key.is_some(),
        forwarding = settings.worker.enabled && settings.forward.url.is_some() && settings.forward_secret.is_some(),
        limits = format!(
            "{}, {} in flight, {} trusted proxies, https {}",
            if limits.rate_per_second > 0.0 {
                format!("{} req/s per client (burst {})", limits.rate_per_second, limits.burst)
            } else {
                "no rate limit".to_string()
            },
            limits.max_concurrent_requests,
            limits.trusted_proxies.len(),
            if limits.require_https { "required" } else { "not required" }
        ),
        "fluid-webhooks listening; POST /webhooks/<provider>"
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    app.run(shutdown).await?;
    pool.close().await;
    tracing::info!("stopped cleanly");
    Ok(())
}
