//! After the fact: [`reconciliation`] asks FLUID's API about transactions left non-final (a
//! webhook may never have arrived) and hands the answers to the inbox; [`forward`] POSTs every
//! status change to an internal URL. Both run beside the worker and call out over HTTP.

pub mod forward;
pub mod reconciliation;

use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Deserializer, de::Error as _};

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

/// An http(s) URL that paths can be added to: the one check of every URL this service calls.
pub fn http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(format!("`{text}` is not an http(s) URL"));
    }
    Ok(url)
}

/// Reads a settings key holding an http(s) URL.
pub fn deserialize_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Url, D::Error> {
    http_url(&String::deserialize(deserializer)?).map_err(D::Error::custom)
}

/// Reads a settings key holding an http(s) URL, or empty for none (TOML has no null).
pub fn deserialize_optional_url<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Url>, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    http_url(&text)
        .map(Some)
        .map_err(|e| D::Error::custom(format!("{e}; leave it empty to turn this off")))
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
