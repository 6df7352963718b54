//! The `fluid-webhooks` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use fluid_webhooks::app::cli::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    fluid_webhooks::install_crypto_provider();
    let outcome = cli::run(Cli::parse()).await;
    // Log lines still in memory are written before the process ends.
    fluid_webhooks::app::telemetry::flush();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
