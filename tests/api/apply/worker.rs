//! The worker: stored events are applied once, also with several workers and replicas, after a
//! worker died mid-claim, and with retries on failure; what can never apply is parked dead.

use std::sync::Arc;

use sqlx::{Connection, PgConnection};

use crate::helpers::{
    Event, eventually, spawn_app, spawn_app_on, spawn_app_with, test_database, wait_until_processed,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_with_two_workers_each_apply_every_event_exactly_once() {
    let database = test_database().await;
    let tweak = |s: &mut fluid_webhooks::app::config::Settings| {
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
    // The replica's worker is running: it applies an event stored after it started, passing over
    // the one the first worker holds.
    assert_eq!(
        replica
            .post_signed(&Event::new("transaction.completed", "evt_other", "FLU-OTHER").body())
            .await
            .status(),
        200
    );
    eventually("the replica applied another event", async || {
        replica.status_of("FLU-OTHER").await.as_deref() == Some("completed")
    })
    .await;
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
    eventually("the failed application retried", async || {
        app.event_state("evt_flaky").await.2 >= 2
    })
    .await;
    let (status, _, attempts, error) = app.event_state("evt_flaky").await;
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
async fn a_broken_invariant_parks_the_event_with_its_reason_instead_of_retrying_for_ever() {
    let app = spawn_app().await;
    app.deliver(&[Event::new("transaction.pending", "evt_inv_1", "FLU-INV")])
        .await;
    // Break a promise the worker relies on: a stored status the rules do not know.
    sqlx::raw_sql(
        "ALTER TABLE transactions DROP CONSTRAINT transactions_status_check; \
         UPDATE transactions SET status = 'bogus' WHERE reference = 'FLU-INV'",
    )
    .execute(&app.pool)
    .await
    .expect("break the data");

    app.deliver(&[
        Event::new("transaction.completed", "evt_inv_2", "FLU-INV").at(5),
        Event::new("transaction.completed", "evt_inv_ok", "FLU-INV-OK"),
    ])
    .await;

    let (status, _, attempts, error) = app.event_state("evt_inv_2").await;
    assert_eq!((status.as_str(), attempts), ("dead", 1), "parked at once");
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("broken invariant: stored status `bogus` is unknown")),
        "{error:?}"
    );
    assert_eq!(
        app.status_of("FLU-INV-OK").await.as_deref(),
        Some("completed"),
        "the rest of the batch is applied"
    );
}
