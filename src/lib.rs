//! fluid-webhooks receives FLUID Network payment webhooks and keeps a merchant's transaction
//! state right.
//!
//! The modules follow the path a delivery takes:
//!
//! - [`server`] accepts connections (with read timeouts), [`limits`] guards the routes,
//! - [`webhooks`]: the `POST /webhooks/{provider}` route, which checks the
//! - [`signature`] of the sender's scheme ([`providers`]) over the raw body, then stores the event
//!   once in the
//! - [`inbox`] (`webhook_events`, unique per provider and event id, group commit) and answers
//!   `{"received":true}`;
//! - [`worker`] claims stored events in batches, reads them through [`mapping`] and applies them to
//! - [`transactions`], whose state rules are the pure function [`transactions::rules::decide`].
//!
//! Beside the worker, in the same replicas: [`reconciliation`] polls FLUID's API for transactions
//! left non-final and stores the answers as events for the worker; [`forward`] POSTs every status
//! change to an internal URL; [`retention`] purges old rows. [`admin`] and [`monitoring`] serve
//! the engineer on call.
//!
//! Around them: [`payload`] (the senders' bodies), [`config`] and [`secret`] (settings),
//! [`database`] (pool, migrations), [`embedded_postgres`] (the private PostgreSQL used when
//! `DATABASE_URL` is unset), [`startup`] (wiring, shutdown), [`health`], [`error`] (the HTTP error
//! type), [`backoff`], [`telemetry`] (logs) and [`cli`] (the subcommands).

pub mod admin;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod database;
pub mod embedded_postgres;
pub mod error;
pub mod forward;
pub mod health;
#[cfg(test)]
mod hostile_input;
pub mod inbox;
pub mod limits;
pub mod mapping;
pub mod monitoring;
pub mod payload;
pub mod providers;
pub mod reconciliation;
pub mod retention;
pub mod secret;
pub mod server;
pub mod signature;
pub mod startup;
pub mod telemetry;
pub mod transactions;
pub mod webhooks;
pub mod worker;

/// Chooses `ring` as rustls's crypto provider (for `send` over HTTPS and TLS database URLs).
/// Calling it again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The HTTP client for calls this service makes to others (FLUID's API, the forwarding URL): a
/// per-request `timeout`, at most 10 s to connect, redirects not followed (a redirected POST would
/// become a GET somewhere else), connections kept and reused.
pub fn http_client(timeout: std::time::Duration) -> reqwest::Result<reqwest::Client> {
    // reqwest panics without a TLS crypto provider; installing it twice is harmless.
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(std::time::Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("fluid-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}
