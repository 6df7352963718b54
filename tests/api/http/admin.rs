//! The admin API: off without `ADMIN_TOKEN`, bearer-protected, and what an engineer on call
//! needs: events with filters and paging, one event with its history, replays, statistics,
//! transactions with their events. Its OpenAPI file matches its routes.

use fluid_webhooks::{http::admin::ROUTES, secret::Secret};
use serde_json::Value;

use crate::helpers::{Event, TestApp, spawn_app, spawn_app_with};

const TOKEN: &str = "admin-token-for-tests";

async fn admin_app() -> TestApp {
    spawn_app_with(|s| s.admin_token = Some(Secret::new(TOKEN))).await
}

async fn post(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app
        .client
        .post(format!("{}{path}", app.address))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn without_a_token_configured_there_is_no_admin_api() {
    let app = spawn_app().await;
    assert_eq!(
        app.get_with_token("/admin/events", Some("anything"))
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn the_admin_api_needs_the_bearer_token() {
    let app = admin_app().await;
    assert_eq!(app.get_with_token("/admin/events", None).await.0, 401);
    let (status, body) = app.get_with_token("/admin/events", Some("wrong")).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    assert_eq!(
        app.get_with_token("/admin/events", Some(TOKEN)).await.0,
        200
    );
}

#[tokio::test]
async fn events_are_listed_filtered_paged_inspected_and_replayed() {
    let app = admin_app().await;
    for (id, reference) in [
        ("evt_a1", "FLU-A"),
        ("evt_a2", "FLU-A"),
        ("evt_a3", "FLU-B"),
    ] {
        assert_eq!(
            app.post_signed(&Event::new("transaction.completed", id, reference).body())
                .await
                .status(),
            200
        );
    }
    let broken = r#"{"event":"transaction.completed","event_id":"evt_broken","data":{"transaction":{"amount":5}}}"#;
    assert_eq!(app.post_signed(broken).await.status(), 200);
    app.wait_until_processed().await;

    let (_, dead) = app
        .get_with_token("/admin/events?status=dead", Some(TOKEN))
        .await;
    let dead_ids: Vec<&str> = dead["events"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    assert_eq!(dead_ids, ["evt_broken"]);

    let (_, page1) = app
        .get_with_token("/admin/events?limit=2", Some(TOKEN))
        .await;
    let before = page1["next_before"].as_i64().expect("a next page");
    let (_, page2) = app
        .get_with_token(
            &format!("/admin/events?limit=2&before={before}"),
            Some(TOKEN),
        )
        .await;
    let ids = |page: &Value| {
        page["events"]
            .as_array()
            .expect("list")
            .iter()
            .map(|e| e["event_id"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        [ids(&page1), ids(&page2)].concat(),
        ["evt_broken", "evt_a3", "evt_a2", "evt_a1"],
        "newest first"
    );

    let (status, one) = app
        .get_with_token("/admin/events/fluid/evt_broken", Some(TOKEN))
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["payload"]["data"]["transaction"]["amount"], 5);
    assert_eq!(one["history"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        app.get_with_token("/admin/events/fluid/evt_nope", Some(TOKEN))
            .await
            .0,
        404
    );

    let (status, replay) = post(&app, "/admin/events/fluid/evt_a1/replay").await;
    assert_eq!((status, replay["replayed"].as_bool()), (200, Some(true)));
    let (_, replay_dead) = post(&app, "/admin/events/replay-dead").await;
    assert_eq!(replay_dead["replayed"], 1);
    app.wait_until_processed().await;

    let (_, a1) = app
        .get_with_token("/admin/events/fluid/evt_a1", Some(TOKEN))
        .await;
    assert_eq!(
        (
            a1["event"]["outcome"].as_str(),
            a1["history"].as_array().map(Vec::len)
        ),
        (Some("unchanged"), Some(2)),
        "idempotent"
    );
    let (_, broken) = app
        .get_with_token("/admin/events/fluid/evt_broken", Some(TOKEN))
        .await;
    assert_eq!(
        (
            broken["event"]["status"].as_str(),
            broken["history"].as_array().map(Vec::len)
        ),
        (Some("dead"), Some(2))
    );
    assert_eq!(app.status_of("FLU-A").await.as_deref(), Some("completed"));
}

#[tokio::test]
async fn statistics_and_transaction_lookups() {
    let app = admin_app().await;
    for (event, id, second) in [
        ("transaction.pending", "evt_s1", 1),
        ("transaction.completed", "evt_s2", 2),
    ] {
        assert_eq!(
            app.post_signed(&Event::new(event, id, "FLU-S").at(second).body())
                .await
                .status(),
            200
        );
    }
    app.wait_until_processed().await;

    let (status, stats) = app.get_with_token("/admin/stats", Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(stats["total"]["count"], 2);
    assert!(stats["total"]["p95_processing_seconds"].as_f64().is_some());
    assert_eq!(stats["groups"].as_array().map(Vec::len), Some(2), "{stats}");

    for query in [
        "reference=FLU-S",
        "reference=FLU-S&provider=fluid",
        "partner_reference=order_FLU-S",
    ] {
        let (status, found) = app
            .get_with_token(&format!("/admin/transactions?{query}"), Some(TOKEN))
            .await;
        assert_eq!(status, 200, "{query}");
        let first = &found["transactions"][0];
        assert_eq!(
            (
                first["transaction"]["status"].as_str(),
                first["transaction"]["amount"].as_str()
            ),
            (Some("completed"), Some("100.00"))
        );
        assert_eq!(first["events"].as_array().map(Vec::len), Some(2), "{query}");
    }
    assert_eq!(
        app.get_with_token("/admin/transactions?reference=FLU-NONE", Some(TOKEN))
            .await
            .0,
        404
    );
    assert_eq!(
        app.get_with_token("/admin/transactions", Some(TOKEN))
            .await
            .0,
        400
    );
}

#[test]
fn the_openapi_file_describes_exactly_the_admin_routes() {
    let spec: Value =
        serde_json::from_str(include_str!("../../../docs/openapi.json")).expect("valid JSON");
    let mut documented: Vec<(String, String)> = spec["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, methods)| {
            methods
                .as_object()
                .expect("methods")
                .keys()
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    let mut routed: Vec<(String, String)> = ROUTES
        .iter()
        .map(|route| (route.method.name().to_string(), route.path.to_string()))
        .collect();
    documented.sort();
    routed.sort();
    assert_eq!(documented, routed);
}
