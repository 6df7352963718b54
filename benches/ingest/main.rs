//! The ingest benchmark: one command starts a private PostgreSQL, the service in release mode and
//! a load generator, then reports throughput, acknowledgement latency, drain time and peak memory,
//! checks that every acknowledged event is stored and applied exactly once, and measures
//! PostgreSQL's single-row commit ceiling (pgbench) in the same run for comparison.
//!
//! ```text
//! cargo bench --bench ingest                          # 50,000 events over 64 connections
//! cargo bench --bench ingest -- --events 20000 --concurrency 16 --duplicates 0.2 --bad-signatures 0.05
//! cargo bench --bench ingest -- --sweep               # C = 1, 16, 64, 256 and 20 % duplicates
//! cargo bench --bench ingest -- --soak-secs 600       # steady load, RSS sampled every 10 s
//! cargo bench --bench ingest -- --explain-at 1000000  # plans of the statements that run, at 1 M events
//! cargo bench --bench ingest -- --statements --no-peer # PostgreSQL's time per event, statement by statement
//! ```
//!
//! `cargo test` runs it too, briefly (a few hundred events, the plans at a few thousand, one
//! second of pgbench), so the benchmark is known to work; it fails if any check fails.
//!
//! The load generator runs on the same machine as the service and PostgreSQL and shares its cores:
//! the absolute numbers say as much about the machine as about the service, hence the ratio to the
//! pgbench ceiling measured in the same run.

mod explain;
mod machine;
mod peer;
mod postgres;
mod statements;
mod workload;

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

use clap::Parser;
use fluid_webhooks::{
    intake::signature,
    secret::Secret,
    store::{embedded_postgres::EmbeddedPostgres, rows::EventStatus},
};
use sqlx::PgPool;

use machine::{cpu_split, memory_kib};
use postgres::{create_database, pgbench_ceiling, start_service, wait_for_drain};
use workload::{Request, SECRET, load, percentile, workload};

/// The ingest benchmark's options (`cargo bench --bench ingest -- --help`).
#[derive(Debug, Clone, Parser)]
#[command(name = "ingest", about = "The ingest benchmark of fluid-webhooks")]
struct Options {
    /// Unique events to send (pending then completed for each transaction).
    #[arg(long, default_value_t = 50_000)]
    events: usize,
    /// Connections sending at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Share of the requests that are redeliveries of an earlier event (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    duplicates: f64,
    /// Share of forged copies (wrong signature) added to the requests.
    #[arg(long, default_value_t = 0.0)]
    bad_signatures: f64,
    /// Run C = 1, 16, 64, 256 and 20 % duplicates.
    #[arg(long)]
    sweep: bool,
    /// Instead: send rounds of `--events` for this many seconds, printing memory.
    #[arg(long, default_value_t = 0)]
    soak_secs: u64,
    /// The service's log level (`RUST_LOG`); `info` is the service's own default, one line per
    /// delivery and per applied event.
    #[arg(long, default_value = "info")]
    log: String,
    /// Run the service without its worker: storing only.
    #[arg(long)]
    ingest_only: bool,
    /// Instead: fill the database with this many events and print the plans of what runs.
    #[arg(long, default_value_t = 0)]
    explain_at: usize,
    /// The service's port (0: any free one); `scripts/render-dashboard` has Prometheus scrape it.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Leave out the Express peer (benches/peer-express), which needs Node.js and npm.
    #[arg(long)]
    no_peer: bool,
    /// Load pg_stat_statements and print, after the run, what each statement costs per event.
    #[arg(long)]
    statements: bool,
    /// Given by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Whether `cargo test` (not `cargo bench`) started this: it passes no `--bench`, and perhaps a
/// test filter, which runs the smoke check only when it names it.
fn smoke_test() -> Option<bool> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--bench") {
        return None;
    }
    let filter = args.iter().find(|a| !a.starts_with('-'));
    Some(filter.is_none_or(|f| "bench_ingest_smoke".contains(f.as_str())))
}

struct Report {
    label: String,
    requests: usize,
    rps: f64,
    acks_per_s: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    drain_ms: f64,
    peak_rss_mib: f64,
    /// CPU µs per request of the receiver, PostgreSQL and the load generator (burst and drain).
    cpu_us: [f64; 3],
    lost: usize,
    verified: String,
}

