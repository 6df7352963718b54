//! The page shell every console page shares: the document, its stylesheet (served from
//! `/console/console.css`, since the Content-Security-Policy allows no inline style), the
//! navigation and the sign-out form with the session's CSRF token. maud escapes every value
//! written with `( )`, so a payload's `<script>` shows as text.

use axum::response::Html;
use maud::{DOCTYPE, Markup, html};

use super::session::Session;

/// A page for a signed-in person.
pub fn page(title: &str, session: &Session, body: Markup) -> Html<String> {
    document(
        title,
        html! {
            a href="#main" class="skip" { "Skip to content" }
            header {
                nav aria-label="Console" {
                    a href="/console" { "Overview" }
                    a href="/console/search" { "Find a payment" }
                    a href="/console/events" { "Events" }
                    a href="/console/dead-letters" { "Dead letters" }
                }
                form method="post" action="/console/logout" class="logout" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    button type="submit" { "Sign out" }
                }
            }
            main id="main" tabindex="-1" { h1 { (title) } (body) }
        },
    )
}

/// A page without a session (the sign-in form).
pub fn bare(title: &str, body: Markup) -> Html<String> {
    document(title, body)
}

fn document(title: &str, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · fluid-webhooks" }
                    link rel="stylesheet" href="/console/console.css";
                }
                body { (body) }
            }
        }
        .into_string(),
    )
}
