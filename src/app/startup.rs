//! The [`Application`]: binds the port, builds the HTTP state and runs every stage (the inbox's
//! flushers, the server, the workers, the poller, the forwarder, retention) until shutdown, then
//! stops them in order. Tests start the same `Application` on port 0.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use crate::store::db::Db;
use anyhow::Context;
use tokio::{net::TcpListener, sync::Notify, task::JoinSet};
use tokio_util::sync::CancellationToken;

use super::config::Settings;
use crate::{
    apply::worker::Worker,
    follow_up::{forward::Forwarder, reconciliation::Poller},
    http::{self, AppState, Shared, limits::Limits, metrics, server},
    intake::inbox::Inbox,
    store::{deliveries, retention},
};

/// The service, bound to its port and ready to run.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    flushers: JoinSet<()>,
    settings: Settings,
}

impl Application {
    /// Binds `server.host:server.port` (port 0 picks a free port) and builds the service.
    pub async fn build(settings: Settings, pool: Db) -> anyhow::Result<Self> {
        let listener = bind(&settings).await?;
        Self::build_on(listener, settings, pool)
    }

    /// Builds the service on a port already bound ([`bind`]).
    pub fn build_on(listener: TcpListener, settings: Settings, pool: Db) -> anyhow::Result<Self> {
        metrics::install();
        let providers = Arc::new(settings.providers()?);
        metrics::register(&providers);
        let ingest_timeout = Duration::from_millis(settings.server.ingest_timeout_ms);
        let (inbox, flushers) = Inbox::start(pool.clone(), &settings.ingest, ingest_timeout);
        let wake = Arc::new(Notify::new());
        let worker = Worker::new(
            pool.clone(),
            providers.clone(),
            settings.worker.clone(),
            wake.clone(),
            inbox.activity(),
        );
        let state = AppState::new(Shared {
            pool,
            inbox,
            providers,
            limits: Arc::new(Limits::new(settings.limits.clone())),
            deliveries: deliveries::Tally::default(),
            wake,
            worker,
            ingest_timeout,
            max_body_bytes: settings.server.max_body_bytes,
        });
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
                workers.spawn(state.worker.clone().run(shutdown.clone()));
            }
            workers.spawn(retention::run(
                state.pool.clone(),
                settings.retention.clone(),
                shutdown.clone(),
            ));
            if let Some(key) = &settings.fluid_api_key {
                let poller = Poller::new(
                    state.pool.clone(),
                    state.inbox.clone(),
                    key.clone(),
                    settings.reconciliation.clone(),
                )?;
                workers.spawn(poller.run(shutdown.clone()));
            }
            if let (Some(url), Some(secret)) = (&settings.forward.url, &settings.forward_secret) {
                let forwarder = Forwarder::new(
                    state.pool.clone(),
                    url.clone(),
                    secret,
                    settings.forward.clone(),
                )?;
                workers.spawn(forwarder.run(shutdown.clone()));
            }
        }
        // Its own token: the last counts are written after the last request is answered.
        let counted = CancellationToken::new();
        let mut tally = JoinSet::new();
        tally.spawn(deliveries::run(
            state.deliveries.clone(),
            state.pool.clone(),
            counted.clone(),
        ));
        let header_timeout = Duration::from_millis(settings.limits.header_timeout_ms);
        let mut server = tokio::spawn(server::serve(
            listener,
            http::router(state, settings.admin_token.clone()),
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
        counted.cancel();
        join_within(&mut tally, grace, "the delivery counts were not written").await;
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

/// Binds `server.host:server.port`. `serve` does this before it touches the database, so a port
/// already taken (a second `serve` in the same folder) fails at once and changes nothing.
pub async fn bind(settings: &Settings) -> anyhow::Result<TcpListener> {
    let address = format!("{}:{}", settings.server.host, settings.server.port);
    TcpListener::bind(&address).await.with_context(|| {
        format!("listening on {address} (is another fluid-webhooks, or another program, using it? set PORT)")
    })
}

/// Waits for every task of `set`, at most `grace`; then logs `late` and leaves them.
async fn join_within(set: &mut JoinSet<()>, grace: Duration, late: &str) {
    let all = async { while set.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all).await.is_err() {
        tracing::warn!("{late} within {grace:?}");
    }
}

/// Cancels `token` on SIGTERM (container stop) or SIGINT (Ctrl-C).
pub async fn cancel_on_signal(token: CancellationToken) {
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