/// Serves the same load as the service, for comparison: the seed guide's Express receiver.
async fn express_scenario(pg: &EmbeddedPostgres, o: &Options) -> Report {
    let url = create_database(pg, "peer").await;
    let mut express = peer::start_express(&url).await;
    let pid = express.child.id().expect("running");
    let pool = PgPool::connect(&url).await.expect("pool");
    let requests = Arc::new(workload(o.events, 0.0, 0.0));
    let total = requests.len();
    let cpu_before = cpu_split(pid);
    let outcome = load(&express.address, requests, o.concurrency).await;
    let burst_end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let last_applied = peer::wait_for_drain(&pool, (o.events / 2) as i64).await;
    let (peak_kib, _) = memory_kib(pid);
    let cpu_after = cpu_split(pid);
    let (stored, lost) = stored_and_lost(&pool, "peer_events", &outcome.acked).await;
    pool.close().await;
    let _ = express.child.start_kill();
    let _ = express.child.wait().await;
    report(
        "Express peer",
        total,
        &outcome,
        (last_applied - burst_end).max(0.0) * 1000.0,
        peak_kib,
        cpu_before,
        cpu_after,
        lost,
        format!("stored {stored}, lost {lost}"),
    )
}

/// How many events `table` holds, and how many acknowledged ones it lacks.
async fn stored_and_lost(pool: &PgPool, table: &str, acked: &HashSet<String>) -> (usize, usize) {
    let stored: HashSet<String> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT event_id FROM {table}")))
            .fetch_all(pool)
            .await
            .expect("ids")
            .into_iter()
            .collect();
    (stored.len(), acked.difference(&stored).count())
}

#[allow(clippy::too_many_arguments)]
fn report(
    label: &str,
    requests: usize,
    outcome: &workload::Outcome,
    drain_ms: f64,
    peak_kib: u64,
    cpu_before: [f64; 3],
    cpu_after: [f64; 3],
    lost: usize,
    verified: String,
) -> Report {
    let mut sorted = outcome.latencies_us.clone();
    sorted.sort_unstable();
    let secs = outcome.elapsed.as_secs_f64();
    Report {
        label: label.to_string(),
        requests,
        rps: requests as f64 / secs,
        acks_per_s: outcome.statuses[0] as f64 / secs,
        p50: percentile(&sorted, 50.0),
        p90: percentile(&sorted, 90.0),
        p99: percentile(&sorted, 99.0),
        max: percentile(&sorted, 100.0),
        drain_ms,
        peak_rss_mib: peak_kib as f64 / 1024.0,
        cpu_us: std::array::from_fn(|i| (cpu_after[i] - cpu_before[i]) * 1e6 / requests as f64),
        lost,
        verified,
    }
}

