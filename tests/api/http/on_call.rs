//! What the engineer on call reads from the admin API: JSON errors for every mistake (the token
//! checked before any routing), dead letters shown with the transaction they explain, money digit
//! for digit, and replays that say how they ended.

use fluid_webhooks::secret::Secret;
use serde_json::{Value, json};

use crate::helpers::{Event, TestApp, spawn_app_with};

const TOKEN: &str = "on-call-token";

async fn app() -> TestApp {
    spawn_app_with(|s| s.admin_token = Some(Secret::new(TOKEN))).await
}

/// `method path` with an optional token: (status, content type, JSON body or null).
async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = app.client.request(method, format!("{}{path}", app.address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("sent");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = response.text().await.expect("body");
    (
        status,
        content_type,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn every_admin_error_is_json_and_the_token_is_checked_before_any_routing() {
    let app = app().await;
    // Anonymous or wrong token: 401 whatever the path or method, so nothing tells which exist.
    for (method, path) in [
        ("GET", "/admin/nope"),
        ("DELETE", "/admin/events"),
        ("POST", "/admin/stats"),
        ("GET", "/admin"),
    ] {
        for token in [None, Some("wrong")] {
            let (status, content_type, body) = call(&app, method, path, token).await;
            assert_eq!(
                (status, content_type.as_str(), body["code"].as_str()),
                (401, "application/json", Some("unauthorized")),
                "{method} {path} with {token:?}"
            );
        }
    }
    let token = Some(TOKEN);
    for (method, path, want, code) in [
        ("GET", "/admin/events?until=", 400, "bad_request"),
        ("GET", "/admin/stats?until=", 400, "bad_request"),
        ("GET", "/admin/events?limit=many", 400, "bad_request"),
        ("GET", "/admin/events?status=bogus", 400, "bad_request"),
        ("GET", "/admin/events?source=email", 400, "bad_request"),
        ("GET", "/admin/events/fluid/evt_nope", 404, "no_such_event"),
        (
            "POST",
            "/admin/events/fluid/evt_nope/replay",
            404,
            "no_such_event",
        ),
        (
            "GET",
            "/admin/transactions?reference=FLU-NONE",
            404,
            "no_such_transaction",
        ),
        ("GET", "/admin/nope", 404, "not_found"),
        ("DELETE", "/admin/events", 405, "method_not_allowed"),
        ("POST", "/admin/transactions", 400, "bad_request"),
    ] {
        let (status, content_type, body) = call(&app, method, path, token).await;
        assert_eq!(
            (status, content_type.as_str(), body["code"].as_str()),
            (want, "application/json", Some(code)),
            "{method} {path}: {body}"
        );
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
    let (_, _, body) = call(&app, "GET", "/admin/events?status=bogus", token).await;
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("pending, processed, ignored, dead")),
        "the accepted statuses are named: {body}"
    );
    let (_, _, body) = call(&app, "GET", "/admin/events?until=", token).await;
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("until")),
        "the bad parameter is named: {body}"
    );
}

/// A FLUID body for order_900 with `amount` written as given.
fn order_900(event_id: &str, event: &str, reference: &str, amount: &str) -> String {
    let status = event.trim_start_matches("transaction.");
    format!(
        r#"{{"event":"{event}","event_id":"{event_id}","timestamp":"2026-01-28T10:31:00Z","data":{{"transaction":{{"reference":"{reference}","partner_reference":"order_900","status":"{status}","amount":{amount},"currency":"GHS"}}}}}}"#
    )
}

