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
//! ```
//!
//! The load generator runs on the same machine as the service and PostgreSQL and shares its cores:
//! the absolute numbers say as much about the machine as about the service, hence the ratio to the
//! pgbench ceiling measured in the same run.

use std::{
    collections::HashSet,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use fluid_webhooks::{
    intake::signature, secret::Secret, store::embedded_postgres::EmbeddedPostgres,
};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::process::{Child, Command};

const SECRET: &str = "whsec_bench_secret";

#[derive(Debug, Clone)]
struct Options {
    events: usize,
    concurrency: usize,
    duplicates: f64,
    bad_signatures: f64,
    sweep: bool,
    soak_secs: u64,
    log: String,
    ingest_only: bool,
    explain_at: usize,
    /// The service's port (0: any free one); `scripts/render-dashboard` has Prometheus scrape it.
    port: u16,
}

fn options() -> Options {
    let mut o = Options {
        events: 50_000,
        concurrency: 64,
        duplicates: 0.0,
        bad_signatures: 0.0,
        sweep: false,
        soak_secs: 0,
        log: "warn".into(),
        ingest_only: false,
        explain_at: 0,
        port: 0,
    };
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        let parse = |v: &str| {
            v.parse::<f64>()
                .unwrap_or_else(|_| panic!("{} takes a number", args[i]))
        };
        match args[i].as_str() {
            "--events" => o.events = parse(&value) as usize,
            "--concurrency" => o.concurrency = parse(&value) as usize,
            "--duplicates" => o.duplicates = parse(&value),
            "--bad-signatures" => o.bad_signatures = parse(&value),
            "--soak-secs" => o.soak_secs = parse(&value) as u64,
            "--explain-at" => o.explain_at = parse(&value) as usize,
            "--port" => o.port = parse(&value) as u16,
            "--log" => o.log = value,
            "--ingest-only" => {
                o.ingest_only = true;
                i += 1;
                continue;
            }
            "--sweep" => {
                o.sweep = true;
                i += 1;
                continue;
            }
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    o
}

/// One request of the load: which event, and whether it is meant to fail verification.
struct Request {
    event_id: String,
    body: String,
    signature: String,
    forged: bool,
}

/// `events` unique events (pending then completed for each transaction), plus duplicates of
/// earlier ones and forged copies, in a shuffled but reproducible order.
fn workload(events: usize, duplicates: f64, bad_signatures: f64) -> Vec<Request> {
    let secret = Secret::new(SECRET);
    let mut requests = Vec::new();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 1_000_000) as f64 / 1_000_000.0
    };
    for i in 0..events {
        let (reference, step) = (i / 2, i % 2);
        let (event, status) = if step == 0 {
            ("transaction.pending", "pending")
        } else {
            ("transaction.completed", "completed")
        };
        let event_id = format!("evt_bench_{i:08}");
        let body = format!(
            r#"{{"event":"{event}","event_id":"{event_id}","timestamp":"2026-01-28T10:30:0{step}Z","api_version":"v1","data":{{"transaction":{{"id":"dt_{reference:08}","uuid":"1b4e28ba-2fa1-11d2-883f-0016d3cca427","reference":"FLU-BENCH-{reference:08}","partner_reference":"order_{reference}","status":"{status}","amount":100.00,"currency":"GHS","fee":1.50,"narration":"Order {reference}","approval_method":"ussd","bank":{{"name":"Test Bank","identifier":"TST","country_code":"GH"}},"customer":{{"name":"Kofi Mensah","phone_number":"+233241234567"}},"created_at":"2026-01-28T10:29:00Z"}},"previous_status":null,"metadata":{{}}}}}}"#
        );
        let signature = signature::sign(&secret, body.as_bytes());
        requests.push(Request {
            event_id,
            body,
            signature,
            forged: false,
        });
    }
    let unique = requests.len();
    let extra_dup = (unique as f64 * duplicates / (1.0 - duplicates).max(0.01)) as usize;
    for _ in 0..extra_dup {
        let original = &requests[(random() * unique as f64) as usize];
        let copy = Request {
            event_id: original.event_id.clone(),
            body: original.body.clone(),
            signature: original.signature.clone(),
            forged: false,
        };
        requests.push(copy);
    }
    let forged = (unique as f64 * bad_signatures) as usize;
    for k in 0..forged {
        let original = &requests[k % unique];
        let copy = Request {
            event_id: original.event_id.clone(),
            body: original.body.clone(),
            signature: "0".repeat(64),
            forged: true,
        };
        requests.push(copy);
    }
    // Fisher-Yates with the same generator, keeping each transaction's two events roughly in order.
    for i in (unique..requests.len()).rev() {
        let j = unique + (random() * (i - unique + 1) as f64) as usize;
        requests.swap(i, j.min(i));
    }
    let mut mixed = Vec::with_capacity(requests.len());
    let mut extras = requests.split_off(unique).into_iter();
    for (i, r) in requests.into_iter().enumerate() {
        mixed.push(r);
        if i % 4 == 3 {
            mixed.extend(extras.next());
        }
    }
    mixed.extend(extras);
    mixed
}

