//! After the fact: [`reconciliation`] asks FLUID's API about transactions left non-final (a
//! webhook may never have arrived) and hands the answers to the inbox; [`forward`] POSTs every
//! status change to an internal URL. Both run beside the worker and call out over HTTP.

pub mod forward;
pub mod reconciliation;

use std::time::Duration;

/// The HTTP client for calls this service makes to others (FLUID's API, the forwarding URL): a
/// per-request `timeout`, at most 10 s to connect, redirects not followed (a redirected POST would
/// become a GET somewhere else), connections kept and reused.
pub fn http_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    // reqwest panics without a TLS crypto provider; installing it twice is harmless.
    crate::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("fluid-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// An error and its causes, `outer: inner: innermost`, for log lines and stored errors.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
