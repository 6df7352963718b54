//! The binary: its subcommands, and the service as a process (kill -9, the embedded database,
//! start-up errors, migrate).

mod cli;
mod database_errors;
mod embedded;
mod processes;
