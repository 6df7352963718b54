//! Reconciliation by polling FLUID's API ([`api`]), within one budget shared by every replica
//! ([`budget`]), run by the [`poller`]; an answer becomes a [`poll_event`]. FLUID stops retrying a webhook about a minute after its
//! first attempt, so an event missed while this service, its database or the network was down is
//! lost unless someone asks. With `FLUID_API_KEY` set, every replica that runs the worker polls
//! `GET {base_url}/payment-providers/debit-requests/{reference}` for the FLUID transactions that
//! stay non-final longer than `reconciliation.after_secs`.
//!
//! - **Which**: the `reconciliation` table, which a database trigger keeps to exactly the FLUID
//!   transactions that are not final (migration 0005).
//! - **Claims and rate**: FLUID's rate limit is per API key, so all replicas draw from one token
//!   bucket, the single row of `reconciliation_budget`. A round locks that row, takes as many due
//!   transactions as it has tokens and moves their `next_poll_at` past the request timeout: a
//!   lease, so a replica that dies mid-poll leaves them to the others. A 429 (or
//!   `RateLimit-Remaining: 0`) pauses every replica until FLUID's `Retry-After` (or reset).
//! - **Answers**: a status that differs from ours is handed to the inbox, like a webhook, and
//!   stored in `webhook_events` with `source = 'poll'` and event id
//!   `poll:<reference>:<status>:<time>`: poll -> inbox -> worker, so the worker applies it through
//!   the same state rules as a webhook (a stale or backward answer changes nothing) and a repeated
//!   answer is stored once.
//! - **Backoff**: `retry_base_ms * 2^(polls-1)` up to `retry_max_ms`, at most `max_attempts` polls
//!   (then `next_poll_at = 'infinity'`: given up, visible in the table and in metrics).

pub mod api;
pub mod budget;
pub mod poll_event;
pub mod poller;

use reqwest::Url;
use serde::Deserialize;

pub use poller::Poller;

/// The variable holding FLUID's API key; polling is off without it.
pub const API_KEY_VAR: &str = "FLUID_API_KEY";

/// `[reconciliation]`: see `config/default.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconciliationSettings {
    /// FLUID's API, e.g. `https://api.fluid-network.com/api/v1`.
    #[serde(deserialize_with = "crate::follow_up::deserialize_url")]
    pub base_url: Url,
    /// A transaction not final this long after it became non-final is polled.
    pub after_secs: u64,
    /// First delay between two polls of one transaction.
    pub retry_base_ms: u64,
    /// Longest delay.
    pub retry_max_ms: u64,
    /// Polls of one transaction before giving up (at most 10).
    pub max_attempts: i32,
    /// Per-request timeout.
    pub timeout_ms: u64,
    /// Requests a minute, all replicas together.
    pub rate_per_minute: u32,
    /// Requests allowed at once after a quiet spell.
    pub burst: u32,
    /// Polls in flight at once in this process.
    pub concurrency: u32,
    /// How often the poller looks for due transactions.
    pub interval_ms: u64,
}

impl ReconciliationSettings {
    /// The rules of `[reconciliation]`; the first broken one is reported with its key.
    pub fn rules(&self) -> Vec<(bool, &'static str, &'static str)> {
        vec![
            (
                !(1..=10).contains(&self.max_attempts),
                "reconciliation.max_attempts",
                "must be 1 to 10",
            ),
            (
                !(1..=1000).contains(&self.rate_per_minute),
                "reconciliation.rate_per_minute",
                "must be 1 to 1000 (FLUID allows 1,000 a minute per key)",
            ),
            (
                !(1..=100).contains(&self.burst),
                "reconciliation.burst",
                "must be 1 to 100 (FLUID's burst)",
            ),
            (
                !(1..=64).contains(&self.concurrency),
                "reconciliation.concurrency",
                "must be 1 to 64",
            ),
            (
                self.timeout_ms == 0 || self.interval_ms == 0,
                "reconciliation.timeout_ms and interval_ms",
                "must be at least 1",
            ),
            (
                self.retry_base_ms > self.retry_max_ms,
                "reconciliation.retry_base_ms",
                "must not exceed reconciliation.retry_max_ms",
            ),
        ]
    }
}
