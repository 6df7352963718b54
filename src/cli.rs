//! The command line: `serve` (the default), `migrate`, and two helpers for signed curl and testing,
//! `sign` and `send`.

use std::{io::Read, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::value::RawValue;

use crate::{
    config::{SECRET_VAR, Settings},
    database,
    embedded_postgres::EmbeddedPostgres,
    payload::{EventData, FluidEvent, TransactionData, is_decimal},
    secret::Secret,
    signature, startup, telemetry,
};

/// Receives FLUID Network payment webhooks and keeps transaction state right.
#[derive(Debug, Parser)]
#[command(name = "fluid-webhooks", version, about)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the webhook receiver (the default).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Print the X-FLUID-Signature of a body read from FILE or standard input.
    Sign {
        /// The body; standard input when omitted.
        file: Option<PathBuf>,
        /// The webhook secret; defaults to FLUID_WEBHOOK_SECRET.
        #[arg(long, env = SECRET_VAR, hide_env_values = true)]
        secret: Option<String>,
    },
    /// Build a realistic FLUID event, sign it and POST it with FLUID's headers.
    Send(SendArgs),
    /// Exit 0 when the service on this machine answers /healthz (the container's HEALTHCHECK,
    /// which has no shell or curl).
    Healthcheck {
        /// The URL to check; defaults to http://127.0.0.1:$PORT/healthz.
        #[arg(long)]
        url: Option<String>,
    },
}

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

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let settings = Settings::from_env()?;
            telemetry::init(settings.log.format);
            startup::serve(settings).await
        }
        Command::Migrate => migrate().await,
        Command::Sign { file, secret } => {
            let secret = require_secret(secret)?;
            let body = match file {
                Some(path) => {
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?
                }
                None => {
                    let mut body = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut body)
                        .context("reading standard input")?;
                    body
                }
            };
            println!("{}", signature::sign(&secret, &body));
            Ok(())
        }
        Command::Send(args) => send(args).await,
        Command::Healthcheck { url } => {
            let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
            let url = url.unwrap_or_else(|| format!("http://127.0.0.1:{port}/healthz"));
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?;
            let status = client
                .get(&url)
                .send()
                .await
                .with_context(|| format!("GET {url}"))?
                .status();
            anyhow::ensure!(status.is_success(), "GET {url} answered {status}");
            Ok(())
        }
    }
}

async fn migrate() -> anyhow::Result<()> {
    let settings = Settings::without_secret(&std::env::vars().collect())?;
    telemetry::init(settings.log.format);
    let embedded = match &settings.database_url {
        Some(_) => None,
        None => Some(EmbeddedPostgres::start(&settings.database.embedded_data_dir).await?),
    };
    let url = match (&embedded, &settings.database_url) {
        (Some(pg), _) => pg.url(),
        (None, Some(url)) => url.clone(),
        (None, None) => unreachable!("one of the two is set"),
    };
    let pool = database::pool(&url, &settings.database)?;
    let result = database::migrate(
        &pool,
        Duration::from_secs(settings.database.startup_timeout_secs),
    )
    .await;
    pool.close().await;
    if let Some(pg) = embedded {
        pg.stop().await?;
    }
    result?;
    println!("migrations applied");
    Ok(())
}

fn require_secret(secret: Option<String>) -> anyhow::Result<Secret> {
    secret
        .filter(|s| !s.trim().is_empty())
        .map(|s| Secret::new(s.trim()))
        .with_context(|| format!("{SECRET_VAR} is not set (or pass --secret)"))
}

async fn send(args: SendArgs) -> anyhow::Result<()> {
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
