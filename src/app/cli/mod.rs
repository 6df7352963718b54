//! The command line, one file per subcommand: [`serve`] (the default), [`migrate`], the helpers
//! for signed curl and testing, [`sign`] and [`send`], the container's [`healthcheck`], the
//! merchant's [`expect`] and the auditor's [`verify_stored`].

pub mod expect;
pub mod healthcheck;
pub mod migrate;
pub mod send;
pub mod serve;
pub mod sign;
pub mod verify_stored;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

pub use expect::ExpectArgs;
pub use send::SendArgs;
pub use verify_stored::VerifyArgs;

use crate::{intake::providers::SECRET_VAR, secret::Secret};

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
    /// Record a debit the merchant initiated with FLUID, before any webhook arrives (through the
    /// database; no admin token needed).
    Expect(ExpectArgs),
    /// Check every stored delivery's signature again with the keys configured now; exits 1 when
    /// any fails.
    VerifyStored(VerifyArgs),
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve::run().await,
        Command::Migrate => migrate::run().await,
        Command::Sign { file, secret } => sign::run(file, require_secret(secret)?),
        Command::Send(args) => send::run(args).await,
        Command::Healthcheck { url } => healthcheck::run(url).await,
        Command::Expect(args) => expect::run(args).await,
        Command::VerifyStored(args) => verify_stored::run(args).await,
    }
}

/// The webhook secret of `sign` and `send`: `--secret`, else `FLUID_WEBHOOK_SECRET`.
pub(crate) fn require_secret(secret: Option<String>) -> anyhow::Result<Secret> {
    secret
        .filter(|s| !s.trim().is_empty())
        .map(|s| Secret::new(s.trim()))
        .with_context(|| format!("{SECRET_VAR} is not set (or pass --secret)"))
}
