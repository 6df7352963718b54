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
    ] {
        assert!(
            text.lines().any(|line| line.starts_with(name)),
            "missing {name} in:\n{text}"
        );
    }
}
