//! The real binary as a child process: crash durability (kill -9), graceful shutdown, the
//! embedded PostgreSQL default, start-up errors and `migrate`.

use std::time::Duration;

use sqlx::PgPool;

use crate::{
    child::{Service, command},
    helpers::{Event, SECRET, empty_database, eventually, test_database, wait_until_processed},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_kill_9_and_are_applied_once_after_restart() {
    let database = test_database().await;
    let pool = PgPool::connect(&database).await.expect("pool");
    // An ingest-only first run: every event is acknowledged, none applied yet.
    let mut first = Service::start(
        &[
            ("DATABASE_URL", &database),
            ("FLUID_WEBHOOKS_WORKER__ENABLED", "false"),
        ],
        None,
    )
    .await;
    for i in 0..30 {
        let (id, reference) = (format!("evt_crash_{i}"), format!("FLU-CRASH-{i}"));
        assert_eq!(
            first
                .post(&Event::new("transaction.completed", &id, &reference).body())
                .await,
            200
        );
    }

    first.child.start_kill().expect("SIGKILL");
    first.child.wait().await.expect("killed");

    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_events WHERE status = 'pending'")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(pending, 30, "every acknowledged event is stored");
    let second = Service::start(&[("DATABASE_URL", &database)], None).await;
    wait_until_processed(&pool).await;
    let (applied, transactions): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM webhook_events WHERE status = 'processed' AND outcome = 'applied' AND attempts = 1), \
                (SELECT count(*) FROM transactions WHERE status = 'completed')",
    )
    .fetch_one(&pool)
    .await
    .expect("counts");
    assert_eq!((applied, transactions), (30, 30));

    let (code, logs) = second.terminate().await;
    assert_eq!(code, Some(0), "SIGTERM is a clean exit:\n{logs}");
    assert!(
        logs.contains("event processed"),
        "one log line per event:\n{logs}"
    );
    assert!(
        !logs.contains(SECRET) && !first.logs().contains(SECRET),
        "the secret never appears in logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_database_url_serve_runs_a_private_postgres_kept_between_runs() {
    let dir = crate::helpers::reachable_temp_dir("fluid-webhooks-embedded");
    let body = Event::new("transaction.completed", "evt_embedded", "FLU-EMB").body();

    let first = Service::start(&[], Some(dir.path())).await;
    assert_eq!(first.post(&body).await, 200);
    eventually("the worker applied the event", async || {
        first.logs().contains(r#""outcome":"applied""#)
    })
    .await;
    let (code, logs) = first.terminate().await;

    assert_eq!(code, Some(0), "{logs}");
    assert!(logs.contains("embedded PostgreSQL started"), "{logs}");
    assert!(
        logs.contains(r#""outcome":"applied""#),
        "the worker applied the event:\n{logs}"
    );
    assert!(logs.contains("embedded PostgreSQL stopped"), "{logs}");
    assert!(dir.path().join(".data/postgres/PG_VERSION").exists());
    assert!(
        !dir.path().join(".data/postgres/postmaster.pid").exists(),
        "the server is stopped on exit"
    );

    // The second run reuses the data: the same event is now a duplicate.
    let second = Service::start(&[], Some(dir.path())).await;
    assert_eq!(second.post(&body).await, 200);
    let (code, logs) = second.terminate().await;
    assert_eq!(code, Some(0), "{logs}");
    assert!(logs.contains(r#""outcome":"duplicate""#), "{logs}");
}

async fn run_to_end(vars: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String, String) {
    let output = tokio::time::timeout(Duration::from_secs(60), command(vars).args(args).output())
        .await
        .expect("finishes")
        .expect("runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_missing_secret_stops_start_up_with_a_message_naming_it() {
    for args in [&[][..], &["serve"][..]] {
        let (code, _, stderr) =
            run_to_end(&[("DATABASE_URL", "postgres://127.0.0.1:1/x")], args).await;
        assert_ne!(code, Some(0));
        assert!(stderr.contains("FLUID_WEBHOOK_SECRET"), "{stderr}");
    }
}

#[tokio::test]
async fn a_bad_setting_stops_start_up_with_a_message_naming_the_key() {
    let cases = [
        (("PORT", "eighty"), "PORT"),
        (
            ("FLUID_WEBHOOKS_WORKER__BATCH_SIZE", "0"),
            "worker.batch_size",
        ),
        (("FLUID_ENV", "staging"), "FLUID_ENV"),
    ];
    for ((name, value), key) in cases {
        let vars = [
            ("FLUID_WEBHOOK_SECRET", SECRET),
            ("DATABASE_URL", "postgres://127.0.0.1:1/x"),
            (name, value),
        ];
        let (code, _, stderr) = run_to_end(&vars, &["serve"]).await;
        assert_ne!(code, Some(0), "{name}={value}");
        assert!(stderr.contains(key), "{name}={value}: {stderr}");
    }
}

#[tokio::test]
async fn migrate_applies_the_migrations_and_exits() {
    let database = empty_database().await;

    let (code, stdout, stderr) = run_to_end(&[("DATABASE_URL", &database)], &["migrate"]).await;

    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("migrations applied"));
    let pool = PgPool::connect(&database).await.expect("pool");
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('webhook_events', 'transactions')",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(tables, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_starting_at_once_on_an_empty_database_migrate_it_once_and_all_serve() {
    let database = empty_database().await;
    let vars = [("DATABASE_URL", database.as_str())];
    let (a, b, c) = tokio::join!(
        Service::start(&vars, None),
        Service::start(&vars, None),
        Service::start(&vars, None)
    );
    for (n, replica) in [&a, &b, &c].into_iter().enumerate() {
        let event = format!("evt_replica_{n}");
        let body = Event::new("transaction.completed", &event, "FLU-REPLICAS").body();
        assert_eq!(
            replica.post(&body).await,
            200,
            "replica {n}: {}",
            replica.logs()
        );
    }
    let pool = PgPool::connect(&database).await.expect("pool");
    let (applied, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT version) FROM _sqlx_migrations WHERE success",
    )
    .fetch_one(&pool)
    .await
    .expect("migrations");
    let known = fluid_webhooks::store::database::MIGRATOR.iter().count() as i64;
    assert_eq!((applied, distinct), (known, known), "each migration once");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events")
        .fetch_one(&pool)
        .await
        .expect("events");
    assert_eq!(stored, 3);
}
