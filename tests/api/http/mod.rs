//! The HTTP surface: the webhook route, the abuse limits, the admin API and the metrics.

mod admin;
mod console;
mod limits;
mod metrics;
mod on_call;
mod webhooks;
