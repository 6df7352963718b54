//! Shared test plumbing: the PostgreSQL server, per-test databases, `spawn_app`, signed requests.

use std::{
    collections::HashMap,
    os::unix::process::CommandExt,
    time::{Duration, Instant},
};

use fluid_webhooks::{
    app::{
        config::{SECRET_VAR, Settings},
        startup::Application,
    },
    intake::signature,
    secret::Secret,
    store::{
        database::{self, MIGRATOR},
        embedded_postgres::EmbeddedPostgres,
    },
};
use reqwest::Url;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

/// The webhook secret every test app uses.
pub const SECRET: &str = "whsec_test_0123456789";

/// The PostgreSQL server all tests share, and the migrated template their databases copy.
pub struct TestServer {
    admin_url: Url,
    template: String,
}

static SERVER: OnceCell<TestServer> = OnceCell::const_new();

async fn server() -> &'static TestServer {
    SERVER
        .get_or_init(|| async {
            fluid_webhooks::install_crypto_provider();
            if std::env::var_os("TEST_LOG").is_some() {
                fluid_webhooks::app::telemetry::init(
                    fluid_webhooks::app::telemetry::LogFormat::Pretty,
                );
            }
            let admin_url = match std::env::var("DATABASE_URL") {
                Ok(url) if !url.trim().is_empty() => {
                    Url::parse(&url).expect("DATABASE_URL is a URL")
                }
                _ => start_private_server().await,
            };
            let template = format!("fw_template_{}", uuid::Uuid::new_v4().simple());
            create_database(&admin_url, &template, None).await;
            let pool = PgPool::connect(url_of(&admin_url, &template).as_str())
                .await
                .expect("template");
            MIGRATOR
                .run(&pool)
                .await
                .expect("migrations apply to the template");
            pool.close().await;
            TestServer {
                admin_url,
                template,
            }
        })
        .await
}

/// A fresh temp folder the `postgres` OS user can reach (tempfile makes them 0700, which closes
/// them to PostgreSQL when the tests run as root).
pub fn reachable_temp_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    dir
}

/// Starts a throw-away PostgreSQL in a fresh temp folder (reachable by the `postgres` user when we
/// are root) and a watchdog process that stops it and deletes the folder when this test process
/// exits, however it exits.
#[expect(
    clippy::zombie_processes,
    reason = "the watchdog must outlive this process"
)]
async fn start_private_server() -> Url {
    let dir = reachable_temp_dir("fluid-webhooks-test-pg").keep();
    let pg = EmbeddedPostgres::start(&dir.join("data"))
        .await
        .expect("start the test PostgreSQL");
    let pg_ctl = pg.bin_dir().join("pg_ctl");
    let as_user = pg
        .server_user()
        .map(|u| format!("runuser -u {u} -- "))
        .unwrap_or_default();
    let script = format!(
        "while [ -d /proc/$1 ]; do sleep 1; done; {as_user}\"$2\" stop -D \"$3\" -m immediate >/dev/null 2>&1; rm -rf \"$4\""
    );
    std::process::Command::new("sh")
        .args(["-c", &script, "watchdog"])
        .arg(std::process::id().to_string())
        .arg(&pg_ctl)
        .arg(pg.data_dir())
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start the watchdog");
    Url::parse(pg.url_for("postgres").expose()).expect("URL")
}

fn url_of(admin: &Url, database: &str) -> Url {
    let mut url = admin.clone();
    url.set_path(&format!("/{database}"));
    url
}

async fn create_database(admin: &Url, name: &str, template: Option<&str>) {
    let mut conn = PgConnection::connect(admin.as_str())
        .await
        .expect("admin connection");
    let sql = match template {
        Some(t) => format!("CREATE DATABASE \"{name}\" TEMPLATE \"{t}\""),
        None => format!("CREATE DATABASE \"{name}\""),
    };
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .expect("create database");
    conn.close().await.expect("close");
}

/// A fresh migrated database for one test; returns its URL.
pub async fn test_database() -> String {
    let server = server().await;
    let name = format!("fw_test_{}", uuid::Uuid::new_v4().simple());
    create_database(&server.admin_url, &name, Some(&server.template)).await;
    url_of(&server.admin_url, &name).to_string()
}

