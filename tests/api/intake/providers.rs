//! Other senders, declared in the configuration: a FundKit-style aggregator (timestamped HMAC) and
//! a Standard Webhooks sender, over real HTTP into the same inbox.

use fluid_webhooks::{
    app::config::Settings,
    intake::signature::{standard, timestamped},
    secret::Secret,
};

use crate::helpers::{Event, TestApp, spawn_app_with};

const HC_CURRENT: &str = "hc_current_secret";
const HC_PREVIOUS: &str = "hc_previous_secret";
// base64 of 32 bytes, as Standard Webhooks secrets are.
const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW_PREVIOUS: &str = "whsec_c2VjcmV0LW9mLWEtcm90YXRlZC1lbmRwb2ludA==";

fn declare(s: &mut Settings) {
    let declared = "[honeycoin]\nscheme = \"timestamped\"\nsecrets_env = [\"HC_SECRET\", \"HC_SECRET_PREVIOUS\"]\nmapping = \"fundkit\"\n\
                    [acme]\nscheme = \"standard-webhooks\"\nsecrets_env = [\"ACME_SECRET\", \"ACME_SECRET_PREVIOUS\"]\nmapping = \"fluid\"\n";
    s.providers = toml::from_str(declared).expect("valid providers");
    for (name, value) in [
        ("HC_SECRET", HC_CURRENT),
        ("HC_SECRET_PREVIOUS", HC_PREVIOUS),
        ("ACME_SECRET", SW_SECRET),
        ("ACME_SECRET_PREVIOUS", SW_PREVIOUS),
    ] {
        s.provider_secrets.insert(name.into(), Secret::new(value));
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

const FUNDKIT: &str = r#"{"id":"hc_evt_1","type":"transaction.completed","data":{"transactionId":"txn_abc123","externalId":"order_12345","status":"completed","amount":10000,"currency":"UGX","completedAt":"2024-01-15T10:30:00Z","fees":100,"netAmount":9900}}"#;

async fn post_fundkit(app: &TestApp, body: &str, key: &str, at: i64) -> u16 {
    let sig = timestamped::sign(&Secret::new(key), at, body.as_bytes());
    let ts = at.to_string();
    let headers = [
        ("x-webhook-signature", format!("sha256={sig}")),
        ("x-webhook-timestamp", ts),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    app.post_to("honeycoin", body, &headers)
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_fundkit_style_delivery_is_verified_stored_and_applied_in_decimal() {
    let app = spawn_app_with(declare).await;

    assert_eq!(post_fundkit(&app, FUNDKIT, HC_CURRENT, now()).await, 200);

    app.wait_until_processed().await;
    let row: (String, String, String, String) = sqlx::query_as(
        "SELECT provider, status, amount::text, partner_reference FROM transactions WHERE reference = 'txn_abc123'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("applied");
    assert_eq!(
        row,
        (
            "honeycoin".into(),
            "completed".into(),
            "100.00".into(),
            "order_12345".into()
        )
    );
}

#[tokio::test]
async fn timestamped_deliveries_refuse_wrong_keys_stale_future_and_tampered_ones() {
    let app = spawn_app_with(declare).await;
    let tampered = FUNDKIT.replace("10000", "99999");
    let t = now();
    let sig = timestamped::sign(&Secret::new(HC_CURRENT), t, FUNDKIT.as_bytes());
    let ts = t.to_string();

    assert_eq!(
        post_fundkit(&app, FUNDKIT, "not-the-key", now()).await,
        401,
        "wrong key"
    );
    assert_eq!(
        post_fundkit(&app, FUNDKIT, HC_CURRENT, now() - 400).await,
        401,
        "too old"
    );
    assert_eq!(
        post_fundkit(&app, FUNDKIT, HC_CURRENT, now() + 400).await,
        401,
        "from the future"
    );
    let response = app
        .post_to(
            "honeycoin",
            &tampered,
            &[("x-webhook-signature", &sig), ("x-webhook-timestamp", &ts)],
        )
        .await;
    assert_eq!(response.status(), 401, "tampered");
    assert_eq!(app.event_count().await, 0);

    assert_eq!(
        post_fundkit(&app, FUNDKIT, HC_PREVIOUS, now()).await,
        200,
        "the rotated-out key still works"
    );
}

#[tokio::test]
async fn a_standard_webhooks_sender_is_keyed_by_its_signed_message_id() {
    let app = spawn_app_with(declare).await;
    let key = standard::key_bytes(&Secret::new(SW_SECRET)).expect("key");
    let body = Event::new("transaction.completed", "evt_in_body", "FLU-SW-1").body();
    let post = |msg_id: &'static str, at: i64, signature: String| {
        let (app, body) = (&app, body.clone());
        async move {
            let ts = at.to_string();
            let headers = [
                ("webhook-id", msg_id),
                ("webhook-timestamp", ts.as_str()),
                ("webhook-signature", signature.as_str()),
            ];
            app.post_to("acme", &body, &headers).await.status().as_u16()
        }
    };

    // One clock reading for the whole test: a signature and its timestamp header must agree.
    let t = now();
    let good = standard::sign(&key, "msg_1", t, body.as_bytes());
    assert_eq!(
        post("msg_1", t, format!("v1,bm90LWl0 {good}")).await,
        200,
        "one of several signatures matches"
    );
    assert_eq!(post("msg_1", t, good.clone()).await, 200, "a redelivery");
    assert_eq!(post("msg_2", t, good).await, 401, "the id is signed");
    let stale = standard::sign(&key, "msg_3", t - 600, body.as_bytes());
    assert_eq!(post("msg_3", t - 600, stale).await, 401, "stale");
    let future = standard::sign(&key, "msg_4", t + 600, body.as_bytes());
    assert_eq!(post("msg_4", t + 600, future).await, 401, "from the future");
    let wrong = standard::sign(&[9u8; 32], "msg_5", t, body.as_bytes());
    assert_eq!(post("msg_5", t, wrong).await, 401, "wrong key");
    let tampered = standard::sign(&key, "msg_6", t, b"{}");
    assert_eq!(post("msg_6", t, tampered).await, 401, "signed another body");
    let previous = standard::key_bytes(&Secret::new(SW_PREVIOUS)).expect("key");
    let rotated = standard::sign(&previous, "msg_7", t, body.as_bytes());
    assert_eq!(
        post("msg_7", t, rotated).await,
        200,
        "the previous key during a rotation"
    );

    assert_eq!(app.stored("msg_1").await, 1);
    assert_eq!(app.event_count().await, 2, "msg_1 and msg_7");
    app.wait_until_processed().await;
    let provider: String =
        sqlx::query_scalar("SELECT provider FROM transactions WHERE reference = 'FLU-SW-1'")
            .fetch_one(&app.pool)
            .await
            .expect("applied with the fluid mapping");
    assert_eq!(provider, "acme");
}

#[tokio::test]
async fn the_same_event_id_from_two_providers_is_two_events() {
    let app = spawn_app_with(declare).await;
    let fluid = Event::new("transaction.completed", "hc_evt_1", "FLU-SAME").body();

    assert_eq!(app.post_signed(&fluid).await.status(), 200);
    assert_eq!(post_fundkit(&app, FUNDKIT, HC_CURRENT, now()).await, 200);

    assert_eq!(app.stored("hc_evt_1").await, 2);
}

#[tokio::test]
async fn a_declared_provider_without_its_secret_stops_start_up_naming_the_variable() {
    let mut settings = crate::helpers::test_settings("postgres://127.0.0.1:1/x");
    declare(&mut settings);
    settings.provider_secrets.remove("HC_SECRET");

    let err = settings.providers().expect_err("HC_SECRET is required");

    assert!(err.to_string().contains("HC_SECRET"), "{err}");
}
