//! A database outage: deliveries get 503 (never a false 200) within FLUID's patience, readiness
//! says 503, and the service recovers by itself when the database returns.
//!
//! The outage is real network trouble: the app reaches PostgreSQL through a TCP proxy that the
//! test can cut (closing every open connection and refusing new ones) and restore.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::Url;
use tokio::{net::TcpListener, sync::watch};

use crate::helpers::{Event, eventually, spawn_app_on, test_database};

/// A loopback TCP proxy to PostgreSQL that can be cut and restored.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, _) = watch::channel(0u64);
        let (flag, cuts) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused at once
                }
                let target = target.clone();
                let mut cut = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { port, up, cut }
    }

    fn go_down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn come_back(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_database_outage_deliveries_get_503_and_the_service_recovers_by_itself() {
    let database = test_database().await;
    let direct = Url::parse(&database).expect("url");
    let proxy = Proxy::start(format!("127.0.0.1:{}", direct.port().unwrap_or(5432))).await;
    let mut proxied = direct.clone();
    proxied.set_port(Some(proxy.port)).expect("port");
    let app = spawn_app_on(proxied.to_string(), |_| {}).await;
    assert_eq!(
        app.post_signed(
            &Event::new("transaction.pending", "evt_before", "FLU-OUT")
                .at(1)
                .body()
        )
        .await
        .status(),
        200
    );

    proxy.go_down();

    let during = Event::new("transaction.completed", "evt_during", "FLU-OUT")
        .at(2)
        .body();
    for _ in 0..3 {
        let started = Instant::now();
        let response = app.post_signed(&during).await;
        let waited = started.elapsed();
        assert_eq!(
            response.status(),
            503,
            "never a 200 while the event cannot be stored"
        );
        assert_eq!(
            response.json::<serde_json::Value>().await.expect("json")["code"],
            "unavailable"
        );
        // FLUID's contract, not a speed claim: an answer inside 5 s lets it retry on schedule.
        assert!(waited < Duration::from_secs(5), "503 took {waited:?}");
    }
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    let live = app.get("/healthz").await;
    assert_eq!(
        live.status(),
        200,
        "liveness does not depend on the database"
    );

    proxy.come_back();

    eventually("deliveries stored again after the outage", async || {
        let status = app.post_signed(&during).await.status();
        assert!(status == 200 || status == 503, "only 200 or 503: {status}");
        status == 200
    })
    .await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    app.wait_until_processed().await;
    assert_eq!(app.stored("evt_during").await, 1);
    assert_eq!(
        app.status_of("FLU-OUT").await.as_deref(),
        Some("completed"),
        "the worker recovered too"
    );
}