/// A fresh empty database (no migrations), for testing `migrate`.
pub async fn empty_database() -> String {
    let server = server().await;
    let name = format!("fw_empty_{}", uuid::Uuid::new_v4().simple());
    create_database(&server.admin_url, &name, None).await;
    url_of(&server.admin_url, &name).to_string()
}

/// The settings a test app starts from: its database, port 0, a fast-polling worker.
pub fn test_settings(database_url: &str) -> Settings {
    let vars: HashMap<String, String> = [
        (SECRET_VAR, SECRET),
        ("DATABASE_URL", database_url),
        ("PORT", "0"),
        ("FLUID_WEBHOOKS_WORKER__POLL_INTERVAL_MS", "50"),
        ("FLUID_WEBHOOKS_WORKER__RETRY_BASE_MS", "100"),
        ("FLUID_WEBHOOKS_WORKER__RETRY_MAX_MS", "400"),
        // Tests send bursts from one address; the limits have tests of their own.
        ("FLUID_WEBHOOKS_LIMITS__RATE_PER_SECOND", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Settings::from_vars(&vars).expect("test settings are valid")
}

/// A running service in this process, with its own database.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The test database, for assertions.
    pub pool: PgPool,
    /// Its URL.
    pub database_url: String,
    /// A keep-alive HTTP client.
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts the service on a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the service on a fresh database, with settings changed by `tweak`.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_on(test_database().await, tweak).await
}

/// Starts the service on the given database (a second replica, or a proxied URL).
pub async fn spawn_app_on(database_url: String, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings(&database_url);
    tweak(&mut settings);
    let pool =
        database::pool(&Secret::new(database_url.clone()), &settings.database).expect("pool");
    let app = Application::build(settings, pool)
        .await
        .expect("build the app");
    let address = format!("http://{}", app.local_addr().expect("bound"));
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(app.run(shutdown.clone()));
    let pool = PgPool::connect(&database_url).await.expect("test pool");
    TestApp {
        address,
        pool,
        database_url,
        client: reqwest::Client::new(),
        shutdown,
        handle: Some(handle),
    }
}

impl TestApp {
    /// `GET` of a path such as `/readyz`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request sent")
    }

    /// Posts `body` to `/webhooks/fluid` signed with the test secret and FLUID's headers.
    pub async fn post_signed(&self, body: &str) -> reqwest::Response {
        let sig = signature::sign(&Secret::new(SECRET), body.as_bytes());
        self.post_webhook(body, &[("x-fluid-signature", sig.as_str())])
            .await
    }

    /// Posts `body` to `/webhooks/fluid` with exactly the given extra headers.
    pub async fn post_webhook(&self, body: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        self.post_to("fluid", body, headers).await
    }

    /// Posts `body` to `/webhooks/<provider>` with the given extra headers.
    pub async fn post_to(
        &self,
        provider: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}/webhooks/{provider}", self.address))
            .header("content-type", "application/json")
            .header("x-fluid-delivery-id", "dlv_test")
            .header("x-fluid-timestamp", "1769596200")
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("request sent")
    }

    /// Posts each event signed, expecting 200, then waits until the worker applied them all.
    pub async fn deliver(&self, events: &[Event<'_>]) {
        for event in events {
            assert_eq!(
                self.post_signed(&event.body()).await.status(),
                200,
                "{}",
                event.event_id
            );
        }
        self.wait_until_processed().await;
    }

    /// How many rows `webhook_events` holds for this event id.
    pub async fn stored(&self, event_id: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM webhook_events WHERE event_id = $1")
            .bind(event_id)
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    /// All rows of `webhook_events`.
    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM webhook_events")
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    /// Waits until no event is pending (the worker has applied everything), up to 20 s.
    pub async fn wait_until_processed(&self) {
        wait_until_processed(&self.pool).await
    }

    /// The event's (status, outcome, attempts, last_error).
    pub async fn event_state(
        &self,
        event_id: &str,
    ) -> (String, Option<String>, i32, Option<String>) {
        sqlx::query_as(
            "SELECT status, outcome, attempts, last_error FROM webhook_events WHERE event_id = $1",
        )
        .bind(event_id)
        .fetch_one(&self.pool)
        .await
        .expect("event row")
    }

    /// The transaction's status, or `None` when it does not exist.
    pub async fn status_of(&self, reference: &str) -> Option<String> {
        sqlx::query_scalar("SELECT status FROM transactions WHERE reference = $1")
            .bind(reference)
            .fetch_optional(&self.pool)
            .await
            .expect("transaction")
    }

    /// Stops the app and waits for it to return.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.handle.take().expect("running").await.expect("joined")
    }
}

