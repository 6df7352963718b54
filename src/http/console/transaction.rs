//! A transaction: status, amounts, the expected amount and a visible mismatch flag, and one
//! timeline of everything that happened to it, in time order: events received (webhook or poll),
//! status changes and their forwarding, and where reconciliation stands.

use axum::{extract::State, response::Html};
use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::{pages, session::Session};
use crate::http::{
    AppState,
    admin::transactions::events_of,
    error::{Error, Result},
    extract::Path,
};

/// The columns the page shows.
#[derive(sqlx::FromRow)]
struct Row {
    partner_reference: Option<String>,
    status: String,
    amount: Option<String>,
    fee: Option<String>,
    currency: Option<String>,
    expected_amount: Option<String>,
    expected_currency: Option<String>,
    amount_mismatch: bool,
    created_at: DateTime<Utc>,
}

/// A status change: recorded at, from, to, forwarded at, forwarding attempts, last error.
type Change = (
    DateTime<Utc>,
    Option<String>,
    String,
    Option<DateTime<Utc>>,
    i32,
    Option<String>,
);
/// Reconciliation: last polled at, polls, last outcome, last error, next poll.
type Polling = (
    Option<DateTime<Utc>>,
    i32,
    Option<String>,
    Option<String>,
    String,
);

/// One line of the timeline: when, what, and a link.
struct Moment {
    at: DateTime<Utc>,
    what: String,
    link: Option<String>,
}

/// `GET /console/transactions/{provider}/{reference}`.
pub(super) async fn page(
    State(state): State<AppState>,
    session: Session,
    Path((provider, reference)): Path<(String, String)>,
) -> Result<Html<String>> {
    let row: Row = sqlx::query_as(
        "SELECT partner_reference, status, amount::text AS amount, fee::text AS fee, currency, \
             expected_amount::text AS expected_amount, expected_currency, amount_mismatch, created_at \
         FROM transactions WHERE provider = $1 AND reference = $2",
    )
    .bind(&provider)
    .bind(&reference)
    .fetch_optional(&state.pool)
    .await?
    .ok_or(Error::NoSuchTransaction)?;
    let events = events_of(
        &state,
        &provider,
        &reference,
        row.partner_reference.as_deref(),
    )
    .await?;
    let changes: Vec<Change> = sqlx::query_as(
        "SELECT recorded_at, previous_status, status, forwarded_at, attempts, last_error \
             FROM transaction_changes WHERE provider = $1 AND reference = $2",
    )
    .bind(&provider)
    .bind(&reference)
    .fetch_all(&state.pool)
    .await?;
    let polls: Option<Polling> = sqlx::query_as(
        "SELECT last_polled_at, polls, last_outcome, last_error, next_poll_at::text \
             FROM reconciliation WHERE provider = $1 AND reference = $2",
    )
    .bind(&provider)
    .bind(&reference)
    .fetch_optional(&state.pool)
    .await?;

    let mut timeline: Vec<Moment> = vec![Moment {
        at: row.created_at,
        what: "transaction stored here".into(),
        link: None,
    }];
    for e in &events {
        timeline.push(Moment {
            at: e.received_at,
            what: format!(
                "{} received ({}): {}{}{}",
                e.event_type,
                e.source,
                e.status,
                e.outcome
                    .as_deref()
                    .map(|o| format!(" · {o}"))
                    .unwrap_or_default(),
                e.last_error
                    .as_deref()
                    .map(|x| format!(" — {x}"))
                    .unwrap_or_default()
            ),
            link: Some(format!("/console/events/{}/{}", e.provider, e.event_id)),
        });
    }
    for (at, previous, status, forwarded, attempts, error) in &changes {
        timeline.push(Moment {
            at: *at,
            what: format!(
                "status {} → {status}",
                previous.as_deref().unwrap_or("none")
            ),
            link: None,
        });
        if let Some(forwarded) = forwarded {
            timeline.push(Moment {
                at: *forwarded,
                what: format!("forwarded ({attempts} attempts)"),
                link: None,
            });
        } else if *attempts > 0 {
            timeline.push(Moment {
                at: *at,
                what: format!(
                    "forwarding failing after {attempts} attempts: {}",
                    error.as_deref().unwrap_or("")
                ),
                link: None,
            });
        }
    }
    if let Some((Some(at), polls, outcome, error, next)) = &polls {
        timeline.push(Moment {
            at: *at,
            what: format!(
                "polled FLUID's API ({polls} polls): {}{}; next {next}",
                outcome.as_deref().unwrap_or("-"),
                error
                    .as_deref()
                    .map(|x| format!(" — {x}"))
                    .unwrap_or_default()
            ),
            link: None,
        });
    }
    timeline.sort_by_key(|m| m.at);
    Ok(pages::page(
        &format!("Transaction {reference}"),
        &session,
        body(&provider, &row, &timeline),
    ))
}

fn body(provider: &str, row: &Row, timeline: &[Moment]) -> Markup {
    let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "–".into());
    html! {
        @if row.amount_mismatch {
            p class="problem" role="alert" { "Amount mismatch: FLUID's amount or currency is not what was expected." }
        }
        dl {
            dt { "Provider" } dd { (provider) }
            dt { "Partner reference" } dd { (text(&row.partner_reference)) }
            dt { "Status" } dd { strong { (row.status) } }
            dt { "Amount" } dd { (text(&row.amount)) " " (text(&row.currency)) }
            dt { "Fee" } dd { (text(&row.fee)) }
            dt { "Expected" } dd { (text(&row.expected_amount)) " " (text(&row.expected_currency)) }
        }
        h2 { "Timeline" }
        ol class="timeline" {
            @for m in timeline {
                li {
                    time datetime=(m.at.to_rfc3339()) { (m.at.format("%Y-%m-%d %H:%M:%S%.3f UTC")) }
                    " "
                    @if let Some(link) = &m.link { a href=(link) { (m.what) } } @else { (m.what) }
                }
            }
        }
    }
}
