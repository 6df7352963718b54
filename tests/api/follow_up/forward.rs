//! Downstream actions: every status change is POSTed to the configured URL, signed the Standard
//! Webhooks way, at least once (a failing receiver gets it again) and in order per transaction.
//! The receiver is a real local HTTP server.

use std::collections::HashMap;

use base64::Engine;
use fluid_webhooks::{app::config::Settings, intake::signature::standard, secret::Secret};
use serde_json::Value;

use crate::{
    helpers::{Event, TestApp, eventually, sample, spawn_app_on, spawn_app_with, wait_until_on},
    stand_in::{Reply, Seen, StandIn},
};

fn forward_secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([7u8; 32])
    )
}

fn forwarding_to(receiver: &StandIn) -> impl FnOnce(&mut Settings) {
    let url = reqwest::Url::parse(&format!("{}/payments/changes", receiver.url)).expect("URL");
    move |s: &mut Settings| {
        s.forward.url = Some(url);
        s.forward.interval_ms = 50;
        s.forward.retry_base_ms = 50;
        s.forward.retry_max_ms = 200;
        s.forward_secret = Some(Secret::new(forward_secret()));
    }
}

/// The (reference, status) of each request, in arrival order.
fn statuses(seen: &[Seen]) -> Vec<(String, String)> {
    seen.iter()
        .map(|s| {
            let body = s.json();
            let text = |k: &str| body[k].as_str().unwrap_or("null").to_string();
            (text("reference"), text("status"))
        })
        .collect()
}