#[tokio::test]
async fn a_dead_letter_shows_with_the_order_it_explains() {
    let app = app().await;
    let pending = order_900(
        "evt_900_pending",
        "transaction.pending",
        "FLU-900",
        "1000.00",
    );
    let unreadable = order_900(
        "evt_900_comma",
        "transaction.completed",
        "FLU-900",
        r#""1,000.00""#,
    );
    let nameless = order_900("evt_900_noref", "transaction.completed", "", "1000.00");
    for body in [&pending, &unreadable, &nameless] {
        assert_eq!(app.post_signed(body).await.status(), 200);
    }
    app.wait_until_processed().await;

    let (status, _, found) = call(
        &app,
        "GET",
        "/admin/transactions?partner_reference=order_900",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    let first = &found["transactions"][0];
    assert_eq!(first["transaction"]["status"], "pending");
    let events: Vec<(&str, &str)> = first["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["event_id"].as_str().unwrap_or(""),
                e["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("evt_900_pending", "processed"),
            ("evt_900_comma", "dead"),
            ("evt_900_noref", "dead")
        ],
        "{found}"
    );
    let comma = &first["events"][1];
    assert_eq!(comma["reference"], "FLU-900");
    assert!(
        comma["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("1,000.00")),
        "the reason is shown: {comma}"
    );
    assert_eq!(first["events"][2]["partner_reference"], "order_900");

    // A dead letter that names a transaction never created still answers the question.
    let orphan = order_900("evt_901", "transaction.completed", "FLU-901", r#""n/a""#);
    assert_eq!(app.post_signed(&orphan).await.status(), 200);
    app.wait_until_processed().await;
    let (status, _, found) = call(
        &app,
        "GET",
        "/admin/transactions?reference=FLU-901",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["transactions"], json!([]));
    assert_eq!(found["events"][0]["event_id"], "evt_901");
    assert_eq!(found["events"][0]["status"], "dead");
}

#[tokio::test]
async fn money_comes_out_digit_for_digit_as_stored() {
    let app = app().await;
    let event = Event {
        amount: "12345678901234567.89",
        ..Event::new("transaction.completed", "evt_big", "FLU-BIG")
    };
    assert_eq!(app.post_signed(&event.body()).await.status(), 200);
    app.wait_until_processed().await;

    let text = app
        .client
        .get(format!("{}/admin/events/fluid/evt_big", app.address))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("body");
    for exact in [r#""amount":12345678901234567.89"#, r#""fee":1.50"#] {
        assert!(text.contains(exact), "{exact} in the payload:\n{text}");
    }
    let (_, _, found) = call(
        &app,
        "GET",
        "/admin/transactions?reference=FLU-BIG",
        Some(TOKEN),
    )
    .await;
    let transaction = &found["transactions"][0]["transaction"];
    assert_eq!(
        (transaction["amount"].as_str(), transaction["fee"].as_str()),
        (Some("12345678901234567.89"), Some("1.50"))
    );
}

#[tokio::test]
async fn a_replay_says_how_it_ended_and_attempts_count_the_history() {
    let app = app().await;
    let completed = Event::new("transaction.completed", "evt_r_done", "FLU-R").at(5);
    let earlier = Event::new("transaction.pending", "evt_r_early", "FLU-R").at(1);
    let later_pending = Event::new("transaction.pending", "evt_r_late", "FLU-R").at(8);
    let broken = order_900("evt_r_dead", "transaction.completed", "FLU-R", r#""x""#);
    app.deliver(&[completed]).await;
    app.wait_until_processed().await;
    app.deliver(&[earlier, later_pending]).await;
    assert_eq!(app.post_signed(&broken).await.status(), 200);
    app.wait_until_processed().await;

    for (event_id, status, outcome, reason) in [
        ("evt_r_done", "processed", "unchanged", None),
        ("evt_r_early", "processed", "stale", Some("not newer")),
        ("evt_r_late", "processed", "refused", Some("completed")),
        ("evt_r_dead", "dead", "dead", Some("invalid payload")),
    ] {
        let (code, _, replay) = call(
            &app,
            "POST",
            &format!("/admin/events/fluid/{event_id}/replay"),
            Some(TOKEN),
        )
        .await;
        assert_eq!(code, 200, "{replay}");
        assert_eq!(
            (replay["status"].as_str(), replay["outcome"].as_str()),
            (Some(status), Some(outcome)),
            "{event_id}: {replay}"
        );
        match reason {
            Some(words) => assert!(
                replay["reason"].as_str().is_some_and(|r| r.contains(words)),
                "{event_id}: {replay}"
            ),
            None => assert!(replay["reason"].is_null(), "{event_id}: {replay}"),
        }
        let (_, _, one) = call(
            &app,
            "GET",
            &format!("/admin/events/fluid/{event_id}"),
            Some(TOKEN),
        )
        .await;
        let history = one["history"].as_array().map(Vec::len).unwrap_or(0);
        assert_eq!(history, 2, "{event_id}: one attempt, one replay: {one}");
        assert_eq!(one["event"]["attempts"], history, "{event_id}: {one}");
    }
    assert_eq!(app.status_of("FLU-R").await.as_deref(), Some("completed"));

    let (_, _, listed) = call(
        &app,
        "GET",
        "/admin/events?event_type=transaction.pending",
        Some(TOKEN),
    )
    .await;
    let timestamps: Vec<&str> = listed["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["timestamp"].as_str())
        .collect();
    assert_eq!(
        timestamps,
        ["2026-01-28T10:30:08Z", "2026-01-28T10:30:01Z"],
        "the events' own times, newest first: {listed}"
    );
}
