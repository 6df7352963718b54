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
