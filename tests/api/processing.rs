//! The worker: stored events reach `transactions` through the state rules, once, also with
//! several workers and replicas, after a worker died mid-claim, and with retries on failure.

use std::sync::Arc;

use sqlx::{Connection, PgConnection};

use crate::helpers::{
    Event, spawn_app, spawn_app_on, spawn_app_with, test_database, wait_until_processed,
};

#[tokio::test]
async fn a_completed_event_creates_the_transaction_with_its_exact_amount() {
    let app = spawn_app().await;
    let event = Event {
        amount: "1234.50",
        ..Event::new("transaction.completed", "evt_c1", "FLU-C1")
    };

    app.deliver(&[event]).await;

    let row: (String, String, String, String, String, String, String) = sqlx::query_as(
        "SELECT status, amount::text, fee::text, currency, partner_reference, last_event_id, \
         to_char(last_event_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') FROM transactions WHERE reference = 'FLU-C1'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("transaction");
    assert_eq!(
        row,
        (
            "completed".into(),
            "1234.50".into(),
            "1.50".into(),
            "GHS".into(),
            "order_FLU-C1".into(),
            "evt_c1".into(),
            "2026-01-28T10:30:00".into()
        )
    );
}

#[tokio::test]
async fn a_failed_event_keeps_the_error_details() {
    let app = spawn_app().await;

    app.deliver(&[Event::new("transaction.failed", "evt_f1", "FLU-F1")])
        .await;

    let code: i32 = sqlx::query_scalar(
        "SELECT (error_details->>'code')::int FROM transactions WHERE reference = 'FLU-F1'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("details");
    assert_eq!(code, 3009);
}

#[tokio::test]
async fn the_lifecycle_moves_forward_event_by_event() {
    let app = spawn_app().await;
    let steps = ["created", "pending", "processing", "completed"];
    for (i, step) in steps.iter().enumerate() {
        let (event, id) = (format!("transaction.{step}"), format!("evt_life_{i}"));
        app.deliver(&[Event::new(&event, &id, "FLU-LIFE").at(i as u32)])
            .await;
        assert_eq!(app.status_of("FLU-LIFE").await.as_deref(), Some(*step));
    }
}

#[tokio::test]
async fn an_older_event_is_stored_but_does_not_change_the_status() {
    let app = spawn_app().await;

    app.deliver(&[Event::new("transaction.completed", "evt_new", "FLU-OOO").at(20)])
        .await;
    app.deliver(&[Event::new("transaction.processing", "evt_old", "FLU-OOO").at(10)])
        .await;

    assert_eq!(app.status_of("FLU-OOO").await.as_deref(), Some("completed"));
    let (status, outcome, _, _) = app.event_state("evt_old").await;
    assert_eq!(
        (status.as_str(), outcome.as_deref()),
        ("processed", Some("stale"))
    );
}

#[tokio::test]
async fn reversed_is_final_and_completed_never_goes_back() {
    let app = spawn_app().await;

    app.deliver(&[Event::new("transaction.completed", "evt_r1", "FLU-REV").at(1)])
        .await;
    app.deliver(&[Event::new("transaction.failed", "evt_r2", "FLU-REV").at(2)])
        .await;
    assert_eq!(app.status_of("FLU-REV").await.as_deref(), Some("completed"));
    assert_eq!(
        app.event_state("evt_r2").await.1.as_deref(),
        Some("refused")
    );

    app.deliver(&[Event::new("transaction.reversed", "evt_r3", "FLU-REV").at(3)])
        .await;
    app.deliver(&[Event::new("transaction.completed", "evt_r4", "FLU-REV").at(4)])
        .await;
    assert_eq!(app.status_of("FLU-REV").await.as_deref(), Some("reversed"));
    assert_eq!(
        app.event_state("evt_r4").await.1.as_deref(),
        Some("refused")
    );
}

#[tokio::test]
async fn the_database_itself_refuses_to_move_a_transaction_out_of_reversed() {
    let app = spawn_app().await;
    app.deliver(&[Event::new("transaction.reversed", "evt_db1", "FLU-DBG")])
        .await;

    let result =
        sqlx::query("UPDATE transactions SET status = 'completed' WHERE reference = 'FLU-DBG'")
            .execute(&app.pool)
            .await;

    assert!(result.is_err(), "the guard trigger must refuse");
    assert_eq!(app.status_of("FLU-DBG").await.as_deref(), Some("reversed"));
}

#[tokio::test]
async fn a_failed_debit_is_retried_only_by_a_newer_event() {
    let app = spawn_app().await;

    app.deliver(&[Event::new("transaction.failed", "evt_fr1", "FLU-RETRY").at(10)])
        .await;
    app.deliver(&[Event::new("transaction.pending", "evt_fr2", "FLU-RETRY").at(10)])
        .await;
    assert_eq!(
        app.status_of("FLU-RETRY").await.as_deref(),
        Some("failed"),
        "same instant: not a retry"
    );

    app.deliver(&[Event::new("transaction.pending", "evt_fr3", "FLU-RETRY").at(11)])
        .await;
    assert_eq!(app.status_of("FLU-RETRY").await.as_deref(), Some("pending"));
    app.deliver(&[Event::new("transaction.completed", "evt_fr4", "FLU-RETRY").at(12)])
        .await;
    assert_eq!(
        app.status_of("FLU-RETRY").await.as_deref(),
        Some("completed")
    );
}

#[tokio::test]
async fn events_delivered_out_of_order_in_one_burst_end_in_the_latest_state() {
    let app = spawn_app_with(|s| s.worker.enabled = false).await;
    // Stored first, applied later in one batch: the worker orders them by event time.
    for (id, event, second) in [
        ("evt_b3", "transaction.completed", 3),
        ("evt_b1", "transaction.pending", 1),
        ("evt_b2", "transaction.processing", 2),
    ] {
        assert_eq!(
            app.post_signed(&Event::new(event, id, "FLU-BURST").at(second).body())
                .await
                .status(),
            200
        );
    }
    let worker = spawn_app_on(app.database_url.clone(), |_| {}).await;

    wait_until_processed(&worker.pool).await;

    assert_eq!(
        worker.status_of("FLU-BURST").await.as_deref(),
        Some("completed")
    );
    for id in ["evt_b1", "evt_b2", "evt_b3"] {
        assert_eq!(
            worker.event_state(id).await.1.as_deref(),
            Some("applied"),
            "{id}"
        );
    }
    worker.stop().await.expect("stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_with_two_workers_each_apply_every_event_exactly_once() {
    let database = test_database().await;
    let tweak = |s: &mut fluid_webhooks::config::Settings| {
        s.worker.concurrency = 2;
        s.worker.batch_size = 7;
    };
    let a = Arc::new(spawn_app_on(database.clone(), tweak).await);
    let b = Arc::new(spawn_app_on(database, tweak).await);
    let steps = ["created", "pending", "processing", "completed"];

    let mut tasks = Vec::new();
    for t in 0..25 {
        for (s, step) in steps.iter().enumerate() {
            let app = if (t + s) % 2 == 0 {
                a.clone()
            } else {
                b.clone()
            };
            let (event, id, reference) = (
                format!("transaction.{step}"),
                format!("evt_{t}_{s}"),
                format!("FLU-R{t}"),
            );
            tasks.push(tokio::spawn(async move {
                let body = Event::new(&event, &id, &reference).at(s as u32).body();
                app.post_signed(&body).await.status()
            }));
        }
    }
    for task in tasks {
        assert_eq!(task.await.expect("joined"), 200);
    }
    a.wait_until_processed().await;

    let (events, once): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE attempts = 1 AND status = 'processed') FROM webhook_events")
            .fetch_one(&a.pool)
            .await
            .expect("counts");
    assert_eq!((events, once), (100, 100));
    let completed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM transactions WHERE status = 'completed'")
            .fetch_one(&a.pool)
            .await
            .expect("count");
    assert_eq!(
        completed, 25,
        "whatever the arrival order, the newest event wins"
    );
}

#[tokio::test]
async fn events_claimed_by_a_worker_that_died_are_applied_by_another() {
    let app = spawn_app_with(|s| s.worker.enabled = false).await;
    assert_eq!(
        app.post_signed(&Event::new("transaction.completed", "evt_orphan", "FLU-ORPHAN").body())
            .await
            .status(),
        200
    );
    // A "worker" claims the event the way the real one does, then its process dies mid-batch.
    let mut dying = PgConnection::connect(&app.database_url)
        .await
        .expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut dying)
        .await
        .expect("begin");
    let claimed: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM webhook_events WHERE status = 'pending' FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(&mut dying)
    .await
    .expect("claim");
    assert_eq!(claimed.len(), 1);
    let replica = spawn_app_on(app.database_url.clone(), |_| {}).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await; // several polls of its worker
    assert_eq!(
        replica.event_state("evt_orphan").await.0,
        "pending",
        "still claimed by the first worker"
    );

    drop(dying); // the connection closes as it would when its process is killed

    wait_until_processed(&replica.pool).await;
    assert_eq!(
        replica.status_of("FLU-ORPHAN").await.as_deref(),
        Some("completed")
    );
    assert_eq!(replica.event_state("evt_orphan").await.2, 1, "applied once");
}

#[tokio::test]
async fn a_failed_application_is_retried_with_backoff_and_its_error_recorded() {
    let app = spawn_app().await;
    // A database-side fault for one transaction: every write to it fails until it is removed.
    sqlx::raw_sql(
        "CREATE FUNCTION fail_flaky() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.reference = 'FLU-FLAKY' THEN RAISE EXCEPTION 'disk on fire'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER fail_flaky BEFORE INSERT ON transactions FOR EACH ROW EXECUTE FUNCTION fail_flaky();",
    )
    .execute(&app.pool)
    .await
    .expect("fault installed");

    assert_eq!(
        app.post_signed(&Event::new("transaction.completed", "evt_flaky", "FLU-FLAKY").body())
            .await
            .status(),
        200
    );
    assert_eq!(
        app.post_signed(&Event::new("transaction.completed", "evt_fine", "FLU-FINE").body())
            .await
            .status(),
        200
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (status, attempts, error) = loop {
        let (status, _, attempts, error) = app.event_state("evt_flaky").await;
        if attempts >= 2 {
            break (status, attempts, error);
        }
        assert!(std::time::Instant::now() < deadline, "no retry happened");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        status, "pending",
        "still to be retried after {attempts} attempts"
    );
    assert!(error.is_some_and(|e| e.contains("disk on fire")));
    assert_eq!(
        app.status_of("FLU-FINE").await.as_deref(),
        Some("completed"),
        "one failure does not block others"
    );

    sqlx::raw_sql("DROP TRIGGER fail_flaky ON transactions")
        .execute(&app.pool)
        .await
        .expect("fault removed");

    app.wait_until_processed().await;
    assert_eq!(
        app.status_of("FLU-FLAKY").await.as_deref(),
        Some("completed")
    );
    let (status, outcome, _, error) = app.event_state("evt_flaky").await;
    assert_eq!(
        (status.as_str(), outcome.as_deref(), error),
        ("processed", Some("applied"), None)
    );
}

#[tokio::test]
async fn an_event_that_keeps_failing_is_parked_as_dead_after_max_attempts() {
    let app = spawn_app_with(|s| s.worker.max_attempts = 2).await;
    sqlx::raw_sql(
        "CREATE FUNCTION fail_all() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'always'; END $$; \
         CREATE TRIGGER fail_all BEFORE INSERT ON transactions FOR EACH ROW EXECUTE FUNCTION fail_all();",
    )
    .execute(&app.pool)
    .await
    .expect("fault installed");

    assert_eq!(
        app.post_signed(&Event::new("transaction.completed", "evt_doomed", "FLU-DOOM").body())
            .await
            .status(),
        200
    );
    app.wait_until_processed().await;

    let (status, _, attempts, error) = app.event_state("evt_doomed").await;
    assert_eq!((status.as_str(), attempts), ("dead", 2));
    assert!(error.is_some_and(|e| e.contains("always")));
}

#[tokio::test]
async fn an_invalid_transaction_payload_is_stored_and_parked_dead_without_retries() {
    let app = spawn_app().await;
    let no_reference = r#"{"event":"transaction.completed","event_id":"evt_noref","data":{"transaction":{"amount":5}}}"#;
    let bad_amount = Event {
        amount: "\"lots\"",
        ..Event::new("transaction.completed", "evt_badamt", "FLU-BAD")
    }
    .body();

    assert_eq!(app.post_signed(no_reference).await.status(), 200);
    assert_eq!(app.post_signed(&bad_amount).await.status(), 200);
    app.wait_until_processed().await;

    for (id, expected) in [("evt_noref", "reference"), ("evt_badamt", "amount")] {
        let (status, _, attempts, error) = app.event_state(id).await;
        assert_eq!((status.as_str(), attempts), ("dead", 1), "{id}");
        assert!(
            error.as_deref().is_some_and(|e| e.contains(expected)),
            "{id}: {error:?}"
        );
    }
    assert_eq!(app.status_of("FLU-BAD").await, None);
}

#[tokio::test]
async fn retention_deletes_old_finished_events_in_batches_and_keeps_the_rest() {
    let app = spawn_app_with(|s| s.worker.enabled = false).await;
    sqlx::raw_sql(
        "INSERT INTO webhook_events (event_id, event_type, payload, status, received_at) VALUES \
           ('old_processed_1', 'transaction.completed', '{}', 'processed', now() - interval '100 days'), \
           ('old_processed_2', 'transaction.completed', '{}', 'processed', now() - interval '95 days'), \
           ('old_ignored', 'settlement.created', '{}', 'ignored', now() - interval '200 days'), \
           ('old_pending', 'transaction.completed', '{}', 'pending', now() - interval '100 days'), \
           ('old_dead', 'transaction.completed', '{}', 'dead', now() - interval '100 days'), \
           ('recent_processed', 'transaction.completed', '{}', 'processed', now() - interval '89 days'); \
         INSERT INTO transactions (reference, status, last_event_id, last_event_type, last_event_at) \
           VALUES ('FLU-KEPT', 'completed', 'old_processed_1', 'transaction.completed', now() - interval '100 days'); \
         INSERT INTO forwarding DEFAULT VALUES; \
         INSERT INTO transaction_changes (provider, reference, status, event_id, event_at, recorded_at, forwarded_at) VALUES \
           ('fluid', 'FLU-C', 'pending', 'old_forwarded', now(), now() - interval '100 days', now() - interval '100 days'), \
           ('fluid', 'FLU-C', 'completed', 'old_unforwarded', now(), now() - interval '100 days', NULL), \
           ('fluid', 'FLU-C', 'failed', 'recent_forwarded', now(), now() - interval '1 day', now());",
    )
    .execute(&app.pool)
    .await
    .expect("old rows");

    let purged = fluid_webhooks::retention::purge(
        &app.pool,
        90,
        2,
        &tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect("purge");

    assert_eq!(purged, 3 + 1, "batches of at most 2");
    let mut changes: Vec<String> = sqlx::query_scalar("SELECT event_id FROM transaction_changes")
        .fetch_all(&app.pool)
        .await
        .expect("ids");
    changes.sort();
    assert_eq!(
        changes,
        ["old_unforwarded", "recent_forwarded"],
        "an old change is purged once forwarded"
    );
    sqlx::query("DELETE FROM forwarding")
        .execute(&app.pool)
        .await
        .expect("forwarding off");
    let cancel = tokio_util::sync::CancellationToken::new();
    let purged = fluid_webhooks::retention::purge(&app.pool, 90, 2, &cancel)
        .await
        .expect("purge");
    assert_eq!(
        purged, 1,
        "with forwarding off, old changes go whether forwarded or not"
    );
    let mut left: Vec<String> = sqlx::query_scalar("SELECT event_id FROM webhook_events")
        .fetch_all(&app.pool)
        .await
        .expect("ids");
    left.sort();
    assert_eq!(left, ["old_dead", "old_pending", "recent_processed"]);
    assert_eq!(
        app.status_of("FLU-KEPT").await.as_deref(),
        Some("completed"),
        "transactions are kept"
    );
}

#[tokio::test]
async fn every_status_change_is_announced_on_the_transaction_status_channel() {
    let app = spawn_app().await;
    let mut listener = sqlx::postgres::PgListener::connect(&app.database_url)
        .await
        .expect("listener");
    listener.listen("transaction_status").await.expect("listen");

    app.deliver(&[Event::new("transaction.pending", "evt_n1", "FLU-NOTIFY").at(1)])
        .await;
    app.deliver(&[Event::new("transaction.pending", "evt_n2", "FLU-NOTIFY").at(2)])
        .await; // unchanged: silent
    app.deliver(&[Event::new("transaction.completed", "evt_n3", "FLU-NOTIFY").at(3)])
        .await;

    let mut heard = Vec::new();
    for _ in 0..2 {
        let notification =
            tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv())
                .await
                .expect("a notification")
                .expect("received");
        heard.push(
            serde_json::from_str::<serde_json::Value>(notification.payload())
                .expect("JSON payload"),
        );
    }
    let summary: Vec<(String, String, String)> = heard
        .iter()
        .map(|n| {
            let text = |k: &str| n[k].as_str().unwrap_or("null").to_string();
            (text("status"), text("previous_status"), text("event_id"))
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("pending".into(), "null".into(), "evt_n1".into()),
            ("completed".into(), "pending".into(), "evt_n3".into())
        ]
    );
    assert_eq!(
        (
            heard[1]["reference"].as_str(),
            heard[1]["partner_reference"].as_str()
        ),
        (Some("FLU-NOTIFY"), Some("order_FLU-NOTIFY"))
    );
    let nothing_more =
        tokio::time::timeout(std::time::Duration::from_millis(300), listener.recv()).await;
    assert!(
        nothing_more.is_err(),
        "an unchanged status is not announced"
    );
}
