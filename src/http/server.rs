//! HTTP/1.1 serving with the timeouts a service on the open internet needs: `axum::serve` sets no
//! timer, so a client could hold a connection forever by never finishing its request head
//! (slowloris). This accept loop serves the router with hyper directly, with a header read
//! timeout (the connection is closed, as hyper does; the body phase gets a 408 from the route),
//! hands each request its peer address (`ConnectInfo`), and shuts down gracefully: stop
//! accepting, let in-flight requests finish, close idle connections.

use std::{net::SocketAddr, pin::pin, time::Duration};

use axum::{Router, body::Body, extract::ConnectInfo, http::Request};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use serde::Deserialize;
use tokio::{net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// `[server]`: the HTTP listener; see `config/default.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on (`HOST`).
    pub host: String,
    /// Port to listen on (`PORT`); 0 picks a free one.
    pub port: u16,
    /// Largest body accepted before 413.
    pub max_body_bytes: usize,
    /// Time allowed to store an event before answering 503.
    pub ingest_timeout_ms: u64,
    /// Time allowed for in-flight work to finish on shutdown.
    pub shutdown_timeout_secs: u64,
}

impl ServerSettings {
    /// The rules of `[server]`; the first broken one is reported with its key.
    pub fn rules(&self) -> Vec<(bool, &'static str, &'static str)> {
        vec![
            (
                self.host.trim().is_empty(),
                "server.host (HOST)",
                "must not be empty",
            ),
            (
                self.max_body_bytes == 0,
                "server.max_body_bytes",
                "must be at least 1",
            ),
            (
                self.ingest_timeout_ms == 0,
                "server.ingest_timeout_ms",
                "must be at least 1",
            ),
        ]
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then waits for the open
/// connections to finish their requests (the caller bounds how long).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
) {
    // Every connection task holds a receiver; when all are dropped, every connection is done.
    let (done_tx, done_rx) = watch::channel(());
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = router
            .clone()
            .map_request(move |request: Request<Incoming>| {
                let mut request = request.map(Body::new);
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                request
            });
        let (shutdown, done) = (shutdown.clone(), done_rx.clone());
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let connection =
                builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            let mut connection = pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                    }
                }
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(done);
        });
    }
    drop(listener);
    drop(done_rx);
    done_tx.closed().await;
}
