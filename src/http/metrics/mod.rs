//! Prometheus metrics at `GET /metrics` (text exposition format). Counters and histograms are
//! recorded where things happen; the gauges that describe the database (backlog, oldest pending
//! event, transactions by status, pool) are read when Prometheus scrapes.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `fluid_webhooks_received_total` | counter | provider, event_type, outcome (accepted, duplicate, bad_signature, rate_limited, forbidden, unknown_provider, unavailable, rejected) |
//! | `fluid_webhooks_ack_seconds` | histogram | provider |
//! | `fluid_webhooks_processed_total` | counter | provider, status, outcome |
//! | `fluid_webhooks_processing_seconds` | histogram (arrival to applied) | provider |
//! | `fluid_webhooks_processing_failures_total` | counter | provider |
//! | `fluid_webhooks_amount_mismatches_total` | counter (events applied with another amount or currency than expected) | provider |
//! | `fluid_webhooks_inbox_backlog` | gauge | |
//! | `fluid_webhooks_inbox_oldest_pending_age_seconds` | gauge | |
//! | `fluid_webhooks_transactions` | gauge | status |
//! | `fluid_webhooks_transaction_duration_seconds` | histogram (created to final, 5/10/30/60/120 s) | provider, status |
//! | `fluid_webhooks_db_pool_connections` | gauge | state (idle, in_use) |
//! | `fluid_webhooks_purged_total` | counter | table (webhook_events, transaction_changes, reconciliation_polls) |
//! | `fluid_webhooks_reconciliation_polls_total` | counter | outcome (changed, unchanged, not_found, rate_limited, unauthorized, error, timeout, invalid) |
//! | `fluid_webhooks_reconciliation_poll_seconds` | histogram (request to FLUID's API) | |
//! | `fluid_webhooks_reconciliation_exhausted_total` | counter (transactions given up after max_attempts polls) | |
//! | `fluid_webhooks_reconciliation_watched` | gauge (non-final FLUID transactions) | state (polling, given_up) |
//! | `fluid_webhooks_forwarded_total` | counter | outcome (delivered, failed) |
//! | `fluid_webhooks_forward_seconds` | histogram (POST to the forwarding URL) | |
//! | `fluid_webhooks_forward_backlog` | gauge (changes still to forward) | |
//! | `fluid_webhooks_forward_oldest_age_seconds` | gauge | |

use std::{
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

mod catalogue;

pub use catalogue::register;

use super::AppState;
use crate::{apply::transactions::rules::Status, store::backlogs::Backlogs};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets (seconds) for acknowledgements and processing.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// The guide's buckets for a transaction's time from creation to a final state.
const DURATION_BUCKETS: &[f64] = &[5.0, 10.0, 30.0, 60.0, 120.0];

/// Installs the process-wide recorder once and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("fluid_webhooks_transaction_duration_seconds".into()),
                        DURATION_BUCKETS,
                    )
                });
            let recorder = match builder {
                Ok(builder) => builder.build_recorder(),
                Err(e) => {
                    tracing::warn!(error = %e, "metric buckets refused; using summaries");
                    PrometheusBuilder::new().build_recorder()
                }
            };
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics will be empty");
            }
            catalogue::describe();
            handle
        })
        .clone()
}

/// `GET /metrics`.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(render))
}

/// The database gauges, read at most this often (a `GROUP BY status` over millions of
/// transactions is not free).
const DATABASE_GAUGES_EVERY: Duration = Duration::from_secs(15);
static LAST_READ: Mutex<Option<Instant>> = Mutex::new(None);

async fn render(State(state): State<AppState>) -> impl IntoResponse {
    let due = {
        let mut last = LAST_READ.lock().unwrap_or_else(|p| p.into_inner());
        let due = last.is_none_or(|at| at.elapsed() >= DATABASE_GAUGES_EVERY);
        if due {
            *last = Some(Instant::now());
        }
        due
    };
    if due && let Err(e) = read_database_gauges(&state).await {
        tracing::warn!(error = %e, "metrics: database gauges not refreshed");
    }
    let size = state.pool.pool().size();
    let idle = u32::try_from(state.pool.pool().num_idle()).unwrap_or(u32::MAX);
    metrics::gauge!("fluid_webhooks_db_pool_connections", "state" => "idle").set(f64::from(idle));
    metrics::gauge!("fluid_webhooks_db_pool_connections", "state" => "in_use")
        .set(f64::from(size.saturating_sub(idle)));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        install().render(),
    )
}

async fn read_database_gauges(state: &AppState) -> Result<(), sqlx::Error> {
    let b = Backlogs::read(&state.pool).await?;
    metrics::gauge!("fluid_webhooks_inbox_backlog").set(b.inbox as f64);
    metrics::gauge!("fluid_webhooks_inbox_oldest_pending_age_seconds")
        .set(b.inbox_oldest_secs.unwrap_or(0.0));
    metrics::gauge!("fluid_webhooks_reconciliation_watched", "state" => "polling")
        .set(b.polling as f64);
    metrics::gauge!("fluid_webhooks_reconciliation_watched", "state" => "given_up")
        .set(b.given_up as f64);
    metrics::gauge!("fluid_webhooks_forward_backlog").set(b.unforwarded as f64);
    metrics::gauge!("fluid_webhooks_forward_oldest_age_seconds")
        .set(b.unforwarded_oldest_secs.unwrap_or(0.0));
    let by_status = b.transactions;
    for status in Status::ALL {
        let count = by_status
            .iter()
            .find(|(s, _)| s == status.as_str())
            .map_or(0, |(_, n)| *n);
        metrics::gauge!("fluid_webhooks_transactions", "status" => status.as_str())
            .set(count as f64);
    }
    Ok(())
}
