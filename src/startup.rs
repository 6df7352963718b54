//! Wiring: the shared state, the router, and the [`Application`] that serves HTTP and runs the
//! workers until shutdown. Tests start the same `Application` on port 0.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use axum::{Router, extract::DefaultBodyLimit};
use sqlx::PgPool;
use tokio::{net::TcpListener, sync::Notify, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tower_http::{catch_panic::CatchPanicLayer, trace::TraceLayer};

use crate::{
    config::Settings, database, embedded_postgres::EmbeddedPostgres, error, health, secret::Secret,
    webhooks, worker::Worker,
};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub pool: PgPool,
    /// FLUID's webhook secret.
    pub secret: Arc<Secret>,
    /// Wakes this process's workers when an event is stored.
    pub wake: Arc<Notify>,
    /// Time allowed to store an event before 503.
    pub ingest_timeout: Duration,
    /// Largest body accepted.
    pub max_body_bytes: usize,
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let max_body = state.max_body_bytes;
    Router::new()
        .merge(webhooks::router())
        .merge(health::router())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(error::Error::Internal(anyhow::anyhow!(
                "handler panicked"
            )))
        }))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The service, bound to its port and ready to run.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    settings: Settings,
}

impl Application {
    /// Binds `server.host:server.port` (port 0 picks a free port).
    pub async fn build(settings: Settings, pool: PgPool) -> anyhow::Result<Self> {
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&address)
            .await
            .with_context(|| format!("listening on {address}"))?;
        let state = AppState {
            pool,
            secret: Arc::new(settings.secret.clone()),
            wake: Arc::new(Notify::new()),
            ingest_timeout: Duration::from_millis(settings.server.ingest_timeout_ms),
            max_body_bytes: settings.server.max_body_bytes,
        };
        Ok(Self {
            listener,
            state,
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
        let grace = Duration::from_secs(self.settings.server.shutdown_timeout_secs);
        let mut workers = JoinSet::new();
        if self.settings.worker.enabled {
            for _ in 0..self.settings.worker.concurrency {
                let worker = Worker::new(
                    self.state.pool.clone(),
                    self.settings.worker.clone(),
                    self.state.wake.clone(),
                );
                workers.spawn(worker.run(shutdown.clone()));
            }
        }
        let app = router(self.state).into_make_service_with_connect_info::<SocketAddr>();
        let server = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let mut server = tokio::spawn(server.into_future());

        let served = tokio::select! {
            result = &mut server => result,
            () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!("in-flight requests did not finish within {grace:?}; closing them");
                server.abort();
                Ok(Ok(()))
            }
        };
        shutdown.cancel();
        if tokio::time::timeout(grace, async {
            while workers.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!(
                "the worker did not finish its batch within {grace:?}; it will be retried"
            );
        }
        served.context("server task")?.context("serving HTTP")
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