async fn scenario(pg: &EmbeddedPostgres, label: &str, o: &Options) -> Report {
    let url = create_database(pg, "bench").await;
    let mut service = start_service(&url, &o.log, !o.ingest_only, o.port).await;
    let pid = service.child.id().expect("running");
    let pool = PgPool::connect(&url).await.expect("pool");
    let requests = Arc::new(workload(o.events, o.duplicates, o.bad_signatures));
    let total = requests.len();

    if o.statements {
        statements::reset(&pool).await;
    }
    let cpu_before = cpu_split(pid);
    let outcome = load(&service.address, requests, o.concurrency).await;
    let burst_end = Instant::now();
    if !o.ingest_only {
        wait_for_drain(&pool).await;
    }
    let drain = burst_end.elapsed();
    let (peak_kib, _) = memory_kib(pid);
    let cpu_after = cpu_split(pid);
    let per_event = |i: usize| (cpu_after[i] - cpu_before[i]) * 1e6 / total as f64;
    let cpu = format!(
        "CPU per request (burst and drain): service {:.0} µs, PostgreSQL {:.0} µs, load generator {:.0} µs",
        per_event(0),
        per_event(1),
        per_event(2)
    );
    if o.statements {
        statements::print(&pool, total, per_event(1)).await;
    }

    // Every acknowledged event stored once and applied once; nothing stored that was not sent.
    let (stored, applied_once, completed): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM webhook_events), \
                (SELECT count(*) FROM webhook_events WHERE status = $1 AND attempts = 1), \
                (SELECT count(*) FROM transactions WHERE status = 'completed')",
    )
    .bind(EventStatus::Processed.as_str())
    .fetch_one(&pool)
    .await
    .expect("verify");
    let (_, lost) = stored_and_lost(&pool, "webhook_events", &outcome.acked).await;
    // What one stored event costs on disk: the table with its indexes and TOAST.
    let bytes_per_event: f64 = sqlx::query_scalar(
        "SELECT pg_total_relation_size('webhook_events')::float8 / greatest(count(*), 1) \
         FROM webhook_events",
    )
    .fetch_one(&pool)
    .await
    .expect("size");
    let applied_ok = o.ingest_only || applied_once == stored;
    let ok = lost == 0 && applied_ok && stored as usize == outcome.acked.len();
    let verified = format!(
        "{} (acked {}, stored {stored}, applied once {applied_once}, lost {lost}, completed transactions {completed}; 200/401/503/4xx/other/error = {:?})",
        if ok { "OK" } else { "FAILED" },
        outcome.acked.len(),
        outcome.statuses
    ) + "\n    "
        + &cpu
        + &format!(
            "\n    storage: {bytes_per_event:.0} bytes per stored event (table, indexes, TOAST)"
        );
    pool.close().await;
    // SIGTERM, so a profiler wrapping the service (BENCH_SERVICE_WRAPPER) writes its counts.
    let _ = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await;
    if tokio::time::timeout(Duration::from_secs(60), service.child.wait())
        .await
        .is_err()
    {
        let _ = service.child.start_kill();
        let _ = service.child.wait().await;
    }
    report(
        label,
        total,
        &outcome,
        drain.as_secs_f64() * 1000.0,
        peak_kib,
        cpu_before,
        cpu_after,
        lost,
        verified,
    )
}

