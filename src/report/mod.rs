//! `vitssl report`: compare benchmark results across machines, check for regressions, plot.

pub mod schema;

use clap::Subcommand;

/// The `vitssl report` subcommands.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {}

/// Runs a `vitssl report` subcommand; returns the process exit code.
pub fn run(cmd: ReportCommand) -> anyhow::Result<std::process::ExitCode> {
    match cmd {}
}
