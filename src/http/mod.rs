//! The HTTP surface, on top of every stage: the accept loop ([`server`]), the abuse limits
//! ([`limits`]), the webhook route ([`webhooks`]), the admin API ([`admin`]), the web console
//! ([`console`]), health and metrics,
//! and the one error type ([`error`]) every other stage's error is turned into here.

pub mod admin;
pub mod console;
pub mod error;
pub mod extract;
pub mod health;
#[cfg(test)]
mod hostile_input;
pub mod limits;
pub mod metrics;
pub mod server;
pub mod webhooks;

use std::{sync::Arc, time::Duration};

use crate::store::db::Db;
use axum::{Router, middleware};
use tokio::sync::Notify;
use tower_http::catch_panic::CatchPanicLayer;

use crate::{
    apply::worker::Worker,
    intake::{inbox::Inbox, providers::Providers},
    secret::Secret,
    store::deliveries::Tally,
};
use limits::Limits;

/// What every handler can reach. One shared allocation: axum clones the state for every request
/// (each middleware with state, each handler), and a clone is then one reference count instead of
/// one per field (the profile showed cloning and dropping the fields at 3 % of the service's CPU).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// The state every handler shares.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    /// The database.
    pub pool: Db,
    /// Where verified deliveries are stored (group commit).
    pub inbox: Inbox,
    /// The senders deliveries are accepted from, with their keys.
    pub providers: Arc<Providers>,
    /// Rate limits, allowlists and the cap on requests in flight.
    pub limits: Arc<Limits>,
    /// Deliveries counted for the console's overview, written every few seconds.
    pub deliveries: Tally,
    /// Wakes this process's workers when an event is stored.
    pub wake: Arc<Notify>,
    /// Applies events: the background workers are its clones; the admin API replays through it.
    pub worker: Worker,
    /// Time allowed to store an event before 503.
    pub ingest_timeout: Duration,
    /// Largest body accepted.
    pub max_body_bytes: usize,
}

/// The whole HTTP surface; the admin API only with a token.
pub fn router(state: AppState, admin_token: Option<Secret>) -> Router {
    let mut router = Router::new();
    let guard = admin_token.as_ref().map(admin::Guard::new);
    if let Some(token) = &admin_token {
        router = router.merge(admin::router()).merge(console::router(token));
    }
    let router = router
        .merge(webhooks::router(&state))
        .merge(health::router())
        .merge(metrics::router())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed);
    // Outermost but the panic catcher: the admin token is checked before any route is matched.
    let router = match guard {
        Some(guard) => router.layer(middleware::from_fn(move |request, next| {
            guard.clone().check(request, next)
        })),
        None => router,
    };
    router
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(error::Error::Internal(anyhow::anyhow!(
                "handler panicked"
            )))
        }))
        .with_state(state)
}