async fn soak(pg: &EmbeddedPostgres, o: &Options) {
    let url = create_database(pg, "bench").await;
    let service = start_service(&url, &o.log, true, o.port).await;
    let pid = service.child.id().expect("running");
    let started = Instant::now();
    let mut round = 0usize;
    println!(
        "soak: {} s of rounds of {} events over {} connections",
        o.soak_secs, o.events, o.concurrency
    );
    println!(
        "{:>6} {:>10} {:>12} {:>12}",
        "t (s)", "events", "RSS (MiB)", "peak (MiB)"
    );
    while started.elapsed().as_secs() < o.soak_secs {
        let requests: Vec<Request> = workload(o.events, 0.0, 0.0)
            .into_iter()
            .map(|mut r| {
                r.event_id = format!("{}_{round}", r.event_id);
                r.body = r
                    .body
                    .replacen(
                        "\"event_id\":\"evt_bench_",
                        &format!("\"event_id\":\"r{round}_evt_bench_"),
                        1,
                    )
                    .replace("FLU-BENCH-", &format!("FLU-R{round}-"));
                r.signature = signature::sign(&Secret::new(SECRET), r.body.as_bytes());
                r
            })
            .collect();
        let _ = load(&service.address, Arc::new(requests), o.concurrency).await;
        round += 1;
        let (peak, now) = memory_kib(pid);
        println!(
            "{:>6} {:>10} {:>12.1} {:>12.1}",
            started.elapsed().as_secs(),
            round * o.events,
            now as f64 / 1024.0,
            peak as f64 / 1024.0
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

fn main() {
    let (o, smoke) = match smoke_test() {
        Some(false) => return, // `cargo test <filter>` for other tests
        Some(true) => (
            Options::parse_from(["ingest", "--events", "400", "--concurrency", "8"]),
            true,
        ),
        None => (Options::parse(), false),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        fluid_webhooks::install_crypto_provider();
        let dir = tempfile::Builder::new().prefix("fluid-webhooks-bench").tempdir().expect("temp dir");
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let pg = EmbeddedPostgres::start(&dir.path().join("pg")).await.expect("private PostgreSQL");
        println!(
            "machine: {} cores, {}; PostgreSQL on the same machine, fsync and synchronous_commit on",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())).unwrap_or_default()
        );
        if smoke {
            println!("bench_ingest_smoke: the benchmark in brief, to know it works");
            let plans = explain::run(&pg, 2_000, &o.log).await;
            assert!(plans >= 5, "the plans of the hot statements are printed ({plans})");
        } else if o.explain_at > 0 {
            explain::run(&pg, o.explain_at, &o.log).await;
            pg.stop().await.expect("stop");
            return;
        }
        if o.soak_secs > 0 {
            soak(&pg, &o).await;
            pg.stop().await.expect("stop");
            return;
        }
        if o.statements {
            statements::enable(&pg).await;
        }
        let clients = o.concurrency.clamp(16, 64);
        let seconds = if smoke { 1 } else { 5 };
        let ceiling = pgbench_ceiling(&pg, clients, seconds, 1).await;
        let batch_ceiling = pgbench_ceiling(&pg, clients, seconds, 100).await;
        println!("pgbench INSERT ... ON CONFLICT DO NOTHING, {clients} clients: {ceiling:.0} commits/s one row each, {batch_ceiling:.0} rows/s in 100-row batches\n");

        let scenarios: Vec<(String, Options)> = if o.sweep {
            let mut list: Vec<(String, Options)> = [1, 16, 64, 256]
                .into_iter()
                .map(|c| (format!("C={c}"), Options { concurrency: c, events: if c == 1 { o.events.min(5_000) } else { o.events }, ..o.clone() }))
                .collect();
            list.push(("C=64, 20% duplicates".into(), Options { concurrency: 64, duplicates: 0.2, ..o.clone() }));
            list
        } else {
            vec![(format!("C={}", o.concurrency), o.clone())]
        };
        println!(
            "| scenario | requests | req/s | acks/s | vs pgbench | p50 ms | p90 ms | p99 ms | max ms | drain ms | peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|---|"
        );
        let mut checks = Vec::new();
        let mut ours = None;
        for (label, options) in scenarios {
            let r = scenario(&pg, &label, &options).await;
            println!(
                "| {} | {} | {:.0} | {:.0} | {:.2}x | {:.2} | {:.2} | {:.2} | {:.1} | {:.0} | {:.1} |",
                r.label, r.requests, r.rps, r.acks_per_s, r.acks_per_s / ceiling, r.p50, r.p90, r.p99, r.max, r.drain_ms, r.peak_rss_mib
            );
            checks.push(format!("{}: {}", r.label, r.verified));
            if options.concurrency == o.concurrency && options.duplicates == 0.0 {
                ours = Some(r);
            }
        }
        println!();
        if let (Some(ours), false) = (ours, o.no_peer || smoke || o.sweep) {
            let express = express_scenario(&pg, &o).await;
            checks.push(format!("{}: {}", express.label, express.verified));
            println!("| receiver, C={} | rate | p50 ms | p99 ms | drain ms | CPU µs per event: receiver, PostgreSQL, load generator | lost |\n|---|---|---|---|---|---|---|", o.concurrency);
            for r in [&ours, &express] {
                println!(
                    "| {} | {:.0} acks/s | {:.2} | {:.2} | {:.0} | {:.0}, {:.0}, {:.0} | {} |",
                    if r.label == "Express peer" { "Express peer (benches/peer-express)" } else { "fluid-webhooks" },
                    r.acks_per_s, r.p50, r.p99, r.drain_ms, r.cpu_us[0], r.cpu_us[1], r.cpu_us[2], r.lost
                );
            }
            println!("| pgbench, one row per commit | {ceiling:.0} commits/s | | | | | |");
            println!("| pgbench, 100-row batches | {batch_ceiling:.0} rows/s | | | | | |\n");
            println!(
                "fluid-webhooks: {:.2}x pgbench's single-row commit rate, {:.2}x its batch rate, {:.1}x the Express peer\n",
                ours.acks_per_s / ceiling, ours.acks_per_s / batch_ceiling, ours.acks_per_s / express.acks_per_s
            );
        }
        for check in &checks {
            println!("{check}");
        }
        pg.stop().await.expect("stop");
        if checks.iter().any(|c| c.contains("FAILED")) {
            std::process::exit(1);
        }
    });
}
