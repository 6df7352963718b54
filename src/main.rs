//! The `fluid-webhooks` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use fluid_webhooks::app::cli::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    fluid_webhooks::install_crypto_provider();
    match cli::run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
