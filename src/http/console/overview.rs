//! The overview: the last hour and the last day of deliveries by outcome and how fast they were
//! acknowledged, and every queue a person may have to act on. Read from the
//! database, not from Prometheus, so it is the same on every replica.

use axum::{extract::State, response::Html};
use maud::{Markup, html};

use super::{pages, session::Session};
use crate::{
    http::{AppState, error::Result},
    store::{
        backlogs::{Backlogs, ForPeople},
        deliveries::Summary,
    },
};

/// `GET /console`.
pub(super) async fn page(State(state): State<AppState>, session: Session) -> Result<Html<String>> {
    let deliveries = Summary::read(&state.pool).await?;
    let backlogs = Backlogs::read(&state.pool).await?;
    let people = ForPeople::read(&state.pool).await?;
    Ok(pages::page(
        "Overview",
        &session,
        body(&deliveries, &backlogs, &people),
    ))
}

/// Milliseconds as a person reads them.
fn ms(value: Option<f64>) -> String {
    match value {
        None => "–".into(),
        Some(ms) if ms < 10.0 => format!("{ms:.1} ms"),
        Some(ms) => age(Some(ms / 1000.0)),
    }
}

/// Seconds as a person reads them.
fn age(seconds: Option<f64>) -> String {
    match seconds {
        None => "–".into(),
        Some(s) if s < 1.0 => format!("{:.0} ms", s * 1000.0),
        Some(s) if s < 120.0 => format!("{s:.1} s"),
        Some(s) if s < 7200.0 => format!("{:.0} min", s / 60.0),
        Some(s) => format!("{:.1} h", s / 3600.0),
    }
}

fn card(label: &str, value: impl std::fmt::Display, note: &str) -> Markup {
    html! { div class="card" { (label) strong { (value) } @if !note.is_empty() { small { (note) } } } }
}

fn body(d: &Summary, b: &Backlogs, people: &ForPeople) -> Markup {
    html! {
        section aria-labelledby="queues" {
            h2 id="queues" { "Queues" }
            div class="cards" {
                (card("Inbox backlog", b.inbox, &format!("oldest {}", age(b.inbox_oldest_secs))))
                (card("Dead letters", people.dead, "waiting for a replay"))
                (card("Amount mismatches", people.amount_mismatches, "not what the merchant expected"))
                (card("Reconciliation watching", b.polling, &format!("{} given up", b.given_up)))
                (card("Forwarding backlog", b.unforwarded, &format!("oldest {}", age(b.unforwarded_oldest_secs))))
                (card("Acknowledgement, last hour", format!("p50 {}", ms(d.hour_ms.0)), &format!("p99 {}", ms(d.hour_ms.1))))
                (card("Acknowledgement, last day", format!("p50 {}", ms(d.day_ms.0)), &format!("p99 {}", ms(d.day_ms.1))))
            }
        }
        section aria-labelledby="deliveries" {
            h2 id="deliveries" { "Deliveries by outcome" }
            table {
                thead { tr { th scope="col" { "Outcome" } th scope="col" class="n" { "Last hour" } th scope="col" class="n" { "Last day" } } }
                tbody {
                    @for o in &d.outcomes {
                        tr { td { (o.outcome) } td class="n" { (o.hour) } td class="n" { (o.day) } }
                    }
                    @if d.outcomes.is_empty() { tr { td colspan="3" { "No delivery in the last day." } } }
                }
            }
            p class="note" { "Counted by every replica and written every 5 seconds; acknowledgement times are of the 2xx answers, from their histogram." }
        }
        section aria-labelledby="transactions" {
            h2 id="transactions" { "Transactions by status" }
            table {
                thead { tr { th scope="col" { "Status" } th scope="col" class="n" { "Count" } } }
                tbody {
                    @for (status, count) in &b.transactions { tr { td { (status) } td class="n" { (count) } } }
                }
            }
        }
    }
}
