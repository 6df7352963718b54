//! Find a payment: one box for a partner reference, a provider's reference or an event id, going
//! straight to the transaction or the event when one thing matches; and the dead letters, with a
//! replay of each and of all (after a confirmation step).

use axum::{
    extract::State,
    response::{Html, IntoResponse, Redirect, Response},
};
use maud::html;
use serde::Deserialize;

use super::{
    pages,
    session::{CsrfForm, Session},
};
use crate::{
    http::{
        AppState,
        admin::events::{EventSummary, SUMMARY},
        error::Result,
        extract::{Form, Query},
    },
    store::rows::EventStatus,
};

/// `?q=`.
#[derive(Deserialize)]
pub(super) struct Search {
    #[serde(default)]
    q: String,
}

/// `GET /console/search?q=`.
pub(super) async fn search(
    State(state): State<AppState>,
    session: Session,
    Query(search): Query<Search>,
) -> Result<Response> {
    let q = search.q.trim();
    let transactions: Vec<(String, String, String)> = if q.is_empty() {
        Vec::new()
    } else {
        // A reference by the primary key (provider, reference), for each configured provider;
        // a partner reference by its own index.
        sqlx::query_as(
            "SELECT provider, reference, status FROM transactions \
             WHERE provider = ANY($2) AND reference = $1 \
             UNION SELECT provider, reference, status FROM transactions WHERE partner_reference = $1 \
             LIMIT 50",
        )
        .bind(q)
        .bind(state.providers.names())
        .fetch_all(&state.pool)
        .await?
    };
    let events: Vec<(String, String)> = if q.is_empty() {
        Vec::new()
    } else {
        // By (provider, event_id), the primary key, for each configured provider: an event id
        // alone would scan the index.
        sqlx::query_as(
            "SELECT provider, event_id FROM webhook_events \
             WHERE provider = ANY($2) AND event_id = $1 LIMIT 50",
        )
        .bind(q)
        .bind(state.providers.names())
        .fetch_all(&state.pool)
        .await?
    };
    match (transactions.as_slice(), events.as_slice()) {
        ([(provider, reference, _)], []) => {
            return Ok(Redirect::to(&format!(
                "/console/transactions/{}/{}",
                encode(provider),
                encode(reference)
            ))
            .into_response());
        }
        ([], [(provider, event_id)]) => {
            return Ok(Redirect::to(&format!(
                "/console/events/{}/{}",
                encode(provider),
                encode(event_id)
            ))
            .into_response());
        }
        _ => {}
    }
    let body = html! {
        (form(q))
        @if !q.is_empty() && transactions.is_empty() && events.is_empty() {
            p role="status" { "Nothing is stored under " code { (q) } "." }
        }
        ul {
            @for (provider, reference, status) in &transactions {
                li { a href=(format!("/console/transactions/{}/{}", encode(provider), encode(reference))) { (provider) " " (reference) } " · " (status) }
            }
            @for (provider, event_id) in &events {
                li { a href=(format!("/console/events/{}/{}", encode(provider), encode(event_id))) { "event " (event_id) } " (" (provider) ")" }
            }
        }
    };
    Ok(pages::page("Find a payment", &session, body).into_response())
}

/// The search box.
pub(super) fn form(q: &str) -> maud::Markup {
    html! {
        form method="get" action="/console/search" role="search" {
            label for="q" { "Partner reference, reference or event id" }
            input id="q" name="q" type="search" value=(q);
            button type="submit" { "Find" }
        }
    }
}

/// A path segment, percent-encoded.
pub(super) fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET /console/dead-letters`: the newest 200.
pub(super) async fn dead_letters(
    State(state): State<AppState>,
    session: Session,
) -> Result<Html<String>> {
    let sql = format!(
        "SELECT {SUMMARY} FROM webhook_events WHERE status = '{}' ORDER BY id DESC LIMIT 200",
        EventStatus::Dead
    );
    let dead: Vec<EventSummary> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(&state.pool)
        .await?;
    let body = html! {
        @if dead.is_empty() { p { "No dead letters." } } @else {
            p { a href="/console/dead-letters/replay-all" { "Replay all…" } }
            table {
                thead { tr { th scope="col" { "Event" } th scope="col" { "Type" } th scope="col" { "Reference" } th scope="col" { "Error" } th scope="col" { "" } } }
                tbody {
                    @for e in &dead {
                        tr {
                            td { a href=(format!("/console/events/{}/{}", encode(&e.provider), encode(&e.event_id))) { (e.event_id) } }
                            td { (e.event_type) }
                            td { (e.reference.as_deref().or(e.partner_reference.as_deref()).unwrap_or("–")) }
                            td { (e.last_error.as_deref().unwrap_or("")) }
                            td {
                                form method="post" action=(format!("/console/events/{}/{}/replay", encode(&e.provider), encode(&e.event_id))) {
                                    input type="hidden" name="csrf" value=(session.csrf);
                                    button type="submit" { "Replay" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(pages::page("Dead letters", &session, body))
}

/// `GET /console/dead-letters/replay-all`: the confirmation step.
pub(super) async fn confirm_replay_all(
    State(state): State<AppState>,
    session: Session,
) -> Result<Html<String>> {
    let sql = format!(
        "SELECT count(*) FROM webhook_events WHERE status = '{}'",
        EventStatus::Dead
    );
    let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(&state.pool)
        .await?;
    let body = html! {
        p { "Put all " strong { (count) } " dead letters back in the queue? The workers apply them through the same rules." }
        form method="post" action="/console/dead-letters/replay-all" {
            input type="hidden" name="csrf" value=(session.csrf);
            button type="submit" { "Yes, replay all" }
        }
        p { a href="/console/dead-letters" { "Cancel" } }
    };
    Ok(pages::page("Replay all dead letters", &session, body))
}

/// `POST /console/dead-letters/replay-all`.
pub(super) async fn replay_all(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<CsrfForm>,
) -> Result<Html<String>> {
    session.check_csrf(&form.csrf)?;
    let replayed = crate::http::admin::events::queue_dead(&state).await?;
    let body = html! {
        p role="status" { (replayed) " dead letters queued again." }
        p { a href="/console/dead-letters" { "Back to the dead letters" } }
    };
    Ok(pages::page("Replay all dead letters", &session, body))
}
