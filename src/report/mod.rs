//! `vitssl report`: compare benchmark results across machines, check for regressions, plot.
//!
//! - [`read`]: result directories, result CSVs and criterion baselines into typed rows;
//! - [`compare`]: median-time ratios across inputs or across variants;
//! - [`regress`]: the regression rule (slower than a threshold *and* beyond the noise);
//! - [`plot`]: SVG figures of convergence and kernel throughput;
//! - [`schema`]: the typed rows of the result files; [`error`]: what can go wrong.

pub mod compare;
pub mod error;
pub mod plot;
pub mod read;
pub mod regress;
pub mod schema;

pub use error::ReportError;

use clap::Subcommand;

/// The `vitssl report` subcommands.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Median times of several inputs (or of the variants within one) as ratios to a reference.
    Compare(compare::CompareArgs),
    /// Flag benchmarks slower than a threshold beyond their noise; exit 1 if any, 2 on bad input.
    Regress(regress::RegressArgs),
    /// SVG figures of convergence and kernel throughput from a results directory.
    Plot(plot::PlotArgs),
}

/// Runs a `vitssl report` subcommand; returns the process exit code.
pub fn run(cmd: ReportCommand) -> anyhow::Result<std::process::ExitCode> {
    match cmd {
        ReportCommand::Compare(args) => compare::run(args),
        ReportCommand::Regress(args) => regress::run(args),
        ReportCommand::Plot(args) => plot::run(args),
    }
}
