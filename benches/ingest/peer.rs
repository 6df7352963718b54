//! The peer we measure against: the seed guide's Express receiver (`benches/peer-express`), on the
//! same PostgreSQL and under the same load as the service. npm-installed here when missing.

use std::{path::Path, process::Stdio, time::Duration};

use sqlx::PgPool;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::workload::SECRET;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peer-express");

/// The Express peer, running.
pub struct Peer {
    pub child: Child,
    /// `http://127.0.0.1:<port>`.
    pub address: String,
}

/// Installs the peer's packages when missing (`npm ci`, from its lock file), then starts it.
pub async fn start_express(database_url: &str) -> Peer {
    if !Path::new(DIR).join("node_modules").exists() {
        let status = Command::new("npm")
            .args(["ci", "--silent", "--no-audit", "--no-fund"])
            .current_dir(DIR)
            .status()
            .await
            .expect("npm runs (install Node.js and npm for the Express peer, or pass --no-peer)");
        assert!(status.success(), "npm ci in {DIR} failed");
    }
    let mut child = Command::new("node")
        .arg("server.js")
        .current_dir(DIR)
        .env("DATABASE_URL", database_url)
        .env("FLUID_WEBHOOK_SECRET", SECRET)
        .env("PORT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the peer starts within 30 s")
        .expect("its stdout")
        .expect("the peer printed its address");
    let parsed: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    let address = format!("http://{}", parsed["address"].as_str().expect("address"));
    Peer { child, address }
}

/// Waits until the peer's `setImmediate` upserts have settled (`references` transactions exist and
/// nothing changed for 200 ms: it has no queue to look at, or 60 s passed), and returns when the
/// last of them happened, in seconds since the Unix epoch (the database's clock, this machine's).
pub async fn wait_for_drain(pool: &PgPool, references: i64) -> f64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut last = (-1, 0.0);
    loop {
        let now: (i64, f64) = sqlx::query_as(
            "SELECT count(*), coalesce(extract(epoch FROM max(updated_at))::float8, 0) \
             FROM peer_transactions",
        )
        .fetch_one(pool)
        .await
        .expect("peer transactions");
        if (now.0 >= references && now == last) || tokio::time::Instant::now() > deadline {
            return now.1;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
