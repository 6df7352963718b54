//! The web console at `/console`, for the people on call: server-rendered pages (maud, compiled
//! into the binary; no script, no framework, nothing fetched from elsewhere). Mounted only when
//! `ADMIN_TOKEN` is set. Signing in with the token (form field `token`, compared in constant time,
//! failures rate limited per address in the database) makes a session: the cookie `fw_session`
//! (`HttpOnly`, `SameSite=Strict`, `Secure` over HTTPS, 12 hours), stored in PostgreSQL so it works
//! on every replica. Every POST of a session carries its CSRF token in the form field `csrf`.
//! [`session`] keeps the sessions, [`pages`] draws the shell; the pages: [`overview`], [`search`]
//! (find a payment, and the dead letters), [`events`] (filters, paging), [`transaction`] (its timeline), [`event`] (its exact
//! body, whether it verifies now, replay).

mod event;
mod events;
mod overview;
mod pages;
mod search;
mod session;
mod transaction;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Extension, Router,
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use maud::html;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AppState, error::Result, extract::Form};
use crate::secret::Secret;
use session::{CsrfForm, Session};

/// Failed sign-ins allowed per client address in [`FAILURE_WINDOW_MINUTES`].
const MAX_FAILURES: i64 = 10;
/// The window of [`MAX_FAILURES`].
const FAILURE_WINDOW_MINUTES: i32 = 15;

/// What the console's handlers share: the token's hash, compared in constant time.
#[derive(Clone)]
pub(crate) struct Console {
    token_hash: [u8; 32],
}

/// The console's routes, for an admin token.
pub fn router(token: &Secret) -> Router<AppState> {
    let console = Arc::new(Console {
        token_hash: Sha256::digest(token.expose().as_bytes()).into(),
    });
    Router::new()
        .route("/console", get(overview::page))
        .route("/console/search", get(search::search))
        .route(
            "/console/transactions/{provider}/{reference}",
            get(transaction::page),
        )
        .route("/console/events", get(events::page))
        .route("/console/events/{provider}/{event_id}", get(event::page))
        .route(
            "/console/events/{provider}/{event_id}/replay",
            axum::routing::post(event::replay),
        )
        .route("/console/dead-letters", get(search::dead_letters))
        .route(
            "/console/dead-letters/replay-all",
            get(search::confirm_replay_all).post(search::replay_all),
        )
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", axum::routing::post(logout))
        .route("/console/console.css", get(stylesheet))
        .layer(Extension(console))
        .layer(middleware::from_fn(security_headers))
}

/// The headers of every console answer: no script or style from anywhere but here, no framing,
/// no referrer, no caching of pages that show payments.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("console.css"),
    )
}

async fn login_form() -> Response {
    pages::bare("Sign in", login_body(None)).into_response()
}

fn login_body(problem: Option<&str>) -> maud::Markup {
    html! {
        main class="login" {
            h1 { "fluid-webhooks console" }
            @if let Some(problem) = problem { p class="problem" role="alert" { (problem) } }
            form method="post" action="/console/login" {
                label for="token" { "Admin token" }
                input id="token" name="token" type="password" autocomplete="current-password" required autofocus;
                button type="submit" { "Sign in" }
            }
        }
    }
}

/// The sign-in form.
#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

/// `POST /console/login`: the right token makes a session and goes to the overview.
async fn login(
    State(state): State<AppState>,
    Extension(console): Extension<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response> {
    let client = state.limits.client_ip(peer.ip(), &headers).to_string();
    let failures: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM console_login_failures \
         WHERE address = $1 AND at > now() - make_interval(mins => $2)",
    )
    .bind(&client)
    .bind(FAILURE_WINDOW_MINUTES)
    .fetch_one(&state.pool)
    .await?;
    if failures >= MAX_FAILURES {
        tracing::warn!(client, "console: sign-in refused, too many failures");
        let body = login_body(Some(
            "Too many failed attempts from your address; try again in 15 minutes.",
        ));
        return Ok((StatusCode::TOO_MANY_REQUESTS, pages::bare("Sign in", body)).into_response());
    }
    let presented = Sha256::digest(form.token.trim().as_bytes());
    if !bool::from(presented.ct_eq(&console.token_hash)) {
        sqlx::query("INSERT INTO console_login_failures (address) VALUES ($1)")
            .bind(&client)
            .execute(&state.pool)
            .await?;
        tracing::warn!(client, "console: wrong token");
        let body = login_body(Some("That is not the admin token."));
        return Ok((StatusCode::UNAUTHORIZED, pages::bare("Sign in", body)).into_response());
    }
    let https = state.limits.arrived_over_https(peer.ip(), &headers);
    let cookie = Session::create(&state.pool, https).await?;
    tracing::info!(client, "console: signed in");
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/console")).into_response())
}

/// `POST /console/logout`: ends the session (with its CSRF token).
async fn logout(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<CsrfForm>,
) -> Result<Response> {
    session.check_csrf(&form.csrf)?;
    session.end(&state.pool).await?;
    Ok((
        [(header::SET_COOKIE, Session::cleared())],
        Redirect::to("/console/login"),
    )
        .into_response())
}
