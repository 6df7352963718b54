//! The real binary as a child process: crash durability (kill -9), graceful shutdown, the
//! embedded PostgreSQL default, start-up errors and `migrate`.

use std::{
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use sqlx::PgPool;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::helpers::{Event, SECRET, empty_database, test_database, wait_until_processed};

pub const BIN: &str = env!("CARGO_BIN_EXE_fluid-webhooks");

/// The binary with a clean environment: PATH, HOME and the given variables only.
pub fn command(vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command.env_clear();
    for name in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command.envs(vars.iter().copied()).kill_on_drop(true);
    command
}

/// A running `fluid-webhooks serve`.
pub struct Service {
    pub child: Child,
    pub address: String,
    logs: Arc<Mutex<String>>,
    client: reqwest::Client,
}

impl Service {
    /// Starts the service and waits for its "listening" line (JSON logs) to learn its port.
    pub async fn start(vars: &[(&str, &str)], cwd: Option<&Path>) -> Self {
        let mut all = vec![
            ("FLUID_WEBHOOK_SECRET", SECRET),
            ("PORT", "0"),
            ("FLUID_WEBHOOKS_LOG__FORMAT", "json"),
            ("RUST_LOG", "info"),
            ("FLUID_WEBHOOKS_LIMITS__RATE_PER_SECOND", "0"),
        ];
        all.extend_from_slice(vars);
        let mut command = command(&all);
        if let Some(dir) = cwd {
            command.current_dir(dir);
        }
        let mut child = command
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn the service");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let logs = Arc::new(Mutex::new(String::new()));
        let address = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.expect("read stderr") {
                logs.lock().expect("lock").push_str(&format!("{line}\n"));
                let parsed: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if let Some(address) = parsed["address"].as_str() {
                    return format!("http://{address}");
                }
            }
            panic!(
                "the service exited before listening:\n{}",
                logs.lock().expect("lock")
            );
        })
        .await
        .expect("the service listens within 60 s");
        let sink = logs.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().expect("lock").push_str(&format!("{line}\n"));
            }
        });
        Self {
            child,
            address,
            logs,
            client: reqwest::Client::new(),
        }
    }

    async fn post(&self, body: &str) -> u16 {
        let sig = fluid_webhooks::signature::sign(
            &fluid_webhooks::secret::Secret::new(SECRET),
            body.as_bytes(),
        );
        self.client
            .post(format!("{}/webhooks/fluid", self.address))
            .header("x-fluid-signature", sig)
            .body(body.to_string())
            .send()
            .await
            .expect("sent")
            .status()
            .as_u16()
    }

    fn logs(&self) -> String {
        self.logs.lock().expect("lock").clone()
    }

    /// Sends SIGTERM and returns the exit code.
    pub async fn terminate(mut self) -> (Option<i32>, String) {
        let pid = Pid::from_raw(self.child.id().expect("running") as i32);
        kill(pid, Signal::SIGTERM).expect("SIGTERM");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .expect("wait");
        tokio::time::sleep(Duration::from_millis(100)).await; // let the log reader catch up
        (status.code(), self.logs())
    }
}

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
    tokio::time::sleep(Duration::from_millis(500)).await;
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
