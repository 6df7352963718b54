//! Evidence: every delivery is kept byte for byte with its signature and the key that verified
//! it, the admin API shows it, and `fluid-webhooks verify-stored` proves the stored events
//! authentic again (and names the one altered behind the service's back), also across a secret
//! rotation.

use fluid_webhooks::{
    intake::{providers::key_id, signature},
    secret::Secret,
};
use sqlx::PgPool;

use crate::{
    child::command,
    helpers::{Event, SECRET, spawn_app, spawn_app_with},
};

const TOKEN: &str = "admin-token-for-evidence";

/// A body as no serializer would write it: odd whitespace and key order, `1.10`, a `\u00e9`
/// escape, a duplicated key, a trailing newline.
const ODD: &str = "{\n  \"event_id\" :\"evt_exact\",\"event\":\"transaction.completed\",\t\"timestamp\":\"2026-01-28T10:30:00Z\",\n \"data\":{\"transaction\":{\"reference\":\"FLU-EXACT\",\"amount\":1.10,\"fee\" : 1.50,\"currency\":\"GHS\",\"narration\":\"caf\\u00e9\",\"bank\":{\"name\":\"A\",\"name\":\"B\"}}}}\n";

#[tokio::test]
async fn a_delivery_comes_back_byte_for_byte_with_its_signature_and_key() {
    let app = spawn_app_with(|s| s.admin_token = Some(Secret::new(TOKEN))).await;
    let sig = signature::sign(&Secret::new(SECRET), ODD.as_bytes());
    assert_eq!(app.post_signed(ODD).await.status(), 200);
    app.wait_until_processed().await;

    let (status, one) = app
        .get_with_token("/admin/events/fluid/evt_exact", Some(TOKEN))
        .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["raw_body"], ODD, "the exact bytes");
    assert_eq!(one["signature"], sig.as_str());
    assert_eq!(one["key_id"], key_id(SECRET.as_bytes()).as_str());
    assert_eq!(one["raw_exact"], true);
    assert_eq!(one["verifies_now"], true);
    assert!(!one.to_string().contains(SECRET), "never the key");
    let stored: Vec<u8> =
        sqlx::query_scalar("SELECT raw_body FROM webhook_events WHERE event_id = 'evt_exact'")
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert_eq!(stored, ODD.as_bytes());
    let amount: String =
        sqlx::query_scalar("SELECT amount::text FROM transactions WHERE reference = 'FLU-EXACT'")
            .fetch_one(&app.pool)
            .await
            .expect("applied");
    assert_eq!(amount, "1.10");
}

/// Runs `verify-stored` against `database_url` with these secrets: (exit code, stdout).
async fn verify_stored(database_url: &str, secrets: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut vars = vec![("DATABASE_URL", database_url)];
    vars.extend_from_slice(secrets);
    let output = command(&vars)
        .arg("verify-stored")
        .output()
        .await
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    (output.status.code(), format!("{stdout}{stderr}"))
}

async fn rows_like_before_evidence_and_from_a_poll(pool: &PgPool) {
    sqlx::raw_sql(
        "INSERT INTO webhook_events (event_id, event_type, raw_body, raw_exact, status) \
             VALUES ('evt_old_row', 'transaction.completed', '\\x7b7d', false, 'processed'); \
         INSERT INTO webhook_events (event_id, event_type, raw_body, source, status) \
             VALUES ('poll:FLU-P:completed:t', 'transaction.completed', '\\x7b7d', 'poll', 'processed')",
    )
    .execute(pool)
    .await
    .expect("rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_stored_names_an_event_altered_after_storage_and_fails() {
    let app = spawn_app().await;
    app.deliver(&[
        Event::new("transaction.completed", "evt_kept", "FLU-KEPT"),
        Event::new("transaction.completed", "evt_tampered", "FLU-TAMPERED"),
    ])
    .await;
    rows_like_before_evidence_and_from_a_poll(&app.pool).await;

    let (code, out) = verify_stored(&app.database_url, &[("FLUID_WEBHOOK_SECRET", SECRET)]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("verified: 2\nfailed: 0\nno key: 0\nnot exact: 1\nnot signed: 1"),
        "{out}"
    );

    sqlx::query(
        "UPDATE webhook_events SET raw_body = convert_to(replace(convert_from(raw_body, 'UTF8'), \
             '\"amount\":100.00', '\"amount\":900.00'), 'UTF8') WHERE event_id = 'evt_tampered'",
    )
    .execute(&app.pool)
    .await
    .expect("tamper");
    let (code, out) = verify_stored(&app.database_url, &[("FLUID_WEBHOOK_SECRET", SECRET)]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAILED fluid evt_tampered"), "{out}");
    assert!(out.contains("verified: 1\nfailed: 1"), "{out}");
    assert!(!out.contains("evt_kept"), "{out}");
    assert!(!out.contains(SECRET), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rotation_old_events_verify_with_the_previous_secret_and_have_no_key_without_it() {
    const OLD: &str = "whsec_the_old_one";
    let app = spawn_app_with(|s| s.secret = Secret::new(OLD)).await;
    let body = Event::new("transaction.completed", "evt_before_rotation", "FLU-ROT").body();
    let sig = signature::sign(&Secret::new(OLD), body.as_bytes());
    assert_eq!(
        app.post_webhook(&body, &[("x-fluid-signature", sig.as_str())])
            .await
            .status(),
        200
    );

    let rotating = [
        ("FLUID_WEBHOOK_SECRET", "whsec_the_new_one"),
        ("FLUID_WEBHOOK_SECRET_PREVIOUS", OLD),
    ];
    let (code, out) = verify_stored(&app.database_url, &rotating).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("verified: 1\nfailed: 0\nno key: 0"), "{out}");

    let rotated = [("FLUID_WEBHOOK_SECRET", "whsec_the_new_one")];
    let (code, out) = verify_stored(&app.database_url, &rotated).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("verified: 0\nfailed: 0\nno key: 1"), "{out}");
}
