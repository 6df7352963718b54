//! Contention: PostgreSQL refusing a batch only because of other work at that moment (a deadlock,
//! a serialization failure) is neither the payload's fault nor a bug. The inbox stores the batch
//! once more; refused again, the delivery gets 503 with `Retry-After` (the sender retries), never
//! 500, and nothing is stored.
//!
//! The refusals are real PostgreSQL errors with the real SQLSTATEs (40P01 deadlock_detected,
//! 40001 serialization_failure), raised by a trigger the test installs: a real deadlock between
//! two replicas cannot be timed from a test.

use crate::helpers::{Event, spawn_app};

#[tokio::test]
async fn a_batch_refused_once_as_a_deadlock_victim_is_stored_on_the_second_try() {
    let app = spawn_app().await;
    // A sequence counts across the rollback that undoes everything else the statement did.
    sqlx::raw_sql(
        "CREATE SEQUENCE refusals; \
         CREATE FUNCTION refuse_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF nextval('refusals') = 1 THEN \
             RAISE EXCEPTION 'deadlock detected (raised by the test)' USING ERRCODE = 'deadlock_detected'; \
           END IF; RETURN NEW; END $$; \
         CREATE TRIGGER refuse_once BEFORE INSERT ON webhook_events FOR EACH ROW EXECUTE FUNCTION refuse_once();",
    )
    .execute(&app.pool)
    .await
    .expect("fault installed");

    let event = Event::new("transaction.completed", "evt_deadlocked", "FLU-DEADLOCK");
    assert_eq!(app.post_signed(&event.body()).await.status(), 200);
    assert_eq!(app.stored("evt_deadlocked").await, 1);
    let tries: i64 = sqlx::query_scalar("SELECT last_value FROM refusals")
        .fetch_one(&app.pool)
        .await
        .expect("tries");
    assert_eq!(tries, 2, "refused once, stored by the second insert");
    app.wait_until_processed().await;
    assert_eq!(
        app.status_of("FLU-DEADLOCK").await.as_deref(),
        Some("completed")
    );
}

#[tokio::test]
async fn a_batch_refused_twice_for_contention_answers_503_stores_nothing_and_the_retry_is_stored_once()
 {
    let app = spawn_app().await;
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_always() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           RAISE EXCEPTION 'could not serialize access (raised by the test)' USING ERRCODE = 'serialization_failure'; \
         END $$; \
         CREATE TRIGGER refuse_always BEFORE INSERT ON webhook_events FOR EACH ROW EXECUTE FUNCTION refuse_always();",
    )
    .execute(&app.pool)
    .await
    .expect("fault installed");

    let event = Event::new("transaction.completed", "evt_contended", "FLU-CONTENDED");
    let refused = app.post_signed(&event.body()).await;
    assert_eq!(refused.status(), 503, "a transient refusal is not a 500");
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.expect("JSON error");
    assert_eq!(body["code"], "unavailable");
    assert_eq!(app.stored("evt_contended").await, 0, "nothing stored");

    sqlx::raw_sql("DROP TRIGGER refuse_always ON webhook_events")
        .execute(&app.pool)
        .await
        .expect("fault removed");
    assert_eq!(app.post_signed(&event.body()).await.status(), 200);
    assert_eq!(app.stored("evt_contended").await, 1);
    app.wait_until_processed().await;
    assert_eq!(
        app.status_of("FLU-CONTENDED").await.as_deref(),
        Some("completed")
    );
}
