//! The overview: the last hour and the last day of deliveries by what became of them, how long
//! events waited to be applied, and every queue a person may have to act on. Read from the
//! database, not from Prometheus, so it is the same on every replica.

use axum::{extract::State, response::Html};
use maud::{Markup, html};

use super::{pages, session::Session};
use crate::{
    http::{AppState, error::Result},
    store::backlogs::{Backlogs, ForPeople},
};

/// One row of stored events by status and outcome: (status, outcome, last hour, last day).
type Outcome = (String, String, i64, i64);

/// `GET /console`.
pub(super) async fn page(State(state): State<AppState>, session: Session) -> Result<Html<String>> {
    let outcomes: Vec<Outcome> = sqlx::query_as(
        "SELECT status, coalesce(outcome, '-'), \
                count(*) FILTER (WHERE received_at > now() - interval '1 hour'), count(*) \
         FROM webhook_events WHERE received_at > now() - interval '1 day' \
         GROUP BY 1, 2 ORDER BY 4 DESC",
    )
    .fetch_all(&state.pool)
    .await?;
    // Received to applied, over the last hour's applied events.
    let (p50, p99): (Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s), percentile_cont(0.99) WITHIN GROUP (ORDER BY s) \
         FROM (SELECT extract(epoch FROM processed_at - received_at)::float8 AS s FROM webhook_events \
               WHERE received_at > now() - interval '1 hour' AND processed_at IS NOT NULL) AS t",
    )
    .fetch_one(&state.pool)
    .await?;
    let backlogs = Backlogs::read(&state.pool).await?;
    let people = ForPeople::read(&state.pool).await?;
    Ok(pages::page(
        "Overview",
        &session,
        body(&outcomes, p50, p99, &backlogs, &people),
    ))
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

fn body(
    outcomes: &[Outcome],
    p50: Option<f64>,
    p99: Option<f64>,
    b: &Backlogs,
    people: &ForPeople,
) -> Markup {
    html! {
        section aria-labelledby="queues" {
            h2 id="queues" { "Queues" }
            div class="cards" {
                (card("Inbox backlog", b.inbox, &format!("oldest {}", age(b.inbox_oldest_secs))))
                (card("Dead letters", people.dead, "waiting for a replay"))
                (card("Amount mismatches", people.amount_mismatches, "not what the merchant expected"))
                (card("Reconciliation watching", b.polling, &format!("{} given up", b.given_up)))
                (card("Forwarding backlog", b.unforwarded, &format!("oldest {}", age(b.unforwarded_oldest_secs))))
                (card("Received → applied", format!("p50 {}", age(p50)), &format!("p99 {} (last hour)", age(p99))))
            }
        }
        section aria-labelledby="events" {
            h2 id="events" { "Stored events" }
            table {
                thead { tr { th scope="col" { "Status" } th scope="col" { "Outcome" } th scope="col" class="n" { "Last hour" } th scope="col" class="n" { "Last day" } } }
                tbody {
                    @for (status, outcome, hour, day) in outcomes {
                        tr { td { (status) } td { (outcome) } td class="n" { (hour) } td class="n" { (day) } }
                    }
                    @if outcomes.is_empty() { tr { td colspan="4" { "No event in the last day." } } }
                }
            }
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
