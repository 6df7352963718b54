//! fluid-webhooks receives FLUID Network payment webhooks and keeps a merchant's transaction
//! state right.
//!
//! The folders are the stages a delivery travels through, top to bottom; each imports only the
//! ones below it (`tests/layout.rs` checks this):
//!
//! - [`app`]: wiring. [`app::config`] assembles every section's settings, [`app::startup`] builds
//!   the [`app::startup::Application`] and stops it, [`app::cli`] has one file per subcommand,
//!   [`app::telemetry`] the log lines.
//! - [`http`]: the HTTP surface. [`http::server`] accepts connections (with read timeouts),
//!   [`http::limits`] guards the webhook routes, [`http::webhooks`] is `POST
//!   /webhooks/{provider}`, [`http::admin`], [`http::health`] and [`http::metrics`] serve the
//!   engineer on call, and [`http::error`] is the one HTTP error type, which turns every stage's
//!   own error into a status and a JSON body.
//! - [`intake`]: a delivery comes in. [`intake::providers`] knows each sender and checks its
//!   [`intake::signature`] over the raw body, [`intake::envelope`] reads the verified body's ids,
//!   and [`intake::inbox`] stores it once in `webhook_events` (group commit) before the route
//!   answers `{"received":true}`.
//! - [`apply`]: a stored event is applied. [`apply::worker`] claims events in batches, reads each
//!   through its provider's [`apply::mapping`] and applies it to [`apply::transactions`], whose
//!   state rules are the pure function [`apply::transactions::rules::decide`].
//! - [`follow_up`]: after the fact. [`follow_up::reconciliation`] polls FLUID's API for
//!   transactions left non-final and hands the answers to the inbox; [`follow_up::forward`] POSTs
//!   every status change to an internal URL.
//! - [`store`]: PostgreSQL. [`store::database`] (pool, migrations, sorting sqlx errors, wake-ups),
//!   [`store::embedded_postgres`] (the private server used when `DATABASE_URL` is unset),
//!   [`store::rows`] (the names states are stored under) and [`store::retention`].
//! - Small shared pieces: [`secret`] (values never printed), [`backoff`] (retry delays and
//!   leases), [`networks`] (lists of networks in settings) and [`config_error`] (the error a
//!   settings section reports).

pub mod app;
pub mod apply;
pub mod backoff;
pub mod config_error;
pub mod follow_up;
pub mod http;
pub mod intake;
pub mod networks;
pub mod secret;
pub mod store;

/// Chooses `ring` as rustls's crypto provider (for `send` over HTTPS and TLS database URLs).
/// Calling it again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