#[tokio::test]
async fn every_status_change_is_forwarded_signed_and_in_order() {
    let receiver = StandIn::start(|_, _| Reply::json(204, "")).await;
    let app = spawn_app_with(forwarding_to(&receiver)).await;
    wait_until_on(&app.pool, "forwarding").await;
    for (event, id, second) in [
        ("transaction.pending", "evt_f1", 1),
        ("transaction.pending", "evt_f2", 2), // no change: not forwarded
        ("transaction.processing", "evt_f3", 3),
        ("transaction.completed", "evt_f4", 4),
    ] {
        app.deliver(&[Event::new(event, id, "FLU-F1").at(second)])
            .await;
    }

    let seen = receiver
        .wait_for("three changes", |seen| seen.len() >= 3)
        .await;
    let bodies: Vec<Value> = seen.iter().map(Seen::json).collect();
    let summary: Vec<(&str, &str, &str)> = bodies
        .iter()
        .map(|b| {
            (
                b["status"].as_str().unwrap_or("-"),
                b["previous_status"].as_str().unwrap_or("null"),
                b["event_id"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("pending", "null", "evt_f1"),
            ("processing", "pending", "evt_f3"),
            ("completed", "processing", "evt_f4"),
        ]
    );
    let key = standard::key_bytes(&Secret::new(forward_secret())).expect("key");
    let now = chrono::Utc::now().timestamp();
    for (request, body) in seen.iter().zip(&bodies) {
        assert_eq!(request.uri.path(), "/payments/changes");
        assert_eq!(request.header("content-type"), "application/json");
        assert_eq!(
            request.header("webhook-id"),
            format!("change_{}", body["id"])
        );
        let verified = standard::verify(
            std::slice::from_ref(&key),
            Some(request.header("webhook-id").as_bytes()),
            Some(request.header("webhook-timestamp").as_bytes()),
            Some(request.header("webhook-signature").as_bytes()),
            &request.body,
            now,
            300,
        );
        assert_eq!(verified, Ok(0), "signed with FORWARD_SECRET");
        assert_eq!(body["type"], "transaction.status_changed");
        assert_eq!(
            (
                body["reference"].as_str(),
                body["partner_reference"].as_str()
            ),
            (Some("FLU-F1"), Some("order_FLU-F1"))
        );
        assert_eq!(
            (body["amount"].as_str(), body["currency"].as_str()),
            (Some("100.00"), Some("GHS")),
            "the amount stays exact"
        );
    }
    wait_until_forwarded(&app).await;
}

/// Waits until every recorded change is marked forwarded (the receiver answers before the
/// forwarder records it).
async fn wait_until_forwarded(app: &TestApp) {
    eventually("every change marked forwarded", async || {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM transaction_changes WHERE forwarded_at IS NULL",
        )
        .fetch_one(&app.pool)
        .await
        .expect("count")
            == 0
    })
    .await;
}

#[tokio::test]
async fn a_failing_receiver_gets_every_change_again_in_order_from_two_replicas() {
    // The first four deliveries fail (500, then 503, ...); later ones succeed.
    let receiver = StandIn::start(|n, _| {
        if n < 4 {
            Reply::json(500 + (n as u16 % 4), r#"{"error":"down"}"#)
        } else {
            Reply::json(200, "{}")
        }
    })
    .await;
    let app = spawn_app_with(forwarding_to(&receiver)).await;
    // A second replica forwards from the same database: order must hold across both.
    let _replica = spawn_app_on(app.database_url.clone(), forwarding_to(&receiver)).await;
    wait_until_on(&app.pool, "forwarding").await;
    for (event, id, reference, second) in [
        ("transaction.pending", "evt_g1", "FLU-G1", 1),
        ("transaction.pending", "evt_g2", "FLU-G2", 1),
        ("transaction.completed", "evt_g3", "FLU-G1", 2),
        ("transaction.failed", "evt_g4", "FLU-G2", 2),
    ] {
        app.deliver(&[Event::new(event, id, reference).at(second)])
            .await;
    }

    let seen = receiver
        .wait_for("four failures, then the four changes", |seen| {
            seen.len() >= 8
        })
        .await;
    let acknowledged = statuses(&seen[4..]);
    let mut by_reference: HashMap<String, Vec<String>> = HashMap::new();
    for (reference, status) in &acknowledged {
        let sent = by_reference.entry(reference.clone()).or_default();
        if sent.last() != Some(status) {
            sent.push(status.clone());
        }
    }
    assert_eq!(by_reference["FLU-G1"], ["pending", "completed"]);
    assert_eq!(by_reference["FLU-G2"], ["pending", "failed"]);
    // In order across every attempt: no final status was sent before its transaction's pending
    // change was acknowledged.
    let all = statuses(&seen);
    for reference in ["FLU-G1", "FLU-G2"] {
        let attempts: Vec<&str> = all
            .iter()
            .filter(|(r, _)| r == reference)
            .map(|(_, s)| s.as_str())
            .collect();
        let first_final = attempts.iter().position(|s| *s != "pending");
        let last_pending = attempts.iter().rposition(|s| *s == "pending");
        assert!(
            first_final > last_pending,
            "{reference}: attempts in order: {attempts:?}"
        );
    }
    wait_until_forwarded(&app).await;
    let retried: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM transaction_changes WHERE attempts > 1 AND forwarded_at IS NOT NULL",
    )
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert!(retried >= 1, "failed deliveries were retried");
    // Every attempt is kept for the console's timeline: as many as the changes counted, the
    // failed ones with their error, one delivered per change.
    let (kept, counted, delivered, failed_without_error): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM forward_attempts), (SELECT sum(attempts)::bigint FROM transaction_changes), \
                (SELECT count(DISTINCT change_id) FROM forward_attempts WHERE error IS NULL), \
                (SELECT count(*) FROM forward_attempts a JOIN transaction_changes c ON c.id = a.change_id \
                 WHERE a.error IS NULL AND a.attempt < c.attempts)",
    )
    .fetch_one(&app.pool)
    .await
    .expect("attempts");
    assert_eq!(kept, counted, "one row per attempt");
    let changes: i64 = sqlx::query_scalar("SELECT count(*) FROM transaction_changes")
        .fetch_one(&app.pool)
        .await
        .expect("changes");
    assert_eq!(delivered, changes);
    assert_eq!(failed_without_error, 0, "only the last attempt delivered");
    let metrics = app.get("/metrics").await.text().await.expect("text");
    for outcome in ["delivered", "failed"] {
        let name = format!(r#"fluid_webhooks_forwarded_total{{outcome="{outcome}"}}"#);
        assert!(sample(&metrics, &name) >= 1.0, "{name}");
    }
}
