//! The command line, one file per subcommand: [`serve`] (the default), [`migrate`], the helpers
//! for signed curl and testing, [`sign`] and [`send`], the container's [`healthcheck`], the
//! merchant's [`expect`], the auditor's [`verify_stored`], and [`psql`] (with `database-url`) for
//! a person looking at the database.

pub mod expect;
pub mod healthcheck;
pub mod migrate;
pub mod psql;
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
    #[command(after_help = CONTRACT_VARIABLES)]
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
    /// Open psql on the service's database (embedded or DATABASE_URL); the password goes through
    /// the environment, never the command line. Arguments after `--` go to psql.
    Psql {
        /// Passed to psql, e.g. `-- -c 'SELECT count(*) FROM webhook_events'`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print the service's database URL (embedded or DATABASE_URL), the password as ****.
    DatabaseUrl {
        /// Print the password too.
        #[arg(long)]
        show_password: bool,
    },
}

/// The variables `serve` reads, listed by `serve --help`. These names are a contract: scripts and
/// deployments depend on them.
const CONTRACT_VARIABLES: &str = "\
Environment:
  FLUID_WEBHOOK_SECRET           the webhook secret FLUID signs with (required)
  FLUID_WEBHOOK_SECRET_PREVIOUS  the secret before a rotation, accepted too until removed
  DATABASE_URL                   postgres://user:password@host:5432/db; unset: an embedded
                                 PostgreSQL in ./.data (see `fluid-webhooks database-url`)
  DATABASE_PASSWORD              the URL's password on its own (encoded into it for you)
  DATABASE_DIRECT_URL            PostgreSQL past PgBouncer (database.transaction_pooling):
                                 migrations and LISTEN; unset, they go through PgBouncer
  FLUID_ENV                      sandbox (default) or production: FLUID's API URL and log format
  PORT, HOST                     where to listen (default 3000 on 127.0.0.1)
  ADMIN_TOKEN                    turns on the admin API under /admin (Bearer token)
  FLUID_API_KEY                  turns on reconciliation: polling FLUID for non-final transactions
  FORWARD_SECRET                 signs status changes POSTed to forward.url (whsec_...)
  RUST_LOG                       log filter, e.g. info or fluid_webhooks=debug
  FLUID_WEBHOOKS_<SECTION>__<KEY>  any key of config/default.toml, e.g.
                                 FLUID_WEBHOOKS_WORKER__BATCH_SIZE=200; lists comma-separated:
                                 FLUID_WEBHOOKS_LIMITS__TRUSTED_PROXIES=127.0.0.1/32,10.0.0.0/8
  FLUID_WEBHOOKS_CONFIG_DIR      where config/*.toml are read from (default ./config)
  <SECRET>_FILE                  any secret above (the webhook secrets, DATABASE_URL or _PASSWORD,
                                 ADMIN_TOKEN, FLUID_API_KEY, FORWARD_SECRET) read from a file,
                                 e.g. FLUID_WEBHOOK_SECRET_FILE=/run/secrets/fluid_webhook_secret";

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
        Command::Psql { args } => {
            let status = psql::psql(args).await?;
            if status.success() {
                Ok(())
            } else {
                Err(anyhow::anyhow!("psql exited with {status}"))
            }
        }
        Command::DatabaseUrl { show_password } => psql::database_url(show_password).await,
    }
}

/// The webhook secret of `sign` and `send`: `--secret`, else `FLUID_WEBHOOK_SECRET`.
pub(crate) fn require_secret(secret: Option<String>) -> anyhow::Result<Secret> {
    secret
        .filter(|s| !s.trim().is_empty())
        .map(|s| Secret::new(s.trim()))
        .with_context(|| format!("{SECRET_VAR} is not set (or pass --secret)"))
}
