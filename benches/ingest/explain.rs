//! `--explain-at N`: the plans of the statements the service really runs, with N events stored.
//! The database is filled with N stored events (and half as many transactions), then PostgreSQL's
//! `auto_explain` is turned on for it and the service binary itself is run against it: first
//! ingest-only (new deliveries, then redeliveries), then with the worker applying them. Every
//! plan is read back from PostgreSQL's log, so what is printed is what ran, with the service's own
//! statement text, parameters and plan choice.

use std::{sync::Arc, time::Instant};

use fluid_webhooks::store::embedded_postgres::EmbeddedPostgres;
use sqlx::PgPool;

use crate::{
    postgres::{create_database, start_service, wait_for_drain},
    workload::{Request, load, signed_body},
};

/// How many deliveries each phase sends.
const DELIVERIES: usize = 64;

/// Statements that are not the service's hot path: start-up and the plans' own noise.
const NOT_HOT: &[&str] = &[
    "_sqlx_migrations",
    "pg_advisory_lock(",
    "pg_advisory_unlock(",
    "SELECT 1",
];

/// One plan from PostgreSQL's log: the statement's text and the plan.
struct Plan {
    query: String,
    plan: Vec<String>,
}

/// Fills the database, runs the three phases and prints each phase's distinct statements with
/// their plans. Returns how many plans it printed.
pub async fn run(pg: &EmbeddedPostgres, rows: usize, log: &str) -> usize {
    let url = create_database(pg, "explain").await;
    let pool = PgPool::connect(&url).await.expect("pool");
    fluid_webhooks::store::database::MIGRATOR
        .run(&pool)
        .await
        .expect("migrations");
    fill(&pool, rows).await;
    for setting in [
        "session_preload_libraries = 'auto_explain'",
        "auto_explain.log_min_duration = 0",
        "auto_explain.log_analyze = on",
        "auto_explain.log_buffers = on",
        "auto_explain.log_timing = off",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE explain SET {setting}"
        )))
        .execute(&pool)
        .await
        .expect("auto_explain");
    }
    let server_log = pg.data_dir().join("server.log");
    let new: Vec<Request> = (0..DELIVERIES)
        .map(|i| request(&format!("evt_new_{i}"), &format!("NEW-{i}")))
        .collect();
    let again: Vec<Request> = (0..DELIVERIES)
        .map(|i| {
            // Spread over the stored events, so each is found by the unique index's lookup.
            let stored = i * (rows / DELIVERIES).max(1) % rows.max(1);
            request(&format!("evt_fill_{stored}"), &format!("FILL-{i}"))
        })
        .collect();

    let mut printed = 0;
    let ingest = start_service(&url, log, false, 0).await;
    for (title, requests) in [
        (format!("ingest: {DELIVERIES} new deliveries"), new),
        (format!("ingest: {DELIVERIES} redeliveries"), again),
    ] {
        let from = log_length(&server_log);
        load(&ingest.address, Arc::new(requests), DELIVERIES).await;
        printed += print(&title, &plans_since(&server_log, from));
    }
    stop(ingest).await;

    let from = log_length(&server_log);
    let worker = start_service(&url, log, true, 0).await;
    wait_for_drain(&pool).await;
    stop(worker).await;
    printed += print(
        &format!("worker: applying the {DELIVERIES} new events"),
        &plans_since(&server_log, from),
    );
    pool.close().await;
    printed
}

fn request(event_id: &str, reference: &str) -> Request {
    let (body, signature) = signed_body("transaction.completed", event_id, reference, 0);
    Request {
        event_id: event_id.to_string(),
        body,
        signature,
        forged: false,
    }
}

async fn stop(mut service: crate::postgres::Service) {
    let _ = service.child.start_kill();
    let _ = service.child.wait().await;
}

