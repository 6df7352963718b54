//! `fluid-webhooks sign` and `send`, the helpers for signed curl requests and manual testing.

use std::process::Stdio;

use fluid_webhooks::{intake::signature, secret::Secret};
use tokio::io::AsyncWriteExt;

use crate::{
    child::command,
    helpers::{SECRET, spawn_app},
};

#[tokio::test]
async fn sign_prints_the_signature_of_a_file_and_of_standard_input() {
    let body = br#"{"event":"transaction.completed","event_id":"evt_sign"}"#;
    let expected = signature::sign(&Secret::new(SECRET), body);
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), body).expect("write");

    let from_file = command(&[("FLUID_WEBHOOK_SECRET", SECRET)])
        .arg("sign")
        .arg(file.path())
        .output()
        .await
        .expect("runs");
    let mut child = command(&[])
        .args(["sign", "--secret", SECRET])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body)
        .await
        .expect("write");
    let from_stdin = child.wait_with_output().await.expect("runs");

    for output in [from_file, from_stdin] {
        assert!(output.status.success());
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), expected);
    }
}

#[tokio::test]
async fn sign_without_a_secret_names_the_variable() {
    let output = command(&[])
        .arg("sign")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("FLUID_WEBHOOK_SECRET"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_posts_a_signed_fluid_event_that_the_service_applies() {
    let app = spawn_app().await;
    let url = format!("{}/webhooks/fluid", app.address);

    let output = command(&[("FLUID_WEBHOOK_SECRET", SECRET)])
        .args([
            "send",
            "--url",
            &url,
            "--event",
            "transaction.completed",
            "--reference",
            "FLU-CLI-1",
        ])
        .args(["--partner-reference", "order_77", "--amount", "250.50"])
        .output()
        .await
        .expect("runs");

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("HTTP 200") && stdout.contains(r#"{"received":true}"#),
        "{stdout}"
    );
    app.wait_until_processed().await;
    let (status, amount, partner): (String, String, String) =
        sqlx::query_as("SELECT status, amount::text, partner_reference FROM transactions WHERE reference = 'FLU-CLI-1'")
            .fetch_one(&app.pool)
            .await
            .expect("applied");
    assert_eq!(
        (status.as_str(), amount.as_str(), partner.as_str()),
        ("completed", "250.50", "order_77")
    );
    let delivery: Option<String> = sqlx::query_scalar("SELECT delivery_id FROM webhook_events")
        .fetch_one(&app.pool)
        .await
        .expect("stored");
    assert!(
        delivery.is_some_and(|d| d.starts_with("dlv_")),
        "FLUID's delivery headers are sent"
    );
}

#[tokio::test]
async fn send_with_the_wrong_secret_reports_the_401_and_fails() {
    let app = spawn_app().await;
    let url = format!("{}/webhooks/fluid", app.address);

    let output = command(&[])
        .args([
            "send",
            "--url",
            &url,
            "--event",
            "transaction.failed",
            "--secret",
            "wrong",
        ])
        .output()
        .await
        .expect("runs");

    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("401"));
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn serve_help_lists_the_contract_variables() {
    let output = command(&[])
        .args(["serve", "--help"])
        .output()
        .await
        .expect("runs");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{help}");
    for name in [
        "FLUID_WEBHOOK_SECRET",
        "FLUID_WEBHOOK_SECRET_PREVIOUS",
        "DATABASE_URL",
        "FLUID_ENV",
        "PORT",
        "HOST",
        "ADMIN_TOKEN",
        "FLUID_API_KEY",
        "FORWARD_SECRET",
        "RUST_LOG",
        "FLUID_WEBHOOKS_<SECTION>__<KEY>",
        "FLUID_WEBHOOKS_CONFIG_DIR",
    ] {
        assert!(help.contains(name), "{name} in:\n{help}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_up_line_says_what_is_on() {
    let database = crate::helpers::test_database().await;
    let service = crate::child::Service::start(
        &[
            ("DATABASE_URL", &database),
            ("ADMIN_TOKEN", "start-up-line-token"),
            (
                "FLUID_WEBHOOKS_LIMITS__TRUSTED_PROXIES",
                "127.0.0.1/32,10.0.0.0/8",
            ),
        ],
        None,
    )
    .await;
    let logs = service.logs();
    let line: serde_json::Value = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["address"].is_string())
        .expect("the listening line");
    let fields = &line["fields"];
    let fields = if fields.is_object() { fields } else { &line };
    assert_eq!(fields["providers"], "fluid", "{line}");
    assert_eq!(fields["admin_api"], true, "{line}");
    assert_eq!(fields["console"], true, "{line}");
    assert_eq!(fields["reconciliation"], false, "{line}");
    assert_eq!(fields["forwarding"], false, "{line}");
    assert!(
        fields["limits"]
            .as_str()
            .is_some_and(|l| l.contains("2 trusted proxies") && l.contains("in flight")),
        "{line}"
    );
    assert!(
        !logs.contains("start-up-line-token"),
        "the token never shows"
    );
    service.terminate().await;
}
