//! Retention: old finished events and forwarded changes are deleted in batches; the rest is kept.

use crate::helpers::spawn_app_with;
use fluid_webhooks::store::db::Db;

#[tokio::test]
async fn retention_deletes_old_finished_events_in_batches_and_keeps_the_rest() {
    let app = spawn_app_with(|s| s.worker.enabled = false).await;
    sqlx::raw_sql(
        "INSERT INTO webhook_events (event_id, event_type, raw_body, status, received_at) VALUES \
           ('old_processed_1', 'transaction.completed', '\\x7b7d', 'processed', now() - interval '100 days'), \
           ('old_processed_2', 'transaction.completed', '\\x7b7d', 'processed', now() - interval '95 days'), \
           ('old_ignored', 'settlement.created', '\\x7b7d', 'ignored', now() - interval '200 days'), \
           ('old_pending', 'transaction.completed', '\\x7b7d', 'pending', now() - interval '100 days'), \
           ('old_dead', 'transaction.completed', '\\x7b7d', 'dead', now() - interval '100 days'), \
           ('recent_processed', 'transaction.completed', '\\x7b7d', 'processed', now() - interval '89 days'); \
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

    let purged = fluid_webhooks::store::retention::purge(
        &Db::from(app.pool.clone()),
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
    let purged =
        fluid_webhooks::store::retention::purge(&Db::from(app.pool.clone()), 90, 2, &cancel)
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