/// Stores `rows` processed events, half as many transactions, and analyses both tables.
async fn fill(pool: &PgPool, rows: usize) {
    let started = Instant::now();
    let chunk = 1_000_000.min(rows).max(1);
    for start in (0..rows).step_by(chunk) {
        sqlx::query(
            "INSERT INTO webhook_events (event_id, event_type, raw_body, status, outcome, attempts, processed_at) \
             SELECT 'evt_fill_' || g, 'transaction.completed', \
                 convert_to(jsonb_build_object('event', 'transaction.completed', 'event_id', 'evt_fill_' || g, \
                     'timestamp', '2026-01-28T10:30:00Z', 'data', jsonb_build_object('transaction', \
                     jsonb_build_object('reference', 'FLU-FILL-' || (g / 2), 'partner_reference', 'order_' || (g / 2), \
                     'status', 'completed', 'amount', 100.00, 'currency', 'GHS', 'fee', 1.50)))::text, 'UTF8'), \
                 'processed', 'applied', 1, now() \
             FROM generate_series($1::bigint, $2::bigint) AS g",
        )
        .bind(start as i64)
        .bind((start + chunk).min(rows) as i64 - 1)
        .execute(pool)
        .await
        .expect("fill events");
        eprintln!(
            "  {} events stored ({:.0} s)",
            (start + chunk).min(rows),
            started.elapsed().as_secs_f64()
        );
    }
    sqlx::query(
        "INSERT INTO transactions (reference, partner_reference, status, amount, currency, last_event_id, last_event_type, last_event_at) \
         SELECT 'FLU-FILL-' || g, 'order_' || g, 'completed', 100.00, 'GHS', 'evt_fill_' || (2 * g), 'transaction.completed', now() \
         FROM generate_series(0, $1::bigint) AS g",
    )
    .bind((rows / 2) as i64)
    .execute(pool)
    .await
    .expect("fill transactions");
    for table in ["webhook_events", "transactions"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM ANALYZE {table}")))
            .execute(pool)
            .await
            .expect("analyze");
    }
    let size: String =
        sqlx::query_scalar("SELECT pg_size_pretty(pg_total_relation_size('webhook_events'))")
            .fetch_one(pool)
            .await
            .expect("size");
    println!(
        "{rows} stored events ({size} with indexes), {} transactions, filled in {:.0} s\n",
        rows / 2 + 1,
        started.elapsed().as_secs_f64()
    );
}

fn log_length(path: &std::path::Path) -> usize {
    std::fs::read(path).map(|bytes| bytes.len()).unwrap_or(0)
}

/// The plans `auto_explain` logged after byte `from` of the server log.
fn plans_since(path: &std::path::Path, from: usize) -> Vec<Plan> {
    let bytes = std::fs::read(path).expect("PostgreSQL's log");
    let text = String::from_utf8_lossy(&bytes[from.min(bytes.len())..]).to_string();
    let mut plans: Vec<Plan> = Vec::new();
    let mut current: Option<Plan> = None;
    for line in text.lines() {
        if line.contains("LOG:  duration:") && line.ends_with("plan:") {
            plans.extend(current.take());
            current = Some(Plan {
                query: String::new(),
                plan: Vec::new(),
            });
        } else if let (Some(plan), Some(body)) = (current.as_mut(), line.strip_prefix('\t')) {
            match body.strip_prefix("Query Text: ") {
                Some(query) => plan.query = query.to_string(),
                None => plan.plan.push(body.to_string()),
            }
        } else {
            plans.extend(current.take());
        }
    }
    plans.extend(current);
    plans
}

/// The most rows any node of the plan handled: the size of the batch it ran for.
fn most_rows(plan: &Plan) -> u64 {
    plan.plan
        .iter()
        .filter_map(|line| line.split("actual rows=").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .max()
        .unwrap_or(0)
}

/// Prints each distinct hot statement once, with the plan of its largest batch; returns how many.
fn print(title: &str, plans: &[Plan]) -> usize {
    println!("== {title}\n");
    let mut largest: Vec<&Plan> = Vec::new();
    for plan in plans {
        if NOT_HOT.iter().any(|n| plan.query.contains(n)) {
            continue;
        }
        match largest.iter_mut().find(|p| p.query == plan.query) {
            Some(kept) if most_rows(plan) > most_rows(kept) => *kept = plan,
            Some(_) => {}
            None => largest.push(plan),
        }
    }
    let mut printed = 0;
    for plan in largest {
        let shown: String = plan.query.chars().take(240).collect();
        let more = if plan.query.chars().count() > 240 {
            " ..."
        } else {
            ""
        };
        println!("-- {shown}{more}\n{}\n", plan.plan.join("\n"));
        printed += 1;
    }
    printed
}
