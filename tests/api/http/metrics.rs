//! `GET /metrics`: Prometheus text with the receiver's counters, histograms and gauges.

use crate::helpers::{Event, sample, spawn_app};

#[tokio::test]
async fn metrics_count_deliveries_processing_and_describe_the_database() {
    let app = spawn_app().await;
    let scrape = || async {
        let response = app.get("/metrics").await;
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .expect("text")
                .starts_with("text/plain")
        );
        response.text().await.expect("body")
    };
    let accepted = r#"fluid_webhooks_received_total{provider="fluid",event_type="transaction.completed",outcome="accepted"}"#;
    let before = sample(&scrape().await, accepted);

    assert_eq!(
        app.post_signed(&Event::new("transaction.completed", "evt_m1", "FLU-M1").body())
            .await
            .status(),
        200
    );
    assert_eq!(
        app.post_webhook("{}", &[("x-fluid-signature", "00")])
            .await
            .status(),
        401
    );
    app.wait_until_processed().await;

    let text = scrape().await;
    assert!(sample(&text, accepted) >= before + 1.0, "{text}");
    for name in [
        r#"fluid_webhooks_received_total{provider="fluid",event_type="",outcome="bad_signature"}"#,
        r#"fluid_webhooks_ack_seconds_bucket{provider="fluid",le="0.005"}"#,
        r#"fluid_webhooks_processed_total{provider="fluid",status="processed",outcome="applied"}"#,
        r#"fluid_webhooks_processing_seconds_bucket{provider="fluid""#,
        r#"fluid_webhooks_transaction_duration_seconds_bucket{provider="fluid",status="completed",le="60"}"#,
        "fluid_webhooks_inbox_backlog ",
        "fluid_webhooks_inbox_oldest_pending_age_seconds ",
        r#"fluid_webhooks_transactions{status="completed"}"#,
        r#"fluid_webhooks_db_pool_connections{state="idle"}"#,
        r#"fluid_webhooks_reconciliation_watched{state="polling"}"#,
        "fluid_webhooks_forward_backlog ",
        "fluid_webhooks_forward_oldest_age_seconds ",
        "fluid_webhooks_log_lines_dropped_total ",
    ] {
        assert!(
            text.lines().any(|line| line.starts_with(name)),
            "missing {name} in:\n{text}"
        );
    }
}

/// Every metric the shipped dashboard and alert rules query, as written there (`_bucket` and
/// `_count` included: those are the series Prometheus stores).
fn metrics_the_deploy_files_query() -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let mut files = vec![root.join("prometheus/alerts.yml")];
    for entry in std::fs::read_dir(root.join("grafana/dashboards")).expect("dashboards") {
        files.push(entry.expect("entry").path());
    }
    let mut names = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a deploy file");
        for (start, _) in text.match_indices("fluid_webhooks_") {
            let name: String = text[start..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_service_exposes_every_metric_the_dashboard_and_alerts_query() {
    // A child process: its metrics registry is new, unlike this test process's, which every
    // other test has written to.
    let database = crate::helpers::test_database().await;
    let service = crate::child::Service::start(&[("DATABASE_URL", &database)], None).await;
    let text = reqwest::get(format!("{}/metrics", service.address))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    let wanted = metrics_the_deploy_files_query();
    assert!(wanted.len() >= 15, "the deploy files were read: {wanted:?}");
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|name| {
            !text.lines().any(|line| {
                line.strip_prefix(name.as_str())
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "missing before any delivery: {missing:?}\n{text}"
    );
    for name in wanted.iter().filter(|n| n.ends_with("_total")) {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has help text"
        );
    }
    // The counter the processing-failure alert watches starts at 0 for the configured provider.
    assert_eq!(
        sample(
            &text,
            r#"fluid_webhooks_processing_failures_total{provider="fluid"}"#
        ),
        0.0
    );

    // An event that can never be applied is parked dead, and that is logged at WARN with why.
    let unreadable = r#"{"event":"transaction.completed","event_id":"evt_warn","data":{"transaction":{"reference":"FLU-W","amount":"1,000.00"}}}"#;
    assert_eq!(service.post(unreadable).await, 200);
    crate::helpers::eventually("the parking is logged", async || {
        service.logs().contains("parked dead")
    })
    .await;
    let logs = service.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("parked dead"))
        .unwrap_or_default();
    assert!(
        line.contains(r#""level":"WARN""#) && line.contains("1,000.00") && line.contains("FLU-W"),
        "{line}"
    );
    service.terminate().await;
}
