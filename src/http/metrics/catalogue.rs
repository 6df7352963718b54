//! Every metric the service exposes, described once: its help text (Prometheus shows it as
//! `# HELP`, and `promtool check metrics` wants it), and the label values known at start, under
//! which each counter and gauge is registered at 0. A series that only appeared with its first
//! increment would show "no data" on the dashboard, and `increase()` would miss that first
//! failure; registered at 0, the first one is seen.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

use crate::{
    apply::transactions::rules::Status, intake::providers::Providers, store::rows::EventStatus,
};

/// Outcomes of `fluid_webhooks_received_total` (see `http::webhooks`).
pub const RECEIVED_OUTCOMES: &[&str] = &[
    "accepted",
    "duplicate",
    "bad_signature",
    "rate_limited",
    "forbidden",
    "unknown_provider",
    "unavailable",
    "rejected",
];
/// The rules' outcomes of an applied event (`rules::Decision::outcome`).
const APPLIED_OUTCOMES: &[&str] = &["applied", "unchanged", "stale", "refused"];
/// Outcomes of `fluid_webhooks_reconciliation_polls_total`.
const POLL_OUTCOMES: &[&str] = &[
    "changed",
    "unchanged",
    "not_found",
    "rate_limited",
    "unauthorized",
    "error",
    "timeout",
    "invalid",
];
/// Outcomes of `fluid_webhooks_forwarded_total`.
const FORWARD_OUTCOMES: &[&str] = &["delivered", "failed"];
/// Tables retention purges.
const PURGED_TABLES: &[&str] = &[
    "webhook_events",
    "transaction_changes",
    "reconciliation_polls",
];

/// Gives every metric its help text; once, when the recorder is installed.
pub fn describe() {
    let counters: &[(&str, &str)] = &[
        (
            "fluid_webhooks_received_total",
            "Webhook deliveries answered, by provider, event type and outcome.",
        ),
        (
            "fluid_webhooks_processed_total",
            "Stored events the worker finished an attempt at, by provider, status and the rules' outcome.",
        ),
        (
            "fluid_webhooks_processing_failures_total",
            "Attempts at applying an event that failed (retried with backoff, then parked dead).",
        ),
        (
            "fluid_webhooks_amount_mismatches_total",
            "Events applied with another amount or currency than the merchant expected.",
        ),
        (
            "fluid_webhooks_purged_total",
            "Rows deleted by retention, by table.",
        ),
        (
            "fluid_webhooks_reconciliation_polls_total",
            "Polls of FLUID's API for transactions left non-final, by outcome.",
        ),
        (
            "fluid_webhooks_reconciliation_exhausted_total",
            "Transactions given up after reconciliation.max_attempts polls.",
        ),
        (
            "fluid_webhooks_forwarded_total",
            "POSTs of status changes to forward.url, by outcome.",
        ),
        (
            "fluid_webhooks_log_lines_dropped_total",
            "Log lines dropped because stderr did not keep up (the request was not held up).",
        ),
    ];
    for (name, help) in counters {
        describe_counter!(*name, Unit::Count, *help);
    }
    let gauges: &[(&str, Unit, &str)] = &[
        (
            "fluid_webhooks_inbox_backlog",
            Unit::Count,
            "Stored events still to apply.",
        ),
        (
            "fluid_webhooks_inbox_oldest_pending_age_seconds",
            Unit::Seconds,
            "Age of the oldest stored event still to apply.",
        ),
        (
            "fluid_webhooks_transactions",
            Unit::Count,
            "Transactions stored, by status.",
        ),
        (
            "fluid_webhooks_db_pool_connections",
            Unit::Count,
            "Connections of this process's database pool, by state (idle, in_use).",
        ),
        (
            "fluid_webhooks_reconciliation_watched",
            Unit::Count,
            "Non-final FLUID transactions reconciliation watches, by state (polling, given_up).",
        ),
        (
            "fluid_webhooks_forward_backlog",
            Unit::Count,
            "Status changes still to forward.",
        ),
        (
            "fluid_webhooks_forward_oldest_age_seconds",
            Unit::Seconds,
            "Age of the oldest status change still to forward.",
        ),
    ];
    for (name, unit, help) in gauges {
        describe_gauge!(*name, *unit, *help);
    }
    let histograms: &[(&str, &str)] = &[
        (
            "fluid_webhooks_ack_seconds",
            "Time from a delivery's arrival to its acknowledgement (stored and committed).",
        ),
        (
            "fluid_webhooks_processing_seconds",
            "Time from an event's storage to its application.",
        ),
        (
            "fluid_webhooks_transaction_duration_seconds",
            "Time from a transaction's creation (FLUID's created_at) to a final state.",
        ),
        (
            "fluid_webhooks_reconciliation_poll_seconds",
            "Duration of one request to FLUID's API.",
        ),
        (
            "fluid_webhooks_forward_seconds",
            "Duration of one POST to forward.url.",
        ),
    ];
    for (name, help) in histograms {
        describe_histogram!(*name, Unit::Seconds, *help);
    }
}

