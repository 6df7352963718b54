//! Wiring: the settings, the application that runs every stage, the command line and the logs.
//! The only folder that knows all the others.

pub mod cli;
pub mod config;
pub mod startup;
pub mod telemetry;
