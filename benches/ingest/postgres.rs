//! The processes of a run: a fresh database on the private PostgreSQL, the service binary started
//! against it, PostgreSQL's own commit ceiling (pgbench), and the wait for the worker to drain.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use fluid_webhooks::store::{embedded_postgres::EmbeddedPostgres, rows::EventStatus};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::process::{Child, Command};

use crate::workload::SECRET;

pub async fn create_database(pg: &EmbeddedPostgres, name: &str) -> String {
    let mut conn = PgConnection::connect(pg.url_for("postgres").expose())
        .await
        .expect("admin");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .expect("drop");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .expect("create");
    pg.url_for(name).expose().to_string()
}

/// PostgreSQL's commit ceiling on this machine now: pgbench running one
/// `INSERT ... ON CONFLICT DO NOTHING` of `rows` rows per transaction from `clients` connections
/// for `seconds`. Rows per second (commits per second for one row).
pub async fn pgbench_ceiling(
    pg: &EmbeddedPostgres,
    clients: usize,
    seconds: u32,
    rows: u32,
) -> f64 {
    let database = format!("ceiling_{rows}");
    let url = create_database(pg, &database).await;
    let mut conn = PgConnection::connect(&url).await.expect("ceiling db");
    sqlx::query("CREATE TABLE ceiling (id text PRIMARY KEY, payload jsonb NOT NULL, at timestamptz NOT NULL DEFAULT now())")
        .execute(&mut conn)
        .await
        .expect("table");
    let script =
        std::env::temp_dir().join(format!("fluid-webhooks-pgbench-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        if rows == 1 {
            "\\set id random(1, 2000000000)\nINSERT INTO ceiling (id, payload) VALUES ('evt_' || :client_id || '_' || :id, '{\"event\":\"transaction.completed\",\"amount\":100.00}') ON CONFLICT (id) DO NOTHING;\n".to_string()
        } else {
            format!("\\set id random(1, 2000000000)\nINSERT INTO ceiling (id, payload) SELECT 'evt_' || :client_id || '_' || :id || '_' || g, '{{\"event\":\"transaction.completed\",\"amount\":100.00}}' FROM generate_series(1, {rows}) g ON CONFLICT (id) DO NOTHING;\n")
        },
    )
    .expect("script");
    let url: reqwest::Url = url.parse().expect("url");
    // pgbench sits beside the real initdb (PATH may hold only links to some of the programs).
    let real_bin = std::fs::canonicalize(pg.bin_dir().join("initdb")).expect("initdb");
    let pgbench = real_bin.with_file_name("pgbench");
    let output = Command::new(&pgbench)
        .args(["-n", "-M", "prepared", "-j", "2"])
        .arg(format!("-T{seconds}"))
        .arg(format!("-c{clients}"))
        .arg("-f")
        .arg(&script)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port().to_string(),
            "-U",
            "postgres",
            &database,
        ])
        .env("PGPASSWORD", url.password().unwrap_or_default())
        .output()
        .await
        .expect("pgbench runs");
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|tps| tps * f64::from(rows))
        .unwrap_or_else(|| {
            panic!(
                "pgbench said: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

/// The service binary, running.
pub struct Service {
    /// Its process.
    pub child: Child,
    /// `http://127.0.0.1:<port>`.
    pub address: String,
}

pub async fn start_service(database_url: &str, log: &str, worker: bool, port: u16) -> Service {
    let port = std::net::TcpListener::bind(("127.0.0.1", port))
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    // `BENCH_SERVICE_WRAPPER="valgrind --tool=callgrind"` runs the service under a profiler:
    // instruction counts per request, stable on a busy machine (the README's profile).
    let binary = env!("CARGO_BIN_EXE_fluid-webhooks");
    let wrapper = std::env::var("BENCH_SERVICE_WRAPPER").unwrap_or_default();
    let mut command: Vec<&str> = wrapper.split_whitespace().collect();
    command.push(binary);
    let child = Command::new(command[0])
        .args(&command[1..])
        .arg("serve")
        .env("FLUID_WEBHOOK_SECRET", SECRET)
        .env("DATABASE_URL", database_url)
        .env("PORT", port.to_string())
        .env("RUST_LOG", log)
        .env("FLUID_WEBHOOKS_WORKER__ENABLED", worker.to_string())
        // One load generator on one address is the whole point here: no per-client rate limit.
        .env("FLUID_WEBHOOKS_LIMITS__RATE_PER_SECOND", "0")
        .env("FLUID_WEBHOOKS_LOG__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the service");
    let address = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while client
        .get(format!("{address}/readyz"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(
            Instant::now() < deadline,
            "the service did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Service { child, address }
}

/// Returns once the worker has applied every stored event.
pub async fn wait_for_drain(pool: &PgPool) {
    loop {
        let pending: i64 = sqlx::query_scalar(
            // Marked, so that `--statements` leaves the benchmark's own queries out.
            "/* bench */ SELECT count(*) FROM webhook_events WHERE status = $1",
        )
        .bind(EventStatus::Pending.as_str())
        .fetch_one(pool)
        .await
        .expect("pending");
        if pending == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