struct Outcome {
    elapsed: Duration,
    latencies_us: Vec<u64>,
    acked: HashSet<String>,
    statuses: [usize; 6], // 200, 401, 503, other 4xx, other, transport error
}

async fn load(address: &str, requests: Arc<Vec<Request>>, concurrency: usize) -> Outcome {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let url = format!("{address}/webhooks/fluid");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, next, requests) =
                (client.clone(), url.clone(), next.clone(), requests.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut acked = Vec::new();
                let mut statuses = [0usize; 6];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(r) = requests.get(i) else { break };
                    let sent = Instant::now();
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("x-fluid-signature", &r.signature)
                        .header("x-fluid-event", "transaction.completed")
                        .header("x-fluid-delivery-id", "dlv_bench")
                        .body(r.body.clone())
                        .send()
                        .await;
                    let status = match response {
                        Ok(resp) => {
                            let code = resp.status().as_u16();
                            let _ = resp.bytes().await;
                            code
                        }
                        Err(_) => 0,
                    };
                    latencies.push(sent.elapsed().as_micros() as u64);
                    let slot = match status {
                        200 => 0,
                        401 => 1,
                        503 => 2,
                        400..=499 => 3,
                        0 => 5,
                        _ => 4,
                    };
                    statuses[slot] += 1;
                    if status == 200 {
                        assert!(!r.forged, "a forged delivery was acknowledged");
                        acked.push(r.event_id.clone());
                    }
                }
                (latencies, acked, statuses)
            })
        })
        .collect();
    let mut outcome = Outcome {
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
        acked: HashSet::new(),
        statuses: [0; 6],
    };
    for task in tasks {
        let (latencies, acked, statuses) = task.await.expect("load task");
        outcome.latencies_us.extend(latencies);
        outcome.acked.extend(acked);
        for (total, n) in outcome.statuses.iter_mut().zip(statuses) {
            *total += n;
        }
    }
    outcome.elapsed = started.elapsed();
    outcome
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank] as f64 / 1000.0
}

/// CPU seconds (user + system) used so far by the processes matching `select`, from /proc
/// (which counts in USER_HZ = 100 ticks a second on Linux).
fn cpu_seconds(select: impl Fn(u32, &str) -> bool) -> f64 {
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !select(pid, &stat[open + 1..close]) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        ticks += fields
            .get(11)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        ticks += fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    ticks as f64 / 100.0
}

/// CPU seconds so far of the service, of PostgreSQL (all its processes) and of this load generator.
fn cpu_split(service: u32) -> [f64; 3] {
    let me = std::process::id();
    [
        cpu_seconds(|pid, _| pid == service),
        cpu_seconds(|_, comm| comm == "postgres"),
        cpu_seconds(|pid, _| pid == me),
    ]
}

/// Peak and current resident memory of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

