//! `fluid-webhooks send`: build a realistic FLUID event, sign it and POST it with FLUID's headers.

use std::time::Duration;

use anyhow::Context;
use serde_json::value::RawValue;

use super::require_secret;
use crate::{
    apply::mapping::{
        fluid::{EventData, FluidEvent, TransactionData},
        is_decimal,
    },
    intake::{providers::SECRET_VAR, signature},
};

/// Options of `send`.
#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The webhook URL, e.g. http://127.0.0.1:3000/webhooks/fluid.
    #[arg(long)]
    pub url: String,
    /// The event name, e.g. transaction.completed.
    #[arg(long)]
    pub event: String,
    /// The merchant's reference (order id); random when omitted.
    #[arg(long)]
    pub partner_reference: Option<String>,
    /// FLUID's transaction reference; random when omitted.
    #[arg(long)]
    pub reference: Option<String>,
    /// The amount in GHS, sent digit for digit.
    #[arg(long, default_value = "100.00")]
    pub amount: String,
    /// The event id; random when omitted (repeat one to test redelivery).
    #[arg(long)]
    pub event_id: Option<String>,
    /// The webhook secret; defaults to FLUID_WEBHOOK_SECRET.
    #[arg(long, env = SECRET_VAR, hide_env_values = true)]
    pub secret: Option<String>,
}

/// Sends the event and prints the answer; fails unless it is 2xx.
pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    let secret = require_secret(args.secret.clone())?;
    if !is_decimal(&args.amount) {
        anyhow::bail!(
            "--amount must be a decimal number such as 100.00, not `{}`",
            args.amount
        );
    }
    let body = serde_json::to_vec(&sample_event(&args)?)?;
    let event_id = serde_json::from_slice::<FluidEvent>(&body)?.event_id;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let response = client
        .post(&args.url)
        .header("content-type", "application/json")
        .header("user-agent", "fluid-webhooks-send")
        .header("x-fluid-signature", signature::sign(&secret, &body))
        .header("x-fluid-event", &args.event)
        .header("x-fluid-delivery-id", format!("dlv_{}", random_hex(24)))
        .header(
            "x-fluid-timestamp",
            chrono::Utc::now().timestamp().to_string(),
        )
        .body(body)
        .send()
        .await
        .with_context(|| format!("posting to {}", args.url))?;
    let status = response.status();
    let reply = response.text().await.unwrap_or_default();
    println!("{event_id} {} -> HTTP {status}\n{reply}", args.event);
    if status.is_success() {
        Ok(())
    } else {
        anyhow::bail!("the receiver answered {status}")
    }
}

/// A FLUID event shaped like the documented example, for the given event name.
pub fn sample_event(args: &SendArgs) -> anyhow::Result<FluidEvent> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let status = args
        .event
        .strip_prefix("transaction.")
        .unwrap_or("completed")
        .to_string();
    let raw = |text: &str| RawValue::from_string(text.to_string()).context("building the event");
    let failed = status == "failed";
    let (previous, done) = match status.as_str() {
        "created" => (None, false),
        "pending" => (Some("created"), false),
        "processing" => (Some("pending"), false),
        "reversed" => (Some("completed"), true),
        _ => (Some("processing"), true),
    };
    Ok(FluidEvent {
        event: args.event.clone(),
        event_id: args
            .event_id
            .clone()
            .unwrap_or_else(|| format!("evt_{}", random_hex(24))),
        timestamp: Some(now.clone()),
        api_version: Some("v1".into()),
        data: EventData {
            transaction: TransactionData {
                id: Some(format!("dt_{}", random_hex(16))),
                uuid: Some(uuid::Uuid::new_v4().to_string()),
                reference: args.reference.clone().unwrap_or_else(|| {
                    format!(
                        "FLU-{}-{}",
                        chrono::Utc::now().format("%Y%m%d"),
                        random_hex(6).to_uppercase()
                    )
                }),
                partner_reference: Some(
                    args.partner_reference
                        .clone()
                        .unwrap_or_else(|| format!("order_{}", random_hex(8))),
                ),
                status: Some(status),
                amount: Some(raw(&args.amount)?),
                currency: Some("GHS".into()),
                fee: Some(raw("1.50")?),
                narration: Some("Order payment".into()),
                approval_method: Some("ussd".into()),
                bank: Some(raw(
                    r#"{"name":"Test Bank","identifier":"TST","country_code":"GH"}"#,
                )?),
                customer: Some(raw(
                    r#"{"name":"Kofi Mensah","phone_number":"+233241234567"}"#,
                )?),
                created_at: Some(now.clone()),
                processed_at: done.then(|| now.clone()),
                completed_at: (done && !failed).then(|| now.clone()),
            },
            previous_status: previous.map(str::to_string),
            metadata: Some(raw("{}")?),
            error_details: if failed {
                Some(raw(r#"{"code":3009,"message":"Insufficient funds"}"#)?)
            } else {
                None
            },
        },
    })
}

fn random_hex(len: usize) -> String {
    let mut text = String::new();
    while text.len() < len {
        text.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    text.truncate(len);
    text
}
