//! The state rules at work: stored events reach `transactions` in the order they happened, with
//! exact amounts; the database refuses what must never happen; every change is announced.

use crate::helpers::{Event, spawn_app, spawn_app_on, spawn_app_with, wait_until_processed};

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