/// Waits until `check` holds, up to 20 s, looking every 25 ms.
pub async fn eventually(what: &str, check: impl AsyncFn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 20 s");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until the follow-up owning `table` (`reconciliation_budget` for polling, `forwarding` for
/// forwarding) is on for every replica: its first start writes the table's one row. A transaction
/// a worker creates before then is watched only by the poller's rescan a minute later, and its
/// change is not forwarded at all, so a test under load would race it.
pub async fn wait_until_on(pool: &PgPool, table: &'static str) {
    let query = format!("SELECT count(*) FROM {table}");
    eventually(&format!("{table} has its row"), async || {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(query.clone()))
            .fetch_one(pool)
            .await
            .is_ok_and(|n| n == 1)
    })
    .await;
}

/// Waits until no event is pending in the database, up to 20 s.
pub async fn wait_until_processed(pool: &PgPool) {
    eventually("every stored event applied", async || {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM webhook_events WHERE status = 'pending'")
            .fetch_one(pool)
            .await
            .expect("count")
            == 0
    })
    .await;
}

/// A FLUID transaction event, built as text so the amount stays exactly as written.
pub struct Event<'a> {
    pub event: &'a str,
    pub event_id: &'a str,
    pub reference: &'a str,
    /// Seconds after 2026-01-28T10:30:00Z.
    pub second: u32,
    pub amount: &'a str,
}

impl<'a> Event<'a> {
    /// A `transaction.completed` of 100.00 GHS at second 0.
    pub fn new(event: &'a str, event_id: &'a str, reference: &'a str) -> Self {
        Self {
            event,
            event_id,
            reference,
            second: 0,
            amount: "100.00",
        }
    }

    /// At this second.
    pub fn at(self, second: u32) -> Self {
        Self { second, ..self }
    }

    /// The body as FLUID would send it.
    pub fn body(&self) -> String {
        let status = self
            .event
            .strip_prefix("transaction.")
            .unwrap_or("completed");
        let error = if status == "failed" {
            r#","error_details":{"code":3009,"message":"Insufficient funds"}"#
        } else {
            ""
        };
        format!(
            r#"{{"event":"{}","event_id":"{}","timestamp":"2026-01-28T10:{:02}:{:02}Z","api_version":"v1","data":{{"transaction":{{"id":"dt_8a1b","uuid":"1b4e28ba-2fa1-11d2-883f-0016d3cca427","reference":"{}","partner_reference":"order_{}","status":"{}","amount":{},"currency":"GHS","fee":1.50,"narration":"Order","approval_method":"ussd","bank":{{"name":"Test","identifier":"TST","country_code":"GH"}},"customer":{{"name":"Kofi","phone_number":"+233241234567"}},"created_at":"2026-01-28T10:29:00Z","processed_at":null,"completed_at":null}},"previous_status":null,"metadata":{{}}{}}}}}"#,
            self.event,
            self.event_id,
            30 + self.second / 60,
            self.second % 60,
            self.reference,
            self.reference,
            status,
            self.amount,
            error
        )
    }
}

/// The value of the first sample whose line starts with `prefix` (labels included), or 0.
pub fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

impl TestApp {
    /// `POST path` with a JSON `body` and the bearer `token`: (status, JSON body or null).
    pub async fn post_json_with_token(
        &self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.address))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("sent");
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// `GET path` with the bearer `token`: (status, JSON body or null).
    pub async fn get_with_token(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut request = self.client.get(format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("sent");
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }
}
