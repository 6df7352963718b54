//! Wiring: the shared state, the router, and the [`Application`] that serves HTTP and runs the
//! workers until shutdown. Tests start the same `Application` on port 0.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use axum::Router;
use sqlx::PgPool;
use tokio::{net::TcpListener, sync::Notify, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;

use crate::{
    admin, config::Settings, database, embedded_postgres::EmbeddedPostgres, error,
    forward::Forwarder, health, inbox::Inbox, limits::Limits, monitoring, providers::Providers,
    reconciliation::Poller, retention, secret::Secret, server, webhooks, worker::Worker,
};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub pool: PgPool,
    /// Where verified deliveries are stored (group commit).
    pub inbox: Inbox,
    /// The senders deliveries are accepted from, with their keys.
    pub providers: Arc<Providers>,
    /// Rate limits, allowlists and the cap on requests in flight.
    pub limits: Arc<Limits>,
    /// Wakes this process's workers when an event is stored.
    pub wake: Arc<Notify>,
    /// Time allowed to store an event before 503.
    pub ingest_timeout: Duration,
    /// Largest body accepted.
    pub max_body_bytes: usize,
}

/// The whole HTTP surface; the admin API only with a token.
pub fn router(state: AppState, admin_token: Option<Secret>) -> Router {
    let admin = admin_token.map(admin::router).unwrap_or_default();
    Router::new()
        .merge(admin)
        .merge(webhooks::router(&state))
        .merge(health::router())
        .merge(monitoring::router())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(error::Error::Internal(anyhow::anyhow!(
                "handler panicked"
            )))
        }))
        .with_state(state)
}

/// The service, bound to its port and ready to run.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    flushers: JoinSet<()>,
    settings: Settings,
}

impl Application {
    /// Binds `server.host:server.port` (port 0 picks a free port).
    pub async fn build(settings: Settings, pool: PgPool) -> anyhow::Result<Self> {
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&address)
            .await
            .with_context(|| format!("listening on {address}"))?;
        monitoring::install();
        let ingest_timeout = Duration::from_millis(settings.server.ingest_timeout_ms);
        let (inbox, flushers) = Inbox::start(pool.clone(), &settings.ingest, ingest_timeout);
        let state = AppState {
            pool,
            inbox,
            providers: Arc::new(settings.providers()?),
            limits: Arc::new(Limits::new(settings.limits.clone())),
            wake: Arc::new(Notify::new()),
            ingest_timeout,
            max_body_bytes: settings.server.max_body_bytes,
        };
        Ok(Self {
            listener,
            state,
            flushers,
            settings,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves requests and runs the workers until `shutdown` is cancelled; then stops accepting,
    /// lets in-flight requests and the current batch finish (bounded by
    /// `server.shutdown_timeout_secs`) and returns.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            mut flushers,
            settings,
        } = self;
        let grace = Duration::from_secs(settings.server.shutdown_timeout_secs);
        let mut workers = JoinSet::new();
        if settings.worker.enabled {
            for _ in 0..settings.worker.concurrency {
                let worker = Worker::new(
                    state.pool.clone(),
                    state.providers.clone(),
                    settings.worker.clone(),
                    state.wake.clone(),
                );
                workers.spawn(worker.run(shutdown.clone()));
            }
            workers.spawn(retention::run(
                state.pool.clone(),
                settings.retention.clone(),
                shutdown.clone(),
            ));
            if let Some(key) = &settings.fluid_api_key {
                let poller = Poller::new(
                    state.pool.clone(),
                    key.clone(),
                    settings.reconciliation.clone(),
                )?;
                workers.spawn(poller.run(shutdown.clone()));
            }
            if let (false, Some(secret)) = (
                settings.forward.url.trim().is_empty(),
                &settings.forward_secret,
            ) {
                let forwarder =
                    Forwarder::new(state.pool.clone(), secret, settings.forward.clone())?;
                workers.spawn(forwarder.run(shutdown.clone()));
            }
        }
        let header_timeout = Duration::from_millis(settings.limits.header_timeout_ms);
        let mut server = tokio::spawn(server::serve(
            listener,
            router(state, settings.admin_token.clone()),
            header_timeout,
            shutdown.clone(),
        ));

        let served = tokio::select! {
            result = &mut server => result,
            () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!("in-flight requests did not finish within {grace:?}; closing them");
                server.abort();
                Ok(())
            }
        };
        shutdown.cancel();
        // The server, and with it every handle to the inbox, is gone: the flushers store what they
        // were handed and end; the workers end after their current batch.
        join_within(&mut flushers, grace, "the inbox did not finish storing").await;
        join_within(
            &mut workers,
            grace,
            "the worker did not finish its batch (it will be retried)",
        )
        .await;
        served.context("server task")
    }
}

/// Waits for every task of `set`, at most `grace`; then logs `late` and leaves them.
async fn join_within(set: &mut JoinSet<()>, grace: Duration, late: &str) {
    let all = async { while set.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all).await.is_err() {
        tracing::warn!("{late} within {grace:?}");
    }
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

/// Cancels `token` on SIGTERM (container stop) or SIGINT (Ctrl-C).
async fn cancel_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for SIGTERM/SIGINT");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    token.cancel();
}
