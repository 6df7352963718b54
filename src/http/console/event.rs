//! An event: its delivery headers, the exact body (pretty-printed and raw), signature, `key_id`,
//! whether it verifies now, every attempt with its error, its transaction, and a Replay button.

use axum::{
    extract::State,
    response::{Html, IntoResponse, Response},
};
use maud::{Markup, html};

use super::{
    pages,
    session::{CsrfForm, Session},
};
use crate::http::{
    AppState,
    admin::events::{EventView, replay_now},
    error::Result,
    extract::{Form, Path},
};

/// `GET /console/events/{provider}/{event_id}`.
pub(super) async fn page(
    State(state): State<AppState>,
    session: Session,
    Path((provider, event_id)): Path<(String, String)>,
) -> Result<Html<String>> {
    let view = EventView::load(&state, &provider, &event_id).await?;
    Ok(pages::page(
        &format!("Event {event_id}"),
        &session,
        body(&view, &session),
    ))
}

fn verifies(verdict: Option<bool>) -> &'static str {
    match verdict {
        Some(true) => "yes: the signature checks with the key configured now",
        Some(false) => "NO: the stored signature does not check",
        None => "cannot tell (key no longer configured, body not exact, or a poll's answer)",
    }
}

fn body(view: &EventView, session: &Session) -> Markup {
    let e = &view.event;
    let raw = view.raw_body.as_deref().unwrap_or("");
    let path = format!("/console/events/{}/{}", e.provider, e.event_id);
    html! {
        dl {
            dt { "Provider" } dd { (e.provider) }
            dt { "Type" } dd { (e.event_type) }
            dt { "Source" } dd { (e.source) }
            dt { "Status" } dd { (e.status) @if let Some(o) = &e.outcome { " · " (o) } }
            dt { "Attempts" } dd { (e.attempts) }
            dt { "Its own timestamp" } dd { (e.timestamp.as_deref().unwrap_or("–")) }
            dt { "Received" } dd { (e.received_at.to_rfc3339()) }
            @if let Some(reference) = &e.reference {
                dt { "Transaction" }
                dd { a href=(format!("/console/transactions/{}/{}", e.provider, reference)) { (reference) } }
            }
            dt { "Delivery headers" } dd { code { (view.delivery.to_string()) } }
            dt { "Signature" } dd { code { (view.signature.as_deref().unwrap_or("–")) } }
            dt { "key_id" } dd { code { (view.key_id.as_deref().unwrap_or("–")) } }
            dt { "Verifies now" } dd { (verifies(view.verifies_now)) }
            dt { "Exact bytes" } dd { (if view.raw_exact { "yes" } else { "no (stored before bodies were kept byte for byte)" }) }
        }
        form method="post" action=(format!("{path}/replay")) {
            input type="hidden" name="csrf" value=(session.csrf);
            button type="submit" { "Replay" }
        }
        h2 { "Body" }
        @if view.raw_body.is_some() {
            pre { code { (pretty(raw)) } }
            details { summary { "Raw, as received" } pre { code { (raw) } } }
        } @else {
            p { "Not UTF-8; base64:" } pre { code { (view.raw_body_base64.as_deref().unwrap_or("")) } }
        }
        h2 { "Attempts" }
        ol {
            @for attempt in view.history.as_array().into_iter().flatten() {
                li { code { (attempt.to_string()) } }
            }
        }
    }
}

/// Indents JSON text without parsing its values: every number and string stays as written.
pub(super) fn pretty(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    for c in json.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                depth += 1;
                out.push(c);
                newline(&mut out, depth);
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// `POST /console/events/{provider}/{event_id}/replay`: applies it again now, then shows how it
/// ended.
pub(super) async fn replay(
    State(state): State<AppState>,
    session: Session,
    Path((provider, event_id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Result<Response> {
    session.check_csrf(&form.csrf)?;
    let (replayed, outcome) = replay_now(&state, &provider, &event_id, "console").await?;
    let body = html! {
        p role="status" { "Replayed: " strong { (outcome) } @if let Some(r) = &replayed.reason { " — " (r) } }
        p { a href=(format!("/console/events/{provider}/{event_id}")) { "Back to the event" } }
    };
    Ok(pages::page("Replay", &session, body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_printing_keeps_every_number_and_string_as_written() {
        let raw = r#"{"amount":12345678901234567.89,"fee":1.50,"s":"a,{b}:\"c\"","l":[1,2]}"#;
        let shown = pretty(raw);
        for exact in ["12345678901234567.89", "1.50", r#""a,{b}:\"c\"""#] {
            assert!(shown.contains(exact), "{exact} in {shown}");
        }
        let compact: String = shown.split_whitespace().collect();
        assert_eq!(compact, raw, "only whitespace was added");
    }
}