async fn create_database(pg: &EmbeddedPostgres, name: &str) -> String {
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

/// PostgreSQL's single-row commit ceiling on this machine now: pgbench running one
/// `INSERT ... ON CONFLICT DO NOTHING` per transaction from `clients` connections for 5 s.
async fn pgbench_ceiling(pg: &EmbeddedPostgres, clients: usize) -> f64 {
    let url = create_database(pg, "ceiling").await;
    let mut conn = PgConnection::connect(&url).await.expect("ceiling db");
    sqlx::query("CREATE TABLE ceiling (id text PRIMARY KEY, payload jsonb NOT NULL, at timestamptz NOT NULL DEFAULT now())")
        .execute(&mut conn)
        .await
        .expect("table");
    let script =
        std::env::temp_dir().join(format!("fluid-webhooks-pgbench-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        "\\set id random(1, 2000000000)\nINSERT INTO ceiling (id, payload) VALUES ('evt_' || :client_id || '_' || :id, '{\"event\":\"transaction.completed\",\"amount\":100.00}') ON CONFLICT (id) DO NOTHING;\n",
    )
    .expect("script");
    let url: reqwest::Url = url.parse().expect("url");
    // pgbench sits beside the real initdb (PATH may hold only links to some of the programs).
    let real_bin = std::fs::canonicalize(pg.bin_dir().join("initdb")).expect("initdb");
    let pgbench = real_bin.with_file_name("pgbench");
    let output = Command::new(&pgbench)
        .args(["-n", "-M", "prepared", "-T", "5", "-j", "2"])
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
            "ceiling",
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
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "pgbench said: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

struct Service {
    child: Child,
    address: String,
}

async fn start_service(database_url: &str, log: &str, worker: bool, port: u16) -> Service {
    let port = std::net::TcpListener::bind(("127.0.0.1", port))
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_fluid-webhooks"))
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
    let deadline = Instant::now() + Duration::from_secs(60);
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
async fn wait_for_drain(pool: &PgPool) {
    loop {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM webhook_events WHERE status = 'pending'")
                .fetch_one(pool)
                .await
                .expect("pending");
        if pending == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
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
    verified: String,
}

async fn scenario(pg: &EmbeddedPostgres, label: &str, o: &Options) -> Report {
    let url = create_database(pg, "bench").await;
    let mut service = start_service(&url, &o.log, !o.ingest_only, o.port).await;
    let pid = service.child.id().expect("running");
    let pool = PgPool::connect(&url).await.expect("pool");
    let requests = Arc::new(workload(o.events, o.duplicates, o.bad_signatures));
    let total = requests.len();

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

    // Every acknowledged event stored once and applied once; nothing stored that was not sent.
    let (stored, applied_once, completed): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM webhook_events), \
                (SELECT count(*) FROM webhook_events WHERE status = 'processed' AND attempts = 1), \
                (SELECT count(*) FROM transactions WHERE status = 'completed')",
    )
    .fetch_one(&pool)
    .await
    .expect("verify");
    let stored_ids: HashSet<String> = sqlx::query_scalar("SELECT event_id FROM webhook_events")
        .fetch_all(&pool)
        .await
        .expect("ids")
        .into_iter()
        .collect();
    let lost = outcome.acked.difference(&stored_ids).count();
    let applied_ok = o.ingest_only || applied_once == stored;
    let ok = lost == 0 && applied_ok && stored as usize == outcome.acked.len();
    let verified = format!(
        "{} (acked {}, stored {stored}, applied once {applied_once}, lost {lost}, completed transactions {completed}; 200/401/503/4xx/other/error = {:?})",
        if ok { "OK" } else { "FAILED" },
        outcome.acked.len(),
        outcome.statuses
    ) + "\n    "
        + &cpu;
    pool.close().await;
    let _ = service.child.start_kill();
    let _ = service.child.wait().await;

    let mut sorted = outcome.latencies_us.clone();
    sorted.sort_unstable();
    let secs = outcome.elapsed.as_secs_f64();
    Report {
        label: label.to_string(),
        requests: total,
        rps: total as f64 / secs,
        acks_per_s: outcome.statuses[0] as f64 / secs,
        p50: percentile(&sorted, 50.0),
        p90: percentile(&sorted, 90.0),
        p99: percentile(&sorted, 99.0),
        max: percentile(&sorted, 100.0),
        drain_ms: drain.as_secs_f64() * 1000.0,
        peak_rss_mib: peak_kib as f64 / 1024.0,
        verified,
    }
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

/// Fills a database with `rows` stored events (and half as many transactions), then shows how
/// PostgreSQL runs the hot queries against it: each in a transaction that is rolled back.
async fn explain(pg: &EmbeddedPostgres, rows: usize) {
    let url = create_database(pg, "explain").await;
    let pool = PgPool::connect(&url).await.expect("pool");
    fluid_webhooks::store::database::MIGRATOR
        .run(&pool)
        .await
        .expect("migrations");
    let started = Instant::now();
    let chunk = 1_000_000.min(rows);
    for start in (0..rows).step_by(chunk) {
        sqlx::query(
            "INSERT INTO webhook_events (event_id, event_type, payload, status, outcome, attempts, processed_at) \
             SELECT 'evt_fill_' || g, 'transaction.completed', \
                 jsonb_build_object('event', 'transaction.completed', 'event_id', 'evt_fill_' || g, \
                     'timestamp', '2026-01-28T10:30:00Z', 'data', jsonb_build_object('transaction', \
                     jsonb_build_object('reference', 'FLU-FILL-' || (g / 2), 'partner_reference', 'order_' || (g / 2), \
                     'status', 'completed', 'amount', 100.00, 'currency', 'GHS', 'fee', 1.50))), \
                 'processed', 'applied', 1, now() \
             FROM generate_series($1::bigint, $2::bigint) AS g",
        )
        .bind(start as i64)
        .bind((start + chunk - 1) as i64)
        .execute(&pool)
        .await
        .expect("fill events");
        eprintln!(
            "  {} events stored ({:.0} s)",
            start + chunk,
            started.elapsed().as_secs_f64()
        );
    }
    sqlx::query(
        "INSERT INTO transactions (reference, partner_reference, status, amount, currency, last_event_id, last_event_type, last_event_at) \
         SELECT 'FLU-FILL-' || g, 'order_' || g, 'completed', 100.00, 'GHS', 'evt_fill_' || (2 * g), 'transaction.completed', now() \
         FROM generate_series(0, $1::bigint) AS g",
    )
    .bind((rows / 2) as i64)
    .execute(&pool)
    .await
    .expect("fill transactions");
    for table in ["webhook_events", "transactions"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM ANALYZE {table}")))
            .execute(&pool)
            .await
            .expect("analyze");
    }
    let size: String =
        sqlx::query_scalar("SELECT pg_size_pretty(pg_total_relation_size('webhook_events'))")
            .fetch_one(&pool)
            .await
            .expect("size");
    println!(
        "{rows} stored events ({size} with indexes), {} transactions, filled in {:.0} s\n",
        rows / 2 + 1,
        started.elapsed().as_secs_f64()
    );

    let new_ids: Vec<String> = (0..64).map(|i| format!("evt_new_{i}")).collect();
    let old_ids: Vec<String> = (0..64).map(|i| format!("evt_fill_{}", i * 7919)).collect();
    let refs: Vec<String> = (0..100).map(|i| format!("FLU-FILL-{}", i * 4999)).collect();
    let payload = r#"{"event":"transaction.completed","event_id":"x","data":{"transaction":{"reference":"FLU-NEW"}}}"#;
    let ingest = "INSERT INTO webhook_events (event_id, event_type, delivery_id, delivery_event, delivery_timestamp, payload) \
         SELECT e.event_id, 'transaction.completed', NULL, NULL, NULL, $2::jsonb FROM unnest($1::text[]) WITH ORDINALITY AS e(event_id, n) \
         ORDER BY e.n ON CONFLICT (event_id) DO NOTHING RETURNING event_id";
    let cases: [(&str, String, Vec<String>); 5] = [
        ("ingest: 64 new events in one statement", ingest.to_string(), new_ids.clone()),
        ("ingest: 64 redeliveries (duplicates)", ingest.to_string(), old_ids.clone()),
        (
            "worker: claim a batch",
            "SELECT event_id, event_type, payload::text, received_at, attempts FROM webhook_events \
             WHERE status = 'pending' AND next_attempt_at <= now() ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED"
                .to_string(),
            vec![],
        ),
        (
            "worker: lock and read 100 transactions",
            "SELECT reference, status, last_event_at FROM transactions WHERE reference = ANY($1) FOR UPDATE".to_string(),
            refs.clone(),
        ),
        (
            "worker: record 64 outcomes",
            "UPDATE webhook_events AS e SET status = 'processed', attempts = e.attempts + 1 \
             FROM unnest($1::text[]) AS f(event_id) WHERE e.event_id = f.event_id"
                .to_string(),
            old_ids.clone(),
        ),
    ];
    for (title, sql, ids) in cases {
        let mut tx = pool.begin().await.expect("begin");
        let explain = format!("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}");
        let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(explain));
        if !ids.is_empty() {
            query = query.bind(ids);
        }
        if sql.contains("$2") {
            query = query.bind(payload);
        }
        let plan = query.fetch_all(&mut *tx).await.expect("explain");
        tx.rollback().await.expect("rollback");
        println!("-- {title}\n{}\n", plan.join("\n"));
    }
    pool.close().await;
}

fn main() {
    let o = options();
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
        if o.explain_at > 0 {
            explain(&pg, o.explain_at).await;
            pg.stop().await.expect("stop");
            return;
        }
        if o.soak_secs > 0 {
            soak(&pg, &o).await;
            pg.stop().await.expect("stop");
            return;
        }
        let ceiling = pgbench_ceiling(&pg, o.concurrency.clamp(16, 64)).await;
        println!("pgbench single-row INSERT ... ON CONFLICT DO NOTHING, {} clients: {ceiling:.0} commits/s\n", o.concurrency.clamp(16, 64));

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
        for (label, options) in scenarios {
            let r = scenario(&pg, &label, &options).await;
            println!(
                "| {} | {} | {:.0} | {:.0} | {:.2}x | {:.2} | {:.2} | {:.2} | {:.1} | {:.0} | {:.1} |",
                r.label, r.requests, r.rps, r.acks_per_s, r.acks_per_s / ceiling, r.p50, r.p90, r.p99, r.max, r.drain_ms, r.peak_rss_mib
            );
            checks.push(format!("{}: {}", r.label, r.verified));
        }
        println!();
        for check in &checks {
            println!("{check}");
        }
        pg.stop().await.expect("stop");
        if checks.iter().any(|c| c.contains("FAILED")) {
            std::process::exit(1);
        }
    });
}
