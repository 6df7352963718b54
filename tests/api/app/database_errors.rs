//! Start-up on a database it cannot use says what failed (host and port, user, cause) and never the
//! password; a cause waiting cannot cure ends start-up at once, without retrying.

use reqwest::Url;

use crate::{
    child::command,
    helpers::{SECRET, test_database},
};

/// Runs `migrate` with `url` and a 3 s start-up budget: (exit code, stderr).
async fn migrate_with(url: &str) -> (Option<i32>, String) {
    let output = command(&[
        ("FLUID_WEBHOOK_SECRET", SECRET),
        ("DATABASE_URL", url),
        ("FLUID_WEBHOOKS_DATABASE__STARTUP_TIMEOUT_SECS", "3"),
    ])
    .arg("migrate")
    .output()
    .await
    .expect("runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_database_failure_is_named_with_its_host_port_and_cause() {
    let good = Url::parse(&test_database().await).expect("url");
    let mut wrong_password = good.clone();
    wrong_password
        .set_password(Some("not-the-password"))
        .expect("password");
    let port = closed_port();
    let closed = format!("postgres://fw:secret-pw@127.0.0.1:{port}/db");
    let cases: [(&str, String, &[&str], bool); 5] = [
        (
            "malformed",
            "localhost:5432".into(),
            &[
                "DATABASE_URL",
                "postgres://user:password@host:5432/database",
            ],
            false,
        ),
        (
            "unencoded password",
            "postgres://fw:pa#ss@127.0.0.1/db".into(),
            &["DATABASE_URL", "percent-encode", "%23"],
            false,
        ),
        (
            "wrong password",
            wrong_password.to_string(),
            &[
                "authentication failed",
                &format!("127.0.0.1:{}", good.port().unwrap_or(5432)),
                "percent-encode",
            ],
            false,
        ),
        (
            "unknown host",
            "postgres://fw:secret-pw@no-such-host.invalid:5432/db".into(),
            &[
                "unknown host `no-such-host.invalid`",
                "no-such-host.invalid:5432",
            ],
            false,
        ),
        (
            "closed port",
            closed.clone(),
            &[
                "connection refused",
                &format!("127.0.0.1:{port}"),
                "as `fw`",
            ],
            true,
        ),
    ];
    for (what, url, words, retried) in cases {
        let (code, stderr) = migrate_with(&url).await;
        assert_ne!(code, Some(0), "{what}: {stderr}");
        for word in words {
            assert!(stderr.contains(word), "{what}: `{word}` in\n{stderr}");
        }
        assert!(
            !stderr.contains("pool timed out"),
            "{what}: the cause, not the pool:\n{stderr}"
        );
        for secret in ["secret-pw", "not-the-password", "pa#ss"] {
            assert!(
                !stderr.contains(secret),
                "{what}: the password never shows:\n{stderr}"
            );
        }
        assert_eq!(
            stderr.contains("retrying"),
            retried,
            "{what}: only a cause that may pass is waited for:\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_logs_why_the_database_cannot_be_reached() {
    let database = test_database().await;
    let admin = sqlx::PgPool::connect(&database).await.expect("pool");
    // A role of this test's own, whose password can change under the running service.
    let role = format!("fw_ready_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN SUPERUSER PASSWORD 'first-password'"
    )))
    .execute(&admin)
    .await
    .expect("role");
    let mut url = Url::parse(&database).expect("url");
    url.set_username(&role).expect("user");
    url.set_password(Some("first-password")).expect("password");
    let service = crate::child::Service::start(
        &[
            ("DATABASE_URL", url.as_str()),
            ("FLUID_WEBHOOKS_WORKER__ENABLED", "false"),
            ("FLUID_WEBHOOKS_DATABASE__ACQUIRE_TIMEOUT_MS", "500"),
        ],
        None,
    )
    .await;
    let readyz = || async {
        reqwest::get(format!("{}/readyz", service.address))
            .await
            .expect("readyz")
            .status()
            .as_u16()
    };
    assert_eq!(readyz().await, 200);

    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER ROLE {role} PASSWORD 'second-password'"
    )))
    .execute(&admin)
    .await
    .expect("new password");
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
        .bind(&role)
        .execute(&admin)
        .await
        .expect("drop the service's connections");
    crate::helpers::eventually("readyz answers 503", async || readyz().await == 503).await;
    crate::helpers::eventually("the cause is logged", async || {
        service.logs().contains("authentication failed")
    })
    .await;
    let logs = service.logs();
    assert!(
        logs.contains(&format!("127.0.0.1:{}", url.port().unwrap_or(5432))),
        "{logs}"
    );
    assert!(!logs.contains("first-password"), "{logs}");
    service.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_full_of_url_characters_can_be_given_on_its_own() {
    let database = test_database().await;
    let admin = sqlx::PgPool::connect(&database).await.expect("pool");
    // The kind of password a generator makes, and compose's POSTGRES_PASSWORD may hold.
    let password = "p@ss/:#w%rd?";
    let role = format!("fw_pw_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'"
    )))
    .execute(&admin)
    .await
    .expect("role");
    let mut url = Url::parse(&database).expect("url");
    url.set_username(&role).expect("user");
    url.set_password(None).expect("no password");
    let service = crate::child::Service::start(
        &[
            ("DATABASE_URL", url.as_str()),
            ("DATABASE_PASSWORD", password),
            ("FLUID_WEBHOOKS_WORKER__ENABLED", "false"),
        ],
        None,
    )
    .await;
    let ready = reqwest::get(format!("{}/readyz", service.address))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    assert!(
        !service.logs().contains(password),
        "the password is not logged"
    );
}
