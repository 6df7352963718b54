//! Through a real PgBouncer (Debian's 1.18) in transaction-pooling mode, with fewer server
//! connections than the two replicas have clients, so that every statement may land on another
//! server connection than the one before: migrations by both replicas at once, ingest,
//! duplicates, the worker, reconciliation, forwarding and the admin API, nothing lost or doubled.
//! One replica listens through DATABASE_DIRECT_URL, the other only polls.

use std::{
    collections::HashSet,
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::Duration,
};

use fluid_webhooks::{
    secret::Secret,
    store::database::{self, MIGRATOR},
};
use sqlx::PgPool;

use crate::{
    helpers::{Event, empty_database, eventually, reachable_temp_dir, spawn_app_on, wait_until_on},
    stand_in::{Reply, StandIn},
};

const ADMIN_TOKEN: &str = "pgbouncer-admin";

/// A PgBouncer in front of the test server, stopped when dropped.
struct Bouncer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `None` (the test says so and passes) when pgbouncer is not installed, unless
/// TEST_REQUIRE_PGBOUNCER is set, as `.ci/run` does.
fn start_bouncer(server: &reqwest::Url) -> Option<Bouncer> {
    let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(binary) = binary else {
        assert!(
            std::env::var_os("TEST_REQUIRE_PGBOUNCER").is_none(),
            "pgbouncer is not installed: apt-get install pgbouncer"
        );
        eprintln!("SKIPPED: pgbouncer is not installed (apt-get install pgbouncer)");
        return None;
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dir = reachable_temp_dir("fw-pgbouncer");
    let config = dir.path().join("pgbouncer.ini");
    let password = server
        .password()
        .expect("the test server's URL has a password");
    std::fs::write(
        &config,
        format!(
            "[databases]\n\
             * = host=127.0.0.1 port={} user={} password={password}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = any\n\
             pool_mode = transaction\n\
             server_reset_query_always = 1\n\
             ignore_startup_parameters = extra_float_digits\n\
             default_pool_size = 3\n\
             max_client_conn = 500\n",
            server.port().expect("port"),
            server.username(),
        ),
    )
    .expect("config");
    let mut command = Command::new(binary);
    // PgBouncer will not run as root: it then runs as the postgres user, like the server.
    if nix::unistd::Uid::effective().is_root() {
        command.args(["-u", "postgres"]);
    }
    let child = command
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pgbouncer");
    let bouncer = Bouncer {
        child,
        port,
        _dir: dir,
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(bouncer);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("pgbouncer did not listen on {port}");
}

fn answer(reference: &str) -> String {
    format!(
        r#"{{"success":true,"data":{{"reference":"{reference}","status":"completed","response":{{"uuid":"u-1","status":"completed","timestamp":"2026-01-28T10:31:00Z","reference":"{reference}","processed_at":"2026-01-28T10:30:30Z","completed_at":"2026-01-28T10:31:00Z","bank_reference":"BNK1","approval_method":"ussd","error_message":null}}}},"meta":{{"timestamp":"2026-01-28T10:31:00Z","request_id":"req_1","api_version":"v1"}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_through_pgbouncer_in_transaction_mode_lose_and_double_nothing() {
    let direct_url = empty_database().await;
    let server = reqwest::Url::parse(&direct_url).expect("URL");
    let Some(bouncer) = start_bouncer(&server) else {
        return;
    };
    let mut through = server.clone();
    through.set_port(Some(bouncer.port)).expect("port");
    through.set_password(None).expect("no password");
    let through = through.to_string();

    let fluid = StandIn::start(|_, seen| {
        let reference = seen
            .uri
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        Reply::json(200, answer(&reference))
    })
    .await;
    let downstream = StandIn::start(|_, _| Reply::json(200, "{}")).await;
    let tweak = |listen: bool| {
        let (fluid_url, forward_url, direct) = (
            reqwest::Url::parse(&format!("{}/api/v1", fluid.url)).expect("URL"),
            format!("{}/changes", downstream.url),
            direct_url.clone(),
        );
        move |s: &mut fluid_webhooks::app::config::Settings| {
            s.database.transaction_pooling = true;
            s.database.direct_url = listen.then(|| Secret::new(direct));
            s.admin_token = Some(Secret::new(ADMIN_TOKEN));
            s.fluid_api_key = Some(Secret::new("test_sk_pgbouncer"));
            let r = &mut s.reconciliation;
            r.base_url = fluid_url;
            r.after_secs = 0;
            r.interval_ms = 50;
            r.retry_base_ms = 100;
            r.retry_max_ms = 400;
            s.forward.url = Some(forward_url.parse().expect("URL"));
            s.forward_secret = Some(Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
            s.forward.interval_ms = 50;
        }
    };

    // Both replicas migrate the empty database at once, through PgBouncer.
    let migrate = |s: fluid_webhooks::app::config::Settings| async move {
        let db = database::pool(
            &Secret::new(s.database_url.clone().expect("URL").expose()),
            &s.database,
        )
        .expect("pool");
        database::migrate(&db, Duration::from_secs(30)).await
    };
    let mut settings = crate::helpers::test_settings(&through);
    tweak(false)(&mut settings);
    let (first, second) = tokio::join!(migrate(settings.clone()), migrate(settings));
    first.expect("migrated through PgBouncer");
    second.expect("migrated through PgBouncer, once");
    let pool = PgPool::connect(&direct_url).await.expect("direct pool");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .expect("migrations");
    assert_eq!(applied as usize, MIGRATOR.iter().count());

    let apps = [
        spawn_app_on(through.clone(), tweak(false)).await,
        spawn_app_on(through.clone(), tweak(true)).await,
    ];
    for table in ["reconciliation_budget", "forwarding"] {
        wait_until_on(&pool, table).await;
    }
    // Every completed event to both replicas at once (a redelivery racing its first delivery),
    // and pending ones that only reconciliation settles.
    let mut sends: Vec<(usize, String)> = Vec::new();
    for i in 0..60 {
        let (id, reference) = (format!("evt_pb_{i}"), format!("FLU-PB-{i}"));
        let body = Event::new("transaction.completed", &id, &reference).body();
        sends.extend([(0, body.clone()), (1, body)]);
    }
    for i in 0..5 {
        let (id, reference) = (format!("evt_pbr_{i}"), format!("FLU-PBR-{i}"));
        sends.push((
            i % 2,
            Event::new("transaction.pending", &id, &reference).body(),
        ));
    }
    let apps = &apps;
    let codes =
        futures_util::future::join_all(sends.iter().map(|(app, body)| async move {
            apps[*app].post_signed(body).await.status().as_u16()
        }))
        .await;
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");

    eventually("every transaction completed, polled ones too", async || {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM transactions WHERE status = 'completed'")
            .fetch_one(&pool)
            .await
            .expect("count")
            == 65
    })
    .await;
    eventually("every change forwarded", async || {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM transaction_changes WHERE forwarded_at IS NULL",
        )
        .fetch_one(&pool)
        .await
        .expect("count")
            == 0
    })
    .await;

    // Stored once, applied once.
    let (stored, applied_once): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE status = 'processed' AND attempts = 1) \
         FROM webhook_events WHERE source = 'webhook'",
    )
    .fetch_one(&pool)
    .await
    .expect("events");
    assert_eq!((stored, applied_once), (65, 65));
    // Each change delivered downstream once.
    let changes: i64 = sqlx::query_scalar("SELECT count(*) FROM transaction_changes")
        .fetch_one(&pool)
        .await
        .expect("changes");
    let delivered: Vec<String> = downstream
        .seen()
        .iter()
        .map(|s| s.header("webhook-id").to_string())
        .collect();
    let unique: HashSet<&String> = delivered.iter().collect();
    assert_eq!(
        (unique.len(), delivered.len()),
        (changes as usize, changes as usize)
    );
    assert!(fluid.seen().len() >= 5, "the pending ones were polled");

    // The admin API, through PgBouncer too.
    let (status, events) = apps[0]
        .get_with_token("/admin/events?limit=100", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, 200, "{events}");
    assert!(
        events["events"].as_array().map_or(0, Vec::len) >= 65,
        "{events}"
    );
    drop(bouncer);
}
