//! A transaction: status, amounts, the expected amount and a visible mismatch flag, and one
//! timeline of everything that happened to it, in time order: events received (webhook or poll),
//! status changes, every POST of them to forward.url, every poll of FLUID's API and what it
//! answered, and where reconciliation stands.

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

/// A status change: recorded at, from, to.
type Change = (DateTime<Utc>, Option<String>, String);
/// A POST of a change to forward.url: when, which attempt, the status it carried, the error
/// (none: delivered), milliseconds.
type Attempt = (DateTime<Utc>, i32, String, Option<String>, i32);
/// A poll of FLUID's API: when, outcome, the status FLUID answered, the error, milliseconds.
type Poll = (DateTime<Utc>, String, Option<String>, Option<String>, i32);
/// Where reconciliation stands: polls so far and when the next one is due ('infinity': given up).
type Watch = (i32, Option<String>);

/// The most polls and forwarding attempts a timeline shows (the latest), so that a transaction
/// polled for days still makes a light page.
const LATEST: i64 = 200;

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
        "SELECT recorded_at, previous_status, status \
             FROM transaction_changes WHERE provider = $1 AND reference = $2 ORDER BY id",
    )
    .bind(&provider)
    .bind(&reference)
    .fetch_all(&state.pool)
    .await?;
    let attempts: Vec<Attempt> = sqlx::query_as(
        "SELECT a.attempted_at, a.attempt, c.status, a.error, a.took_ms \
         FROM transaction_changes c JOIN forward_attempts a ON a.change_id = c.id \
         WHERE c.provider = $1 AND c.reference = $2 ORDER BY a.attempted_at DESC LIMIT $3",
    )
    .bind(&provider)
    .bind(&reference)
    .bind(LATEST)
    .fetch_all(&state.pool)
    .await?;
    let polls: Vec<Poll> = sqlx::query_as(
        "SELECT polled_at, outcome, status, error, took_ms FROM reconciliation_polls \
         WHERE provider = $1 AND reference = $2 ORDER BY polled_at DESC LIMIT $3",
    )
    .bind(&provider)
    .bind(&reference)
    .bind(LATEST)
    .fetch_all(&state.pool)
    .await?;
    let watch: Option<Watch> = sqlx::query_as(
        "SELECT polls, next_poll_at::text FROM reconciliation WHERE provider = $1 AND reference = $2",
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
    let detail = |error: &Option<String>| {
        error
            .as_deref()
            .map(|x| format!(" — {x}"))
            .unwrap_or_default()
    };
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
                detail(&e.last_error)
            ),
            link: Some(format!("/console/events/{}/{}", e.provider, e.event_id)),
        });
    }
    for (at, previous, status) in &changes {
        timeline.push(Moment {
            at: *at,
            what: format!(
                "status {} → {status}",
                previous.as_deref().unwrap_or("none")
            ),
            link: None,
        });
    }
    for (at, attempt, status, error, ms) in &attempts {
        let result = if error.is_none() {
            "delivered"
        } else {
            "failed"
        };
        timeline.push(Moment {
            at: *at,
            what: format!(
                "forwarded {status}, attempt {attempt}: {result} in {ms} ms{}",
                detail(error)
            ),
            link: None,
        });
    }
    for (at, outcome, status, error, ms) in &polls {
        timeline.push(Moment {
            at: *at,
            what: format!(
                "polled FLUID's API: {outcome}{} in {ms} ms{}",
                status
                    .as_deref()
                    .map(|s| format!(", FLUID says {s}"))
                    .unwrap_or_default(),
                detail(error)
            ),
            link: None,
        });
    }
    for (kind, shown, oldest) in [
        ("polls", polls.len(), polls.last().map(|p| p.0)),
        (
            "forwarding attempts",
            attempts.len(),
            attempts.last().map(|a| a.0),
        ),
    ] {
        if let (true, Some(at)) = (shown as i64 == LATEST, oldest) {
            timeline.push(Moment {
                at,
                what: format!("(only the latest {LATEST} {kind} are shown)"),
                link: None,
            });
        }
    }
    if let Some((polls, next)) = &watch {
        let next = match next.as_deref() {
            Some("infinity") => "given up: still not final after the last poll".to_string(),
            Some(next) => format!("next poll {next}"),
            None => "first poll not due yet".to_string(),
        };
        timeline.push(Moment {
            at: Utc::now(),
            what: format!("reconciliation watching ({polls} polls): {next}"),
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
