//! `--statements`: where PostgreSQL's time goes, per event. `pg_stat_statements` is loaded into the
//! benchmark's private PostgreSQL (one restart), emptied just before the service's load, and read
//! back once the last event is applied: each statement the service ran, with its calls, executor
//! time, rows, WAL and the pages it dirtied, divided by the events sent. Executor time includes the
//! triggers a statement fires; what it cannot show is the commit itself (the WAL flush), which
//! is counted in the table's last line as the remainder of PostgreSQL's CPU.

use fluid_webhooks::store::embedded_postgres::EmbeddedPostgres;
use sqlx::PgPool;

/// Loads `pg_stat_statements` (a restart) and creates it in `template1`, so every database the
/// benchmark creates has it.
pub async fn enable(pg: &EmbeddedPostgres) {
    run_on(
        pg.url().expose(),
        &["ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"],
    )
    .await;
    pg.restart().await.expect("restart with pg_stat_statements");
    // Known only once the library is loaded; sessions opened after the reload count nested
    // statements (a trigger's) too.
    run_on(
        pg.url().expose(),
        &[
            "ALTER SYSTEM SET pg_stat_statements.track = 'all'",
            "SELECT pg_reload_conf()",
        ],
    )
    .await;
    run_on(
        pg.url_for("template1").expose(),
        &["CREATE EXTENSION IF NOT EXISTS pg_stat_statements"],
    )
    .await;
}

/// Runs `statements` in order on a connection of its own to `url`.
async fn run_on(url: &str, statements: &[&'static str]) {
    let pool = PgPool::connect(url).await.expect("connect");
    for statement in statements {
        sqlx::query(*statement)
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    pool.close().await;
}

/// Forgets what was counted so far (the migrations, pgbench): statements, and the database's
/// table counters.
pub async fn reset(pool: &PgPool) {
    for statement in [
        "SELECT pg_stat_statements_reset()",
        "SELECT pg_stat_reset()",
    ] {
        sqlx::query(statement).execute(pool).await.expect("reset");
    }
}

/// One table's counters.
#[derive(sqlx::FromRow)]
struct Table {
    name: String,
    seq_scan: i64,
    seq_tup_read: i64,
    idx_scan: i64,
    inserted: i64,
    updated: i64,
    hot_updated: i64,
}

/// Prints, for each table the load touched, how it was read (sequential scans and the rows they
/// read, index scans) and written (rows inserted, updated, and the share of updates that were HOT:
/// no index touched, the new version on the same page).
async fn print_tables(pool: &PgPool, events: f64) {
    // Backends send their table counters at most once a second, and when they go idle.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let tables: Vec<Table> = sqlx::query_as(
        "SELECT relname::text AS name, seq_scan, seq_tup_read, COALESCE(idx_scan, 0) AS idx_scan, \
                n_tup_ins AS inserted, n_tup_upd AS updated, n_tup_hot_upd AS hot_updated \
         FROM pg_stat_user_tables \
         WHERE seq_scan + COALESCE(idx_scan, 0) + n_tup_ins + n_tup_upd > 0 \
         ORDER BY n_tup_ins + n_tup_upd DESC, relname",
    )
    .fetch_all(pool)
    .await
    .expect("pg_stat_user_tables");
    println!(
        "| table | sequential scans per 1,000 events | rows they read per event | index scans per event | rows inserted per event | rows updated per event | HOT updates |\n|---|---|---|---|---|---|---|"
    );
    for t in tables {
        println!(
            "| `{}` | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {} |",
            t.name,
            t.seq_scan as f64 * 1000.0 / events,
            t.seq_tup_read as f64 / events,
            t.idx_scan as f64 / events,
            t.inserted as f64 / events,
            t.updated as f64 / events,
            if t.updated == 0 {
                "-".to_string()
            } else {
                format!("{:.0} %", t.hot_updated as f64 * 100.0 / t.updated as f64)
            },
        );
    }
    println!();
}

/// One statement's totals.
#[derive(sqlx::FromRow)]
struct Row {
    query: String,
    toplevel: bool,
    calls: i64,
    total_ms: f64,
    rows: i64,
    wal_bytes: f64,
    dirtied: i64,
}

/// Prints the statements of `pool`'s database that took at least 0.5 % of the executor time,
/// costliest first, per event of `events`; `postgres_cpu_us` is PostgreSQL's whole CPU per event
/// (from `/proc`), against which the executor's share is shown.
pub async fn print(pool: &PgPool, events: usize, postgres_cpu_us: f64) {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT regexp_replace(query, '\\s+', ' ', 'g') AS query, toplevel, calls, \
                total_exec_time AS total_ms, rows, wal_bytes::float8 AS wal_bytes, \
                shared_blks_dirtied AS dirtied \
         FROM pg_stat_statements \
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE '/* bench */%' \
         ORDER BY total_exec_time DESC",
    )
    .fetch_all(pool)
    .await
    .expect("pg_stat_statements");
    let events = events as f64;
    let top_level_ms: f64 = rows.iter().filter(|r| r.toplevel).map(|r| r.total_ms).sum();
    println!(
        "\nPostgreSQL per event, from pg_stat_statements ({events:.0} events; executor time, triggers included in the statement that fires them; nested statements indented)\n"
    );
    println!(
        "| statement | calls per 1,000 events | µs per event | rows per event | WAL bytes per event | pages dirtied per 1,000 events |\n|---|---|---|---|---|---|"
    );
    for r in rows.iter().filter(|r| r.total_ms >= top_level_ms * 0.005) {
        let mut text: String = r.query.chars().take(110).collect();
        if text.len() < r.query.len() {
            text.push_str(" …");
        }
        println!(
            "| {}`{}` | {:.1} | {:.1} | {:.2} | {:.0} | {:.1} |",
            if r.toplevel { "" } else { "↳ " },
            text.replace('|', "\\|"),
            r.calls as f64 * 1000.0 / events,
            r.total_ms * 1000.0 / events,
            r.rows as f64 / events,
            r.wal_bytes / events,
            r.dirtied as f64 * 1000.0 / events,
        );
    }
    let executor_us = top_level_ms * 1000.0 / events;
    println!(
        "| all top-level statements | | {executor_us:.1} | | {:.0} | |",
        rows.iter()
            .filter(|r| r.toplevel)
            .map(|r| r.wal_bytes)
            .sum::<f64>()
            / events
    );
    println!(
        "| the rest of PostgreSQL's CPU (parsing, protocol, commits, WAL writer, checkpoints, autovacuum) | | {:.1} | | | |\n",
        (postgres_cpu_us - executor_us).max(0.0)
    );
    print_tables(pool, events).await;
}
