//! The web console over real HTTP (the browser journeys come with the rest of the console):
//! mounted only with a token, signed in with it, a session in the database that works on every
//! replica, CSRF on every POST, the safety headers, and sign-in failures rate limited.

use fluid_webhooks::secret::Secret;
use reqwest::{Client, Response, redirect::Policy};

use crate::helpers::{TestApp, spawn_app, spawn_app_on, test_database};

const TOKEN: &str = "console-token-for-tests";
/// What a browser's form sends.
const FORM: &str = "application/x-www-form-urlencoded";

fn client() -> Client {
    Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

async fn console_app(database: &str) -> TestApp {
    spawn_app_on(database.to_string(), |s| {
        s.admin_token = Some(Secret::new(TOKEN))
    })
    .await
}

async fn sign_in(app: &TestApp, token: &str) -> Response {
    client()
        .post(format!("{}/console/login", app.address))
        .header("content-type", FORM)
        .body(format!("token={token}"))
        .send()
        .await
        .expect("sent")
}

async fn get(app: &TestApp, path: &str, cookie: Option<&str>) -> Response {
    let mut request = client().get(format!("{}{path}", app.address));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.expect("sent")
}

/// `fw_session=...` from a sign-in answer.
fn session_cookie(response: &Response) -> String {
    let set = response.headers()["set-cookie"].to_str().expect("text");
    set.split(';').next().expect("pair").to_string()
}

#[tokio::test]
async fn without_a_token_there_is_no_console() {
    let app = spawn_app().await;
    assert_eq!(get(&app, "/console", None).await.status(), 404);
    assert_eq!(get(&app, "/console/login", None).await.status(), 404);
}

#[tokio::test]
async fn signing_in_makes_a_session_every_replica_knows_and_signing_out_ends_it() {
    let database = test_database().await;
    let app = console_app(&database).await;

    let anonymous = get(&app, "/console", None).await;
    assert_eq!(anonymous.status(), 303);
    assert_eq!(anonymous.headers()["location"], "/console/login");
    let form = get(&app, "/console/login", None).await;
    assert_eq!(form.status(), 200);
    let headers = form.headers().clone();
    assert!(
        headers["content-security-policy"]
            .to_str()
            .expect("csp")
            .starts_with("default-src 'self'")
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(form.text().await.expect("html").contains(r#"name="token""#));

    let wrong = sign_in(&app, "not-the-token").await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());

    let right = sign_in(&app, TOKEN).await;
    assert_eq!(right.status(), 303);
    assert_eq!(right.headers()["location"], "/console");
    let set = right.headers()["set-cookie"]
        .to_str()
        .expect("text")
        .to_string();
    for attribute in [
        "fw_session=",
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=43200",
        "Path=/console",
    ] {
        assert!(set.contains(attribute), "{attribute} in {set}");
    }
    assert!(
        !set.contains("Secure"),
        "plain HTTP: no Secure flag ({set})"
    );
    let cookie = session_cookie(&right);

    let overview = get(&app, "/console", Some(&cookie)).await;
    assert_eq!(overview.status(), 200);
    let html = overview.text().await.expect("html");
    for words in [
        "Inbox backlog",
        "Dead letters",
        "Amount mismatches",
        "Forwarding backlog",
    ] {
        assert!(html.contains(words), "{words}");
    }
    assert!(!html.contains(TOKEN), "the token never shows in a page");

    // Another replica on the same database knows the session.
    let other = console_app(&database).await;
    assert_eq!(get(&other, "/console", Some(&cookie)).await.status(), 200);

    // Signing out needs the session's CSRF token.
    let csrf = html
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the sign-out form carries a csrf token")
        .to_string();
    let logout = |csrf: String| {
        let cookie = cookie.clone();
        let address = other.address.clone();
        async move {
            client()
                .post(format!("{address}/console/logout"))
                .header("cookie", cookie)
                .header("content-type", FORM)
                .body(format!("csrf={csrf}"))
                .send()
                .await
                .expect("sent")
        }
    };
    assert_eq!(
        logout(String::new()).await.status(),
        403,
        "no CSRF token: refused"
    );
    assert_eq!(
        logout("0".repeat(64)).await.status(),
        403,
        "a wrong one too"
    );
    assert_eq!(
        get(&app, "/console", Some(&cookie)).await.status(),
        200,
        "still signed in"
    );
    assert_eq!(logout(csrf).await.status(), 303);
    assert_eq!(
        get(&app, "/console", Some(&cookie)).await.status(),
        303,
        "signed out everywhere"
    );
}

#[tokio::test]
async fn sign_in_failures_are_limited_per_address() {
    let database = test_database().await;
    let app = console_app(&database).await;
    for _ in 0..10 {
        assert_eq!(sign_in(&app, "guess").await.status(), 401);
    }
    assert_eq!(sign_in(&app, "guess").await.status(), 429);
    assert_eq!(
        sign_in(&app, TOKEN).await.status(),
        429,
        "even the right token, for a while"
    );
    // Another replica counts the same failures.
    let other = console_app(&database).await;
    assert_eq!(sign_in(&other, TOKEN).await.status(), 429);
}

/// Signs in on `app`: (cookie, the session's CSRF token read from a page).
async fn signed_in(app: &TestApp) -> (String, String) {
    let cookie = session_cookie(&sign_in(app, TOKEN).await);
    let html = get(app, "/console", Some(&cookie))
        .await
        .text()
        .await
        .expect("html");
    let csrf = html
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("csrf")
        .to_string();
    (cookie, csrf)
}

async fn post_form(app: &TestApp, path: &str, cookie: &str, body: &str) -> Response {
    client()
        .post(format!("{}{path}", app.address))
        .header("cookie", cookie)
        .header("content-type", FORM)
        .body(body.to_string())
        .send()
        .await
        .expect("sent")
}

#[tokio::test]
async fn find_an_order_read_its_timeline_open_an_event_and_replay_a_dead_letter() {
    let database = test_database().await;
    let app = console_app(&database).await;
    for event in [
        crate::helpers::Event::new("transaction.pending", "evt_c1", "FLU-C").at(1),
        crate::helpers::Event::new("transaction.completed", "evt_c2", "FLU-C").at(2),
    ] {
        assert_eq!(app.post_signed(&event.body()).await.status(), 200);
    }
    let hostile = r#"{"event":"transaction.completed","event_id":"evt_xss","data":{"transaction":{"reference":"FLU-C","partner_reference":"order_FLU-C","amount":"<script>alert(1)</script>\"><img src=x onerror=alert(2)>"}}}"#;
    assert_eq!(app.post_signed(hostile).await.status(), 200);
    app.wait_until_processed().await;
    let (cookie, csrf) = signed_in(&app).await;

    let found = get(&app, "/console/search?q=order_FLU-C", Some(&cookie)).await;
    assert_eq!(found.status(), 303);
    assert_eq!(
        found.headers()["location"],
        "/console/transactions/fluid/FLU-C"
    );
    let page = get(&app, "/console/transactions/fluid/FLU-C", Some(&cookie))
        .await
        .text()
        .await
        .expect("html");
    let pending = page
        .find("transaction.pending received")
        .expect("pending in the timeline");
    let completed = page
        .find("transaction.completed received")
        .expect("completed in the timeline");
    assert!(pending < completed, "in time order");
    assert!(
        page.contains("<strong>completed</strong>") && page.contains("100.00 GHS"),
        "status and exact amount: {page}"
    );

    let event = get(&app, "/console/events/fluid/evt_c2", Some(&cookie))
        .await
        .text()
        .await
        .expect("html");
    assert!(event.contains("yes: the signature checks"), "verifies now");
    assert!(
        event.contains("&quot;amount&quot;: 100.00") || event.contains("\"amount\": 100.00"),
        "pretty, digit for digit"
    );

    let xss = get(&app, "/console/events/fluid/evt_xss", Some(&cookie))
        .await
        .text()
        .await
        .expect("html");
    assert!(
        !xss.contains("<script>alert(1)") && !xss.contains("<img src=x"),
        "escaped"
    );
    assert!(
        xss.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "shown as text"
    );

    // The hostile event is a dead letter (its amount is not a number): replay it from the list.
    let dead = get(&app, "/console/dead-letters", Some(&cookie))
        .await
        .text()
        .await
        .expect("html");
    assert!(dead.contains("evt_xss"));
    let refused = post_form(
        &app,
        "/console/events/fluid/evt_xss/replay",
        &cookie,
        "csrf=",
    )
    .await;
    assert_eq!(refused.status(), 403, "no CSRF token");
    let replayed = post_form(
        &app,
        "/console/events/fluid/evt_xss/replay",
        &cookie,
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(replayed.status(), 200);
    assert!(
        replayed
            .text()
            .await
            .expect("html")
            .contains("<strong>dead</strong>")
    );
    let listed = get(
        &app,
        "/console/events?status=dead&provider=&source=",
        Some(&cookie),
    )
    .await;
    assert_eq!(listed.status(), 200);
    let listed = listed.text().await.expect("html");
    assert!(
        listed.contains("evt_xss") && !listed.contains("evt_c1"),
        "filtered by status"
    );
    let bad = get(&app, "/console/events?status=bogus", Some(&cookie)).await;
    assert_eq!(bad.status(), 400);
    let confirm = get(&app, "/console/dead-letters/replay-all", Some(&cookie))
        .await
        .text()
        .await
        .expect("html");
    assert!(confirm.contains("Yes, replay all"));
    assert_eq!(
        post_form(&app, "/console/dead-letters/replay-all", &cookie, "")
            .await
            .status(),
        403
    );
    let all = post_form(
        &app,
        "/console/dead-letters/replay-all",
        &cookie,
        &format!("csrf={csrf}"),
    )
    .await;
    assert!(
        all.text()
            .await
            .expect("html")
            .contains("1 dead letters queued again")
    );
}

#[tokio::test]
async fn the_overview_counts_deliveries_by_outcome_and_times_the_acknowledgements() {
    let database = test_database().await;
    let app = console_app(&database).await;
    let event = crate::helpers::Event::new("transaction.completed", "evt_o1", "FLU-O");
    assert_eq!(app.post_signed(&event.body()).await.status(), 200);
    assert_eq!(app.post_signed(&event.body()).await.status(), 200);
    let forged = app
        .post_webhook(&event.body(), &[("X-FLUID-Signature", "sha256=00")])
        .await;
    assert_eq!(forged.status(), 401);
    let (cookie, _) = signed_in(&app).await;

    // Written by the service every 5 seconds, summed over replicas in delivery_minutes.
    crate::helpers::eventually("the counts are written", async || {
        let total: Option<i64> =
            sqlx::query_scalar("SELECT sum(deliveries)::bigint FROM delivery_minutes")
                .fetch_one(&app.pool)
                .await
                .expect("sum");
        total == Some(3)
    })
    .await;
    let page = get(&app, "/console", Some(&cookie))
        .await
        .text()
        .await
        .expect("html");
    for outcome in ["accepted", "duplicate", "bad_signature"] {
        assert!(
            page.contains(&format!(
                "<td>{outcome}</td><td class=\"n\">1</td><td class=\"n\">1</td>"
            )),
            "{outcome} once in the last hour and day: {page}"
        );
    }
    assert!(
        page.contains("Acknowledgement, last hour") && !page.contains("p50 –"),
        "acknowledgement percentiles from the two 2xx answers: {page}"
    );
}

#[tokio::test]
async fn the_timeline_shows_every_poll_and_every_forwarding_attempt() {
    let database = test_database().await;
    let app = console_app(&database).await;
    let event = crate::helpers::Event::new("transaction.pending", "evt_t1", "FLU-T");
    assert_eq!(app.post_signed(&event.body()).await.status(), 200);
    app.wait_until_processed().await;
    // What the poller and the forwarder record (their own tests drive them against stand-ins
    // of FLUID's API and of a merchant's URL).
    sqlx::query(
        "INSERT INTO reconciliation_polls (provider, reference, polled_at, outcome, status, error, took_ms) VALUES \
         ('fluid', 'FLU-T', now() - interval '2 minutes', 'error', NULL, 'answered HTTP 502', 31), \
         ('fluid', 'FLU-T', now() - interval '1 minute', 'unchanged', 'pending', NULL, 12)",
    )
    .execute(&app.pool)
    .await
    .expect("polls");
    let change: i64 = sqlx::query_scalar(
        "INSERT INTO transaction_changes (provider, reference, status, event_id, event_at) \
         VALUES ('fluid', 'FLU-T', 'pending', 'evt_t1', now()) RETURNING id",
    )
    .fetch_one(&app.pool)
    .await
    .expect("change");
    sqlx::query(
        "INSERT INTO forward_attempts (change_id, attempt, error, took_ms) \
         VALUES ($1, 1, 'answered HTTP 503', 8), ($1, 2, NULL, 5)",
    )
    .bind(change)
    .execute(&app.pool)
    .await
    .expect("attempts");
    let (cookie, _) = signed_in(&app).await;
    let page = get(&app, "/console/transactions/fluid/FLU-T", Some(&cookie))
        .await
        .text()
        .await
        .expect("html");
    let failed_poll = page
        .find("polled FLUID&#39;s API: error in 31 ms — answered HTTP 502")
        .or_else(|| page.find("polled FLUID's API: error in 31 ms — answered HTTP 502"))
        .expect("the failed poll");
    let poll = page
        .find("unchanged, FLUID says pending in 12 ms")
        .expect("the second poll");
    assert!(failed_poll < poll, "in time order: {page}");
    assert!(page.contains("forwarded pending, attempt 1: failed in 8 ms — answered HTTP 503"));
    assert!(page.contains("forwarded pending, attempt 2: delivered in 5 ms"));
}

#[tokio::test]
async fn a_filter_matching_few_of_many_events_answers_and_offers_to_look_further() {
    let database = test_database().await;
    let app = console_app(&database).await;
    // One rare event, then more newer events than one page looks through.
    sqlx::query(
        "INSERT INTO webhook_events (provider, event_id, event_type, raw_body, status) \
         SELECT 'fluid', 'evt_many_' || i, CASE WHEN i = 0 THEN 'transaction.reversed' ELSE 'transaction.completed' END, \
                '\\x7b7d', 'processed' \
         FROM generate_series(0, 10050) AS i ORDER BY i",
    )
    .execute(&app.pool)
    .await
    .expect("events");
    let (cookie, _) = signed_in(&app).await;
    let first = get(
        &app,
        "/console/events?event_type=transaction.reversed",
        Some(&cookie),
    )
    .await
    .text()
    .await
    .expect("html");
    assert!(
        first.contains("Looked through the newest 10000 events"),
        "{first}"
    );
    assert!(!first.contains("evt_many_0<"), "beyond the bound");
    let further = first
        .split(r#"href=""#)
        .find(|rest| rest.starts_with("/console/events?"))
        .and_then(|rest| rest.split('"').next())
        .expect("a link further back")
        .replace("&amp;", "&");
    let second = get(&app, &further, Some(&cookie))
        .await
        .text()
        .await
        .expect("html");
    assert!(
        second.contains("evt_many_0<"),
        "found further back: {second}"
    );
    // The admin API fills its page whatever it takes.
    let (status, api) = app
        .get_with_token("/admin/events?event_type=transaction.reversed", Some(TOKEN))
        .await;
    assert_eq!(status, 200);
    assert_eq!(api["events"][0]["event_id"], "evt_many_0");
}
