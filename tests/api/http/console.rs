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
