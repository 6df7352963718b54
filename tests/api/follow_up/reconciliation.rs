//! Reconciliation by polling FLUID's API, against a real local HTTP server standing in for it:
//! a transaction left non-final is polled with the API key, the answer goes through the same
//! rules as a webhook and is recorded as coming from a poll; errors, timeouts and 429 are retried
//! with backoff and `Retry-After`; polling stops after `max_attempts`; the rate is shared.

use std::time::{Duration, Instant};

use fluid_webhooks::{app::config::Settings, secret::Secret};

use crate::{
    helpers::{
        Event, TestApp, eventually, sample, spawn_app_on, spawn_app_with, test_database,
        wait_until_on,
    },
    stand_in::{Reply, StandIn},
};

const API_KEY: &str = "test_sk_reconciliation";
const ADMIN_TOKEN: &str = "admin-token-for-reconciliation";

async fn admin(app: &TestApp, path: &str) -> serde_json::Value {
    let (status, body) = app.get_with_token(path, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{path}");
    body
}

/// FLUID's documented answer for a debit request.
fn answer(reference: &str, status: &str, timestamp: &str) -> String {
    format!(
        r#"{{"success":true,"data":{{"reference":"{reference}","status":"{status}","response":{{"uuid":"u-1","status":"{status}","timestamp":"{timestamp}","reference":"{reference}","processed_at":"2026-01-28T10:30:30Z","completed_at":null,"bank_reference":"BNK1","approval_method":"ussd","error_message":null}}}},"meta":{{"timestamp":"{timestamp}","request_id":"req_1","api_version":"v1"}}}}"#
    )
}

/// Polling on, against `fluid`, fast: due at once, short backoff.
fn polling(fluid: &StandIn) -> impl Fn(&mut Settings) + Clone {
    let base_url = reqwest::Url::parse(&format!("{}/api/v1", fluid.url)).expect("URL");
    move |s: &mut Settings| {
        s.fluid_api_key = Some(Secret::new(API_KEY));
        s.admin_token = Some(Secret::new(ADMIN_TOKEN));
        let r = &mut s.reconciliation;
        r.base_url = base_url.clone();
        r.after_secs = 0;
        r.interval_ms = 50;
        r.retry_base_ms = 100;
        r.retry_max_ms = 400;
        r.timeout_ms = 500;
    }
}

#[tokio::test]
async fn a_transaction_left_pending_is_polled_and_settled_through_the_rules() {
    let fluid = StandIn::start(|_, _| {
        Reply::json(200, answer("FLU-R1", "completed", "2026-01-28T10:31:00Z"))
    })
    .await;
    let app = spawn_app_with(polling(&fluid)).await;
    wait_until_on(&app.pool, "reconciliation_budget").await;
    app.deliver(&[Event::new("transaction.pending", "evt_r1", "FLU-R1").at(1)])
        .await;

    eventually("the poll's answer applied", async || {
        app.status_of("FLU-R1").await.as_deref() == Some("completed")
    })
    .await;
    let request = &fluid.seen()[0];
    assert_eq!(
        request.uri.path(),
        "/api/v1/payment-providers/debit-requests/FLU-R1"
    );
    assert_eq!(request.header("authorization"), format!("Bearer {API_KEY}"));
    assert_eq!(request.header("accept"), "application/json");

    let (event_id, source, outcome): (String, String, Option<String>) = sqlx::query_as(
        "SELECT event_id, source, outcome FROM webhook_events WHERE source = 'poll'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("the answer is stored as an event");
    assert_eq!(
        (event_id.as_str(), source.as_str(), outcome.as_deref()),
        (
            "poll:FLU-R1:completed:2026-01-28T10:31:00Z",
            "poll",
            Some("applied")
        )
    );
    let (last_event_id, delivery_id): (String, Option<String>) = sqlx::query_as(
        "SELECT t.last_event_id, e.delivery_id FROM transactions t \
         JOIN webhook_events e ON e.event_id = t.last_event_id WHERE t.reference = 'FLU-R1'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("row");
    assert_eq!(
        (last_event_id.as_str(), delivery_id.as_deref()),
        (event_id.as_str(), Some("req_1"))
    );
    let watched: i64 = sqlx::query_scalar("SELECT count(*) FROM reconciliation")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(watched, 0, "a final transaction is no longer watched");

    let metrics = app.get("/metrics").await.text().await.expect("text");
    assert!(
        sample(
            &metrics,
            r#"fluid_webhooks_reconciliation_polls_total{outcome="changed"}"#
        ) >= 1.0
    );

    let polled = admin(&app, "/admin/events?source=poll").await;
    assert_eq!(polled["events"].as_array().map(Vec::len), Some(1));
    assert_eq!(polled["events"][0]["source"], "poll");
    let found = admin(&app, "/admin/transactions?reference=FLU-R1").await;
    let found = &found["transactions"][0];
    let events: Vec<(&str, &str)> = found["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["event_id"].as_str().unwrap_or("-"),
                e["source"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        events,
        [("evt_r1", "webhook"), (event_id.as_str(), "poll")],
        "the transaction's events say which came from a poll"
    );
    assert!(found["reconciliation"].is_null(), "no longer watched");
}

#[tokio::test]
async fn errors_timeouts_and_429_are_retried_and_retry_after_is_honoured() {
    let fluid = StandIn::start(|n, _| match n {
        0 => Reply::json(
            500,
            r#"{"success":false,"error":{"code":1000,"message":"oops"}}"#,
        ),
        1 => Reply::json(200, answer("FLU-R2", "completed", "2026-01-28T10:31:00Z"))
            .after(Duration::from_secs(3)),
        2 => Reply::json(
            404,
            r#"{"success":false,"error":{"code":3001,"message":"not found"}}"#,
        ),
        3 => Reply::json(429, r#"{"success":false}"#).header("retry-after", "1"),
        _ => Reply::json(200, answer("FLU-R2", "completed", "2026-01-28T10:31:00Z")),
    })
    .await;
    let app = spawn_app_with(polling(&fluid)).await;
    wait_until_on(&app.pool, "reconciliation_budget").await;
    app.deliver(&[Event::new("transaction.processing", "evt_r2", "FLU-R2").at(1)])
        .await;

    eventually("the poll's answer applied", async || {
        app.status_of("FLU-R2").await.as_deref() == Some("completed")
    })
    .await;
    let seen = fluid.seen();
    assert_eq!(seen.len(), 5, "500, timeout, 404, 429, then the answer");
    let waited = seen[4].at - seen[3].at;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 was honoured (waited {waited:?})"
    );
    let metrics = app.get("/metrics").await.text().await.expect("text");
    for outcome in ["error", "timeout", "not_found", "rate_limited", "changed"] {
        let name = format!(r#"fluid_webhooks_reconciliation_polls_total{{outcome="{outcome}"}}"#);
        assert!(sample(&metrics, &name) >= 1.0, "{name}");
    }
    // Every poll is kept for the console's timeline, with FLUID's answer, in order.
    let polls: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT outcome, status FROM reconciliation_polls WHERE reference = 'FLU-R2' ORDER BY polled_at",
    )
    .fetch_all(&app.pool)
    .await
    .expect("polls");
    let outcomes: Vec<&str> = polls.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(
        outcomes,
        ["error", "timeout", "not_found", "rate_limited", "changed"]
    );
    assert_eq!(polls[4].1.as_deref(), Some("completed"));
}

#[tokio::test]
async fn a_backward_answer_changes_nothing_and_polling_stops_after_max_attempts() {
    // FLUID keeps saying "pending" while our webhooks already said "processing".
    let fluid = StandIn::start(|_, _| {
        Reply::json(200, answer("FLU-R3", "pending", "2026-01-28T10:31:00Z"))
    })
    .await;
    let settings = polling(&fluid);
    let app = spawn_app_with(move |s| {
        settings(s);
        s.reconciliation.max_attempts = 3;
    })
    .await;
    wait_until_on(&app.pool, "reconciliation_budget").await;
    app.deliver(&[Event::new("transaction.processing", "evt_r3", "FLU-R3").at(10)])
        .await;

    eventually("polling given up", async || {
        sqlx::query_scalar::<_, bool>(
            "SELECT coalesce(next_poll_at = 'infinity', false) FROM reconciliation WHERE reference = 'FLU-R3'",
        )
        .fetch_optional(&app.pool)
        .await
        .expect("query")
        == Some(true)
    })
    .await;
    app.wait_until_processed().await;
    // Given up is `next_poll_at = infinity`, written with the last poll's answer: no claim can
    // take it again, so the polls FLUID saw by now are all there will be.
    let seen = fluid.seen();
    assert_eq!(seen.len(), 3, "max_attempts polls, then none");
    let peers: std::collections::HashSet<_> = seen.iter().map(|s| s.peer).collect();
    assert_eq!(peers.len(), 1, "one connection, reused");

    assert_eq!(app.status_of("FLU-R3").await.as_deref(), Some("processing"));
    let polled: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT status, outcome FROM webhook_events WHERE source = 'poll'")
            .fetch_all(&app.pool)
            .await
            .expect("rows");
    assert_eq!(
        polled,
        [("processed".to_string(), Some("refused".to_string()))],
        "the same answer is stored once, and the rules refuse a move backwards"
    );
    let (polls, outcome): (i32, Option<String>) =
        sqlx::query_as("SELECT polls, last_outcome FROM reconciliation WHERE reference = 'FLU-R3'")
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert_eq!((polls, outcome.as_deref()), (3, Some("changed")));
    let found = admin(&app, "/admin/transactions?reference=FLU-R3").await;
    let polling = &found["transactions"][0]["reconciliation"];
    assert_eq!(
        (polling["polls"].as_i64(), polling["next_poll_at"].as_str()),
        (Some(3), Some("infinity")),
        "the admin API shows that polling gave up"
    );
}

#[tokio::test]
async fn without_an_api_key_nothing_is_polled() {
    let fluid = StandIn::start(|_, _| Reply::json(500, "{}")).await;
    let settings = polling(&fluid);
    let app = spawn_app_with(move |s| {
        settings(s);
        s.fluid_api_key = None;
    })
    .await;
    app.deliver(&[Event::new("transaction.pending", "evt_r4", "FLU-R4").at(1)])
        .await;
    // No poller started: polling was never turned on in the database, so nothing is watched and
    // no replica could claim a poll (rather than waiting to see none happen).
    let (budgets, watched): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM reconciliation_budget), (SELECT count(*) FROM reconciliation)",
    )
    .fetch_one(&app.pool)
    .await
    .expect("counts");
    assert_eq!((budgets, watched), (0, 0));
    assert!(fluid.seen().is_empty());
}

#[tokio::test]
async fn replicas_share_one_rate_limit() {
    let fluid = StandIn::start(|_, request| {
        let reference = request
            .uri
            .path()
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string();
        Reply::json(200, answer(&reference, "pending", "2026-01-28T10:30:01Z"))
    })
    .await;
    let settings = polling(&fluid);
    let limited = move |s: &mut Settings| {
        settings(s);
        s.reconciliation.rate_per_minute = 60;
        s.reconciliation.burst = 2;
    };
    let database = test_database().await;
    let first = spawn_app_on(database.clone(), limited.clone()).await;
    let _second = spawn_app_on(database, limited).await;
    wait_until_on(&first.pool, "reconciliation_budget").await;
    let started = Instant::now();
    for n in 0..8 {
        let (id, reference) = (format!("evt_rl{n}"), format!("FLU-RL{n}"));
        first
            .deliver(&[Event::new("transaction.pending", &id, &reference).at(1)])
            .await;
    }
    // Wait until every transaction has been polled: with one budget that takes the burst (2) and
    // then a second a poll; two budgets would get there in half the time, over the bound below.
    eventually("every transaction polled once", async || {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM reconciliation WHERE polls = 0")
            .fetch_one(&first.pool)
            .await
            .expect("count")
            == 0
    })
    .await;
    // The bound grows with the time taken, so a slow machine only loosens it.
    let allowed = 2.0 + started.elapsed().as_secs_f64() + 1.0;
    let polled = fluid.seen().len() as f64;
    assert!(
        polled >= 8.0 && polled <= allowed,
        "two replicas polled {polled} times; the shared budget allows {allowed:.1}"
    );
}

#[tokio::test]
async fn transactions_stored_before_polling_was_turned_on_are_polled() {
    let fluid =
        StandIn::start(|_, _| Reply::json(200, answer("FLU-R5", "failed", "2026-01-28T10:31:00Z")))
            .await;
    let settings = polling(&fluid);
    let database = test_database().await;
    let without_key = spawn_app_on(database.clone(), |s| s.fluid_api_key = None).await;
    without_key
        .deliver(&[Event::new("transaction.pending", "evt_r5", "FLU-R5").at(1)])
        .await;
    without_key.stop().await.expect("stopped");

    let app = spawn_app_on(database, settings).await;
    eventually("the earlier transaction polled and settled", async || {
        app.status_of("FLU-R5").await.as_deref() == Some("failed")
    })
    .await;
    assert_eq!(fluid.seen().len(), 1);
}

#[tokio::test]
async fn a_poll_claimed_by_a_replica_that_died_is_taken_over_when_its_lease_ends() {
    let fluid = StandIn::start(|_, _| {
        Reply::json(200, answer("FLU-R6", "completed", "2026-01-28T10:31:00Z"))
    })
    .await;
    let settings = polling(&fluid);
    let app = spawn_app_with(move |s| {
        settings(s);
        s.reconciliation.after_secs = 3600; // only the leased row below is due
    })
    .await;
    wait_until_on(&app.pool, "reconciliation_budget").await;
    app.deliver(&[Event::new("transaction.pending", "evt_r6", "FLU-R6").at(1)])
        .await;

    // What a replica's claim leaves behind when the replica dies before it records the answer:
    // a lease (next_poll_at in the future) and no lock.
    let leased_at = Instant::now();
    let leased = sqlx::query(
        "UPDATE reconciliation SET next_poll_at = now() + interval '2 seconds', polls = 1 \
         WHERE reference = 'FLU-R6'",
    )
    .execute(&app.pool)
    .await
    .expect("lease")
    .rows_affected();
    assert_eq!(leased, 1, "the pending transaction is watched");

    eventually(
        "the leased transaction polled by the live replica",
        async || app.status_of("FLU-R6").await.as_deref() == Some("completed"),
    )
    .await;
    let polled_after = fluid.seen()[0].at - leased_at;
    assert!(
        polled_after >= Duration::from_millis(1900),
        "not polled before the lease ended (polled after {polled_after:?})"
    );
    assert_eq!(fluid.seen().len(), 1);
}

#[tokio::test]
async fn an_expected_debit_that_no_webhook_reaches_ends_completed_from_a_poll() {
    let fluid = StandIn::start(|_, _| {
        Reply::json(
            200,
            answer("FLU-EXPECTED", "completed", "2026-01-28T10:31:00Z"),
        )
    })
    .await;
    let app = spawn_app_with(polling(&fluid)).await;
    wait_until_on(&app.pool, "reconciliation_budget").await;
    let (status, body) = app
        .post_json_with_token(
            "/admin/transactions",
            ADMIN_TOKEN,
            &serde_json::json!({"reference": "FLU-EXPECTED", "partner_reference": "order_77", "amount": "75.00"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    eventually(
        "the expected debit settled from FLUID's answer",
        async || app.status_of("FLU-EXPECTED").await.as_deref() == Some("completed"),
    )
    .await;
    assert_eq!(
        fluid.seen()[0].uri.path(),
        "/api/v1/payment-providers/debit-requests/FLU-EXPECTED"
    );
    let sources: Vec<String> = sqlx::query_scalar("SELECT source FROM webhook_events")
        .fetch_all(&app.pool)
        .await
        .expect("events");
    assert_eq!(sources, ["poll"], "no webhook ever arrived");
    let found = admin(&app, "/admin/transactions?partner_reference=order_77").await;
    let transaction = &found["transactions"][0]["transaction"];
    assert_eq!(
        (
            transaction["expected_amount"].as_str(),
            transaction["amount_mismatch"].as_bool()
        ),
        (Some("75.00"), Some(false))
    );
}
