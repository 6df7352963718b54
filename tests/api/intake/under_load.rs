//! Reliability under load: the service killed with SIGKILL in the middle of a burst, and
//! PostgreSQL restarted in the middle of a burst. Every acknowledged event must end up stored and
//! applied exactly once; nothing may be acknowledged that was not stored.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use fluid_webhooks::{
    intake::signature,
    secret::Secret,
    store::{database, embedded_postgres::EmbeddedPostgres},
};
use sqlx::PgPool;

use crate::{
    child::Service,
    helpers::{Event, SECRET, eventually, spawn_app_on, test_database, wait_until_processed},
};

/// Starts sending `count` distinct events from `concurrency` connections. Returns a live count of
/// acknowledgements and the task that yields the ids answered 200 once every request is done.
async fn burst(
    address: &str,
    prefix: &str,
    count: usize,
    concurrency: usize,
) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<HashSet<String>>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let url = format!("{address}/webhooks/fluid");
    let acked = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let prefix = prefix.to_string();
    let counter = acked.clone();
    let handle = tokio::spawn(async move {
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let (client, url, next, counter, prefix) = (
                    client.clone(),
                    url.clone(),
                    next.clone(),
                    counter.clone(),
                    prefix.clone(),
                );
                tokio::spawn(async move {
                    let mut ok = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= count {
                            return ok;
                        }
                        let (id, reference) = (
                            format!("evt_{prefix}_{i}"),
                            format!("FLU-{prefix}-{}", i / 2),
                        );
                        let event = if i % 2 == 0 {
                            "transaction.pending"
                        } else {
                            "transaction.completed"
                        };
                        let body = Event::new(event, &id, &reference).at((i % 2) as u32).body();
                        let sig = signature::sign(&Secret::new(SECRET), body.as_bytes());
                        let sent = client
                            .post(&url)
                            .header("x-fluid-signature", sig)
                            .body(body)
                            .send()
                            .await;
                        if sent.is_ok_and(|r| r.status() == 200) {
                            counter.fetch_add(1, Ordering::SeqCst);
                            ok.push(id);
                        }
                    }
                })
            })
            .collect();
        let mut all = HashSet::new();
        for task in tasks {
            all.extend(task.await.expect("sender"));
        }
        all
    });
    (acked, handle)
}

async fn wait_for(acked: &AtomicUsize, at_least: usize) {
    eventually(&format!("{at_least} deliveries acknowledged"), async || {
        acked.load(Ordering::SeqCst) >= at_least
    })
    .await;
}

/// Every acknowledged id is stored, and every stored event was applied exactly once.
async fn assert_exactly_once(pool: &PgPool, acked: &HashSet<String>) {
    wait_until_processed(pool).await;
    let stored: HashSet<String> = sqlx::query_scalar("SELECT event_id FROM webhook_events")
        .fetch_all(pool)
        .await
        .expect("ids")
        .into_iter()
        .collect();
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    let not_once: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM webhook_events WHERE status <> 'processed' OR attempts <> 1",
    )
    .fetch_one(pool)
    .await
    .expect("count");
    assert_eq!(not_once, 0, "every stored event is applied exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_in_the_middle_of_a_burst_loses_no_acknowledged_event() {
    let database = test_database().await;
    let pool = PgPool::connect(&database).await.expect("pool");
    let mut first = Service::start(&[("DATABASE_URL", &database)], None).await;
    let (acked, senders) = burst(&first.address, "k9", 3000, 32).await;

    wait_for(&acked, 600).await;
    first.child.start_kill().expect("SIGKILL");
    first.child.wait().await.expect("killed");
    let acknowledged = senders.await.expect("senders");

    assert!(acknowledged.len() < 3000, "the kill came mid-burst");
    let second = Service::start(&[("DATABASE_URL", &database)], None).await;
    assert_exactly_once(&pool, &acknowledged).await;
    let (code, logs) = second.terminate().await;
    assert_eq!(code, Some(0), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_restart_mid_burst_gives_no_false_ack_and_the_service_recovers_by_itself() {
    // A server of its own: restarting the shared one would disturb the other tests.
    let dir = crate::helpers::reachable_temp_dir("fluid-webhooks-restart");
    let pg = EmbeddedPostgres::start(&dir.path().join("pg"))
        .await
        .expect("private PostgreSQL");
    let url = pg.url();
    let settings = crate::helpers::test_settings(url.expose());
    let migrations = database::pool(&url, &settings.database).expect("pool");
    database::migrate(&migrations, Duration::from_secs(30))
        .await
        .expect("migrated");
    migrations.close().await;
    let app = spawn_app_on(url.expose().to_string(), |_| {}).await;
    let (acked, senders) = burst(&app.address, "rs", 4000, 16).await;

    wait_for(&acked, 800).await;
    pg.restart().await.expect("restart PostgreSQL");
    let acknowledged = senders.await.expect("senders");

    let (after, again) = burst(&app.address, "after", 200, 4).await;
    let recovered = again.await.expect("senders");
    assert!(
        after.load(Ordering::SeqCst) > 0 && !recovered.is_empty(),
        "the service accepts again without a restart"
    );
    let pool = PgPool::connect(url.expose()).await.expect("pool");
    assert_exactly_once(&pool, &acknowledged.union(&recovered).cloned().collect()).await;
    pool.close().await;
    drop(app);
    pg.stop().await.expect("stop");
}
