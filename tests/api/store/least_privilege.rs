//! Managed PostgreSQL gives no superuser: the service migrates and runs as a role that cannot
//! create databases or roles and owns only its own schema (the grants the README lists).

use sqlx::{Connection, PgConnection, PgPool};

use crate::{
    child::Service,
    helpers::{Event, empty_database, eventually},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_owns_only_its_schema_migrates_receives_and_applies() {
    let admin_url = empty_database().await;
    let mut url = reqwest::Url::parse(&admin_url).expect("URL");
    let database = url.path().trim_start_matches('/').to_string();
    let role = format!(
        "fw_app_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let password = "s3cret@/:#?%";

    // What a managed PostgreSQL's administrator runs once: the README's grants, word for word.
    let mut admin = PgConnection::connect(&admin_url).await.expect("admin");
    for statement in [
        format!(
            "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{password}'"
        ),
        format!("REVOKE ALL ON DATABASE \"{database}\" FROM PUBLIC"),
        "REVOKE ALL ON SCHEMA public FROM PUBLIC".to_string(),
        format!("GRANT CONNECT, TEMPORARY ON DATABASE \"{database}\" TO {role}"),
        format!("CREATE SCHEMA fluid_webhooks AUTHORIZATION {role}"),
        format!("ALTER ROLE {role} IN DATABASE \"{database}\" SET search_path = fluid_webhooks"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .expect("grant");
    }

    url.set_username(&role).expect("user");
    url.set_password(None).expect("no password");
    let service = Service::start(
        &[
            ("DATABASE_URL", url.as_str()),
            ("DATABASE_PASSWORD", password),
            ("ADMIN_TOKEN", "least-privilege-admin"),
        ],
        None,
    )
    .await;
    for i in 0..5 {
        let (id, reference) = (format!("evt_lp_{i}"), format!("FLU-LP-{i}"));
        let body = Event::new("transaction.completed", &id, &reference).body();
        assert_eq!(service.post(&body).await, 200, "{}", service.logs());
    }

    let pool = PgPool::connect(&admin_url).await.expect("pool");
    eventually("the five events applied", async || {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM fluid_webhooks.transactions WHERE status = 'completed'",
        )
        .fetch_one(&pool)
        .await
        .expect("count")
            == 5
    })
    .await;
    // Everything the service made is in its schema and owned by its role; nothing in public.
    let (in_schema, foreign, in_public): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE n.nspname = 'fluid_webhooks'), \
                count(*) FILTER (WHERE n.nspname = 'fluid_webhooks' AND pg_get_userbyid(c.relowner) <> $1), \
                count(*) FILTER (WHERE n.nspname = 'public') \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace",
    )
    .bind(&role)
    .fetch_one(&pool)
    .await
    .expect("catalogue");
    assert!(in_schema > 10, "the tables are in the role's schema");
    assert_eq!((foreign, in_public), (0, 0));
    let is_super: bool =
        sqlx::query_scalar("SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = $1")
            .bind(&role)
            .fetch_one(&pool)
            .await
            .expect("role");
    assert!(!is_super);

    // The admin API reads as that role too.
    let events: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/admin/events", service.address))
        .bearer_auth("least-privilege-admin")
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    assert_eq!(
        events["events"].as_array().map(Vec::len),
        Some(5),
        "{events}"
    );

    let (code, logs) = service.terminate().await;
    assert_eq!(code, Some(0), "{logs}");
    assert!(!logs.contains(password), "the password is never logged");
}
