//! The events: filters (provider, type, status, source, time range), paging, newest first; the
//! same query as `GET /admin/events`.

use axum::{extract::State, response::Html};
use chrono::{DateTime, Utc};
use maud::html;
use serde::Deserialize;

use super::{pages, search::encode, session::Session};
use crate::http::{
    AppState,
    admin::events::{EventFilter, EventPage},
    error::{Error, Result},
    extract::Query,
};

/// The most events of the window one page looks through: a filter that matches few of a million
/// events answers at once, with a link to look further.
const SCAN: i64 = 10_000;

/// The filter form's fields, as a browser sends them (empty: any).
#[derive(Debug, Default, Deserialize)]
pub(super) struct Filters {
    #[serde(default)]
    provider: String,
    #[serde(default)]
    event_type: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    before: Option<i64>,
}

fn given(text: &str) -> Option<String> {
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

fn time(name: &str, text: &str) -> Result<Option<DateTime<Utc>>> {
    given(text)
        .map(|t| {
            DateTime::parse_from_rfc3339(&t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    Error::BadRequest(format!(
                        "`{name}` must be a time such as 2026-12-02T10:00:00Z"
                    ))
                })
        })
        .transpose()
}

/// `GET /console/events`.
pub(super) async fn page(
    State(state): State<AppState>,
    session: Session,
    Query(f): Query<Filters>,
) -> Result<Html<String>> {
    let filter = EventFilter {
        status: given(&f.status),
        event_type: given(&f.event_type),
        provider: given(&f.provider),
        source: given(&f.source),
        since: time("since", &f.since)?,
        until: time("until", &f.until)?,
        limit: Some(50),
        before: f.before,
        scan: Some(SCAN),
    };
    let EventPage {
        events,
        next_before,
        cut_short,
    } = filter.fetch(&state).await?;
    let select = |name: &str, label: &str, options: &[&str], chosen: &str| {
        html! {
            label for=(name) { (label) }
            select id=(name) name=(name) {
                option value="" { "any" }
                @for o in options { option value=(o) selected[*o == chosen] { (o) } }
            }
        }
    };
    let next = next_before.map(|before| {
        format!(
            "/console/events?provider={}&event_type={}&status={}&source={}&since={}&until={}&before={before}",
            encode(&f.provider),
            encode(&f.event_type),
            encode(&f.status),
            encode(&f.source),
            encode(&f.since),
            encode(&f.until)
        )
    });
    let body = html! {
        form method="get" action="/console/events" class="filters" {
            label for="provider" { "Provider" } input id="provider" name="provider" value=(f.provider);
            label for="event_type" { "Type" } input id="event_type" name="event_type" value=(f.event_type) placeholder="transaction.completed";
            (select("status", "Status", &["pending", "processed", "ignored", "dead"], &f.status))
            (select("source", "Source", &["webhook", "poll"], &f.source))
            label for="since" { "Since" } input id="since" name="since" value=(f.since) placeholder="default: 24 hours ago";
            label for="until" { "Until" } input id="until" name="until" value=(f.until) placeholder="2026-12-02T10:00:00Z";
            button type="submit" { "Filter" }
        }
        table {
            thead { tr { th scope="col" { "Received" } th scope="col" { "Event" } th scope="col" { "Type" } th scope="col" { "Source" } th scope="col" { "Status" } th scope="col" { "Reference" } } }
            tbody {
                @for e in &events {
                    tr {
                        td { time datetime=(e.received_at.to_rfc3339()) { (e.received_at.format("%Y-%m-%d %H:%M:%S")) } }
                        td { a href=(format!("/console/events/{}/{}", encode(&e.provider), encode(&e.event_id))) { (e.event_id) } }
                        td { (e.event_type) }
                        td { (e.source) }
                        td { (e.status) @if let Some(o) = &e.outcome { " · " (o) } }
                        td { (e.reference.as_deref().unwrap_or("–")) }
                    }
                }
                @if events.is_empty() && !cut_short { tr { td colspan="6" { "No event matches." } } }
            }
        }
        @if cut_short {
            p class="note" { "Looked through the newest " (SCAN) " events of the window; older ones may match too." }
        }
        @if let Some(next) = next { p { a href=(next) rel="next" { @if cut_short { "Look further back" } @else { "Older events" } } } }
    };
    Ok(pages::page("Events", &session, body))
}