/// Registers every series whose labels are known at start, at 0: the configured providers, every
/// outcome, status and table.
pub fn register(providers: &Providers) {
    for provider in providers.names() {
        let provider = provider.to_string();
        for outcome in RECEIVED_OUTCOMES {
            metrics::counter!("fluid_webhooks_received_total", "provider" => provider.clone(), "event_type" => "", "outcome" => *outcome).increment(0);
        }
        for outcome in APPLIED_OUTCOMES {
            metrics::counter!("fluid_webhooks_processed_total", "provider" => provider.clone(), "status" => EventStatus::Processed.as_str(), "outcome" => *outcome).increment(0);
        }
        for status in [
            EventStatus::Ignored,
            EventStatus::Dead,
            EventStatus::Pending,
        ] {
            metrics::counter!("fluid_webhooks_processed_total", "provider" => provider.clone(), "status" => status.as_str(), "outcome" => "-").increment(0);
        }
        metrics::counter!("fluid_webhooks_processing_failures_total", "provider" => provider.clone()).increment(0);
        metrics::counter!("fluid_webhooks_amount_mismatches_total", "provider" => provider.clone())
            .increment(0);
        let _ = metrics::histogram!("fluid_webhooks_ack_seconds", "provider" => provider.clone());
        let _ = metrics::histogram!("fluid_webhooks_processing_seconds", "provider" => provider.clone());
        for status in Status::ALL.into_iter().filter(|s| s.is_final()) {
            let _ = metrics::histogram!("fluid_webhooks_transaction_duration_seconds", "provider" => provider.clone(), "status" => status.as_str());
        }
    }
    metrics::counter!("fluid_webhooks_received_total", "provider" => "unknown", "event_type" => "", "outcome" => "unknown_provider").increment(0);
    for table in PURGED_TABLES {
        metrics::counter!("fluid_webhooks_purged_total", "table" => *table).increment(0);
    }
    for outcome in POLL_OUTCOMES {
        metrics::counter!("fluid_webhooks_reconciliation_polls_total", "outcome" => *outcome)
            .increment(0);
    }
    metrics::counter!("fluid_webhooks_reconciliation_exhausted_total").increment(0);
    metrics::counter!("fluid_webhooks_log_lines_dropped_total").increment(0);
    for outcome in FORWARD_OUTCOMES {
        metrics::counter!("fluid_webhooks_forwarded_total", "outcome" => *outcome).increment(0);
    }
    let _ = metrics::histogram!("fluid_webhooks_reconciliation_poll_seconds");
    let _ = metrics::histogram!("fluid_webhooks_forward_seconds");
    for name in [
        "fluid_webhooks_inbox_backlog",
        "fluid_webhooks_inbox_oldest_pending_age_seconds",
        "fluid_webhooks_forward_backlog",
        "fluid_webhooks_forward_oldest_age_seconds",
    ] {
        metrics::gauge!(name).set(0.0);
    }
    for status in Status::ALL {
        metrics::gauge!("fluid_webhooks_transactions", "status" => status.as_str()).set(0.0);
    }
    for state in ["polling", "given_up"] {
        metrics::gauge!("fluid_webhooks_reconciliation_watched", "state" => state).set(0.0);
    }
    for state in ["idle", "in_use"] {
        metrics::gauge!("fluid_webhooks_db_pool_connections", "state" => state).set(0.0);
    }
}
