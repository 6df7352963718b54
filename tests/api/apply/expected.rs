//! Expected debits: the merchant announces a debit before any webhook (`POST /admin/transactions`
//! or `fluid-webhooks expect`); the same again is fine, a contradiction is a 409; an event with
//! another amount is applied as FLUID says, and flagged.

use fluid_webhooks::secret::Secret;
use serde_json::{Value, json};

use crate::{
    child::command,
    helpers::{Event, TestApp, sample, spawn_app_with},
};

const TOKEN: &str = "admin-token-for-expected";

async fn admin_app() -> TestApp {
    spawn_app_with(|s| s.admin_token = Some(Secret::new(TOKEN))).await
}

/// `POST /admin/transactions` with this JSON text (sent as written, so `100.00` stays `100.00`).
async fn expect(app: &TestApp, body: &str) -> (u16, Value) {
    let response = app
        .client
        .post(format!("{}/admin/transactions", app.address))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("sent");
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn an_expected_debit_is_created_once_and_a_contradiction_is_a_409() {
    let app = admin_app().await;
    let order = r#"{"reference": "FLU-EXP-1", "partner_reference": "order_1", "amount": 100.00, "currency": "GHS"}"#;

    let (status, created) = expect(&app, order).await;
    assert_eq!(status, 201, "{created}");
    let row = &created["transaction"];
    assert_eq!(
        (row["status"].as_str(), row["expected_amount"].as_str()),
        (Some("created"), Some("100.00")),
        "{row}"
    );
    assert!(row["amount"].is_null(), "FLUID has not said yet");

    let (status, again) = expect(
        &app,
        r#"{"reference": "FLU-EXP-1", "partner_reference": "order_1", "amount": "100.0"}"#,
    )
    .await;
    assert_eq!(
        status, 200,
        "the same debit, the amount written otherwise: {again}"
    );
    assert_eq!(again["transaction"]["expected_amount"], "100.00");

    for (change, field) in [
        (json!({"amount": "90.00"}), "amount"),
        (json!({"currency": "USD"}), "currency"),
        (json!({"partner_reference": "order_2"}), "partner reference"),
    ] {
        let mut body: Value = serde_json::from_str(order).expect("json");
        for (k, v) in change.as_object().expect("object") {
            body[k] = v.clone();
        }
        let (status, error) = expect(&app, &body.to_string()).await;
        assert_eq!(
            (status, error["code"].as_str()),
            (409, Some("conflict")),
            "{field}"
        );
        assert!(
            error["error"].as_str().is_some_and(|e| e.contains(field)),
            "{error}"
        );
    }
    let (status, error) = expect(
        &app,
        r#"{"reference": "FLU-EXP-2", "partner_reference": "o", "amount": "1,000.00"}"#,
    )
    .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("bad_request")),
        "{error}"
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM transactions")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(stored, 1, "refusals change nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_on_the_command_line_goes_through_the_database() {
    let app = admin_app().await;
    let run = |amount: &'static str| {
        let url = app.database_url.clone();
        async move {
            let output = command(&[("DATABASE_URL", url.as_str())])
                .args([
                    "expect",
                    "--reference",
                    "FLU-CLI",
                    "--partner-reference",
                    "order_cli",
                ])
                .args(["--amount", amount])
                .output()
                .await
                .expect("runs");
            (
                output.status.code(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            )
        }
    };
    let (code, out) = run("250.50").await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("created: "), "{out}");
    let (code, out) = run("250.50").await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("already expected: "), "{out}");
    let (code, out) = run("250.00").await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("conflict") && out.contains("250.50"), "{out}");
}

#[tokio::test]
async fn an_event_with_another_amount_is_applied_as_fluid_says_and_flagged() {
    let app = admin_app().await;
    for (reference, amount) in [("FLU-MM", "100.00"), ("FLU-OK", "100.00")] {
        let body = json!({"reference": reference, "partner_reference": format!("order_{reference}"), "amount": amount});
        let (status, _) = expect(&app, &body.to_string()).await;
        assert_eq!(status, 201);
    }
    app.deliver(&[
        Event {
            amount: "90.00",
            ..Event::new("transaction.completed", "evt_mm", "FLU-MM")
        },
        Event {
            amount: "100.0",
            ..Event::new("transaction.completed", "evt_ok", "FLU-OK")
        },
    ])
    .await;

    let rows: Vec<(String, String, String, String, bool)> = sqlx::query_as(
        "SELECT reference, status, amount::text, expected_amount::text, amount_mismatch \
         FROM transactions ORDER BY reference",
    )
    .fetch_all(&app.pool)
    .await
    .expect("rows");
    assert_eq!(
        rows,
        [
            (
                "FLU-MM".into(),
                "completed".into(),
                "90.00".into(),
                "100.00".into(),
                true
            ),
            (
                "FLU-OK".into(),
                "completed".into(),
                "100.0".into(),
                "100.00".into(),
                false
            ),
        ],
        "FLUID is the source of truth; the mismatch is recorded"
    );
    let metrics = app.get("/metrics").await.text().await.expect("text");
    assert!(
        sample(
            &metrics,
            r#"fluid_webhooks_amount_mismatches_total{provider="fluid"}"#
        ) >= 1.0,
        "{metrics}"
    );
    let (_, found) = app
        .get_with_token("/admin/transactions?reference=FLU-MM", Some(TOKEN))
        .await;
    assert_eq!(
        found["transactions"][0]["transaction"]["amount_mismatch"],
        true
    );
}
