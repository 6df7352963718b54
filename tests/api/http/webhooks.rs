//! `POST /webhooks/fluid`: what is acknowledged, what is refused, and that refusals store nothing.

use std::sync::Arc;

use fluid_webhooks::{intake::signature, secret::Secret};
use serde_json::Value;

use crate::helpers::{Event, SECRET, spawn_app};

async fn json(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

#[tokio::test]
async fn signed_event_is_acknowledged_and_stored_with_its_delivery_headers() {
    let app = spawn_app().await;
    let body = Event::new("transaction.completed", "evt_ok_1", "FLU-OK-1").body();

    let response = app.post_signed(&body).await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        json(response).await,
        serde_json::json!({ "received": true })
    );
    let (event_type, delivery_id, amount): (String, Option<String>, String) = sqlx::query_as(
        "SELECT event_type, delivery_id, convert_from(raw_body, 'UTF8')::jsonb #>> '{data,transaction,amount}' \
         FROM webhook_events WHERE event_id = 'evt_ok_1'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("stored");
    assert_eq!(
        (event_type.as_str(), delivery_id.as_deref(), amount.as_str()),
        ("transaction.completed", Some("dlv_test"), "100.00")
    );
}

#[tokio::test]
async fn missing_or_wrong_signatures_get_401_and_store_nothing() {
    let app = spawn_app().await;
    let body = Event::new("transaction.completed", "evt_forged", "FLU-FORGED").body();
    let wrong_key = signature::sign(&Secret::new("not-the-secret"), body.as_bytes());
    let for_other_body = signature::sign(&Secret::new(SECRET), b"{}");

    let cases: [(&str, Vec<(&str, &str)>); 5] = [
        ("missing", vec![]),
        ("empty", vec![("x-fluid-signature", "")]),
        ("malformed", vec![("x-fluid-signature", "not-hex")]),
        ("wrong key", vec![("x-fluid-signature", wrong_key.as_str())]),
        (
            "other body",
            vec![("x-fluid-signature", for_other_body.as_str())],
        ),
    ];
    for (case, headers) in cases {
        let response = app.post_webhook(&body, &headers).await;
        assert_eq!(response.status(), 401, "{case}");
        let error = json(response).await;
        assert!(error["error"].is_string(), "{case}: {error}");
        assert!(
            !error.to_string().contains(SECRET),
            "{case}: the secret leaked"
        );
    }
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn a_tampered_body_is_refused() {
    let app = spawn_app().await;
    let body = Event::new("transaction.completed", "evt_tamper", "FLU-T").body();
    let sig = signature::sign(&Secret::new(SECRET), body.as_bytes());
    let tampered = body.replace("100.00", "900.00");

    let response = app
        .post_webhook(&tampered, &[("x-fluid-signature", sig.as_str())])
        .await;

    assert_eq!(response.status(), 401);
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn uppercase_and_prefixed_signatures_are_accepted() {
    let app = spawn_app().await;
    for (i, form) in ["upper", "prefixed"].into_iter().enumerate() {
        let id = format!("evt_form_{i}");
        let body = Event::new("transaction.pending", &id, "FLU-FORM").body();
        let sig = signature::sign(&Secret::new(SECRET), body.as_bytes());
        let header = if form == "upper" {
            sig.to_uppercase()
        } else {
            format!("sha256={sig}")
        };

        let response = app
            .post_webhook(&body, &[("X-Fluid-Signature", header.as_str())])
            .await;

        assert_eq!(response.status(), 200, "{form}");
        assert_eq!(app.stored(&id).await, 1, "{form}");
    }
}

#[tokio::test]
async fn signed_bodies_that_are_not_json_objects_get_400_json_errors() {
    let app = spawn_app().await;
    for body in [
        "not json",
        "{\"event_id\":",
        "[1,2]",
        "\"text\"",
        r#"{"event_id":42}"#,
        r#"{"event_id":"evt_nul","x":"\u0000"}"#,
    ] {
        let response = app.post_signed(body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error = json(response).await;
        assert_eq!(error["code"], "bad_request", "{body}");
    }
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn bodies_over_one_mebibyte_get_413() {
    let app = spawn_app().await;
    let body = format!(
        r#"{{"event_id":"evt_big","pad":"{}"}}"#,
        "x".repeat(1024 * 1024)
    );

    let response = app.post_signed(&body).await;

    assert_eq!(response.status(), 413);
    assert_eq!(json(response).await["code"], "payload_too_large");
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn other_methods_get_405_and_unknown_routes_404_as_json() {
    let app = spawn_app().await;
    let url = format!("{}/webhooks/fluid", app.address);

    for response in [
        app.client.get(&url).send().await,
        app.client.put(&url).send().await,
    ] {
        let response = response.expect("sent");
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "POST");
        assert_eq!(json(response).await["code"], "method_not_allowed");
    }
    for (path, code) in [("webhooks/nope", "unknown_provider"), ("nope", "not_found")] {
        let response = app
            .client
            .post(format!("{}/{path}", app.address))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(json(response).await["code"], code, "{path}");
    }
}

#[tokio::test]
async fn duplicate_delivery_is_acknowledged_and_stored_once() {
    let app = spawn_app().await;
    let body = Event::new("transaction.completed", "evt_dup", "FLU-DUP").body();

    for _ in 0..3 {
        assert_eq!(app.post_signed(&body).await.status(), 200);
    }

    assert_eq!(app.stored("evt_dup").await, 1);
    app.wait_until_processed().await;
    let (status, outcome, attempts, _) = app.event_state("evt_dup").await;
    assert_eq!(
        (status.as_str(), outcome.as_deref(), attempts),
        ("processed", Some("applied"), 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_concurrent_duplicates_are_all_acknowledged_and_applied_once() {
    let app = Arc::new(spawn_app().await);
    let body = Arc::new(Event::new("transaction.completed", "evt_storm", "FLU-STORM").body());

    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (app, body) = (app.clone(), body.clone());
            tokio::spawn(async move { app.post_signed(&body).await.status() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("joined"), 200);
    }

    assert_eq!(app.stored("evt_storm").await, 1);
    app.wait_until_processed().await;
    let (status, outcome, attempts, _) = app.event_state("evt_storm").await;
    assert_eq!(
        (status.as_str(), outcome.as_deref(), attempts),
        ("processed", Some("applied"), 1)
    );
    let transactions: i64 = sqlx::query_scalar("SELECT count(*) FROM transactions")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(transactions, 1);
}

#[tokio::test]
async fn a_body_without_event_id_is_keyed_by_its_hash() {
    let app = spawn_app().await;
    let body = r#"{"event":"settlement.created","data":{"id":"st_1"}}"#;

    assert_eq!(app.post_signed(body).await.status(), 200);
    assert_eq!(app.post_signed(body).await.status(), 200);

    let key = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes()))
    );
    assert_eq!(app.stored(&key).await, 1);
    assert_eq!(app.event_count().await, 1);
}

#[tokio::test]
async fn unknown_event_types_are_stored_acknowledged_and_ignored() {
    let app = spawn_app().await;
    let body = r#"{"event":"settlement.completed","event_id":"evt_settle","data":{"transaction":{"reference":"FLU-SET"}}}"#;

    assert_eq!(app.post_signed(body).await.status(), 200);

    app.wait_until_processed().await;
    let (status, outcome, _, _) = app.event_state("evt_settle").await;
    assert_eq!((status.as_str(), outcome), ("ignored", None));
    assert_eq!(
        app.status_of("FLU-SET").await,
        None,
        "no transaction is touched"
    );
}

#[tokio::test]
async fn health_and_readiness_answer_when_the_database_is_up() {
    let app = spawn_app().await;
    for path in ["healthz", "readyz"] {
        let response = app.get(&format!("/{path}")).await;
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn during_a_key_rotation_the_previous_secret_is_still_accepted() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.secret = Secret::new("the-new-secret");
        s.previous_secret = Some(Secret::new(SECRET));
    })
    .await;
    let body = Event::new("transaction.completed", "evt_rotated", "FLU-ROT").body();
    let with = |key: &str| signature::sign(&Secret::new(key), body.as_bytes());

    for key in ["the-new-secret", SECRET] {
        let response = app
            .post_webhook(&body, &[("x-fluid-signature", with(key).as_str())])
            .await;
        assert_eq!(response.status(), 200, "signed with {key}");
    }
    let retired = app
        .post_webhook(
            &body,
            &[("x-fluid-signature", with("a-retired-secret").as_str())],
        )
        .await;
    assert_eq!(retired.status(), 401);
    assert_eq!(app.stored("evt_rotated").await, 1);
}

#[tokio::test]
async fn hostile_inputs_get_4xx_and_change_nothing() {
    let app = spawn_app().await;
    let body = Event::new("transaction.completed", "evt_hostile", "FLU-H").body();
    let sign = |b: &str| signature::sign(&Secret::new(SECRET), b.as_bytes());
    let client = reqwest::Client::new();
    let url = format!("{}/webhooks/fluid", app.address);

    // A non-UTF-8 signature header.
    let raw =
        reqwest::header::HeaderValue::from_bytes(b"\xff\xfe\xc3\x28").expect("obs-text is allowed");
    let response = client
        .post(&url)
        .header("x-fluid-signature", raw)
        .body(body.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 401);
    // An absurd, non-UTF-8 delivery timestamp (unsigned, only kept) does not disturb a valid delivery.
    let response = client
        .post(&url)
        .header("x-fluid-signature", sign(&body))
        .header(
            "x-fluid-timestamp",
            reqwest::header::HeaderValue::from_bytes(b"99999999999999999999\xff").expect("bytes"),
        )
        .body(body.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    // Deeply nested JSON, signed.
    let deep = format!(
        r#"{{"event_id":"evt_deep","x":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert_eq!(app.post_signed(&deep).await.status(), 400);
    // A number no float holds is still JSON: stored as sent (and never applied: no event type).
    let absurd = r#"{"event_id":"evt_num","timestamp":"99999-99-99T99:99:99Z","n":1e999999}"#;
    assert_eq!(app.post_signed(absurd).await.status(), 200);
    // A huge string, signed.
    let huge = format!(
        r#"{{"event_id":"evt_huge","x":"{}"}}"#,
        "y".repeat(2 * 1024 * 1024)
    );
    assert_eq!(app.post_signed(&huge).await.status(), 413);

    assert_eq!(
        app.event_count().await,
        2,
        "only the valid deliveries are stored"
    );
}
