//! Errors of `vitssl report`: every one names the file, id or value at fault.

use std::path::PathBuf;
use thiserror::Error;

/// Everything that can go wrong reading, comparing or plotting benchmark results.
#[derive(Debug, Error)]
pub enum ReportError {
    /// A file or directory could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The path at fault.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A CSV file could not be parsed into typed rows.
    #[error("cannot read {path}: {source}")]
    Csv {
        /// The file at fault.
        path: PathBuf,
        /// The underlying error (it names the line and field).
        source: csv::Error,
    },
    /// A CSV file is neither a benchmark file nor a convergence file.
    #[error(
        "{path} is not a result file: expected the header of kernels.csv/step.csv (with median_ns) \
         or of convergence.csv (with objective and steps)"
    )]
    UnknownCsv {
        /// The file at fault.
        path: PathBuf,
    },
    /// A criterion JSON file could not be parsed.
    #[error("cannot parse {path}: {source}")]
    Json {
        /// The file at fault.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// An id occurs twice in one file.
    #[error("duplicate id '{id}' in {path}: ids must be unique within a file")]
    DuplicateId {
        /// The repeated id.
        id: String,
        /// The file that repeats it.
        path: PathBuf,
    },
    /// An id occurs in two files (or two criterion directories) of one input.
    #[error("id '{id}' occurs in both {first} and {second}")]
    DuplicateAcross {
        /// The repeated id.
        id: String,
        /// Where it occurs first.
        first: PathBuf,
        /// Where it occurs again.
        second: PathBuf,
    },
    /// A results directory holds none of the result files.
    #[error("no result files (kernels.csv, step.csv, convergence.csv) in {path}")]
    NoResults {
        /// The directory.
        path: PathBuf,
    },
    /// An input to compare or regress holds no timing rows.
    #[error("{path} holds no timing rows: compare and regress read kernels.csv and step.csv")]
    NoTimings {
        /// The directory or file.
        path: PathBuf,
    },
    /// A criterion baseline name was not found.
    #[error(
        "no criterion baseline '{name}' under {dir} (baselines found: {found}); \
         save one with `cargo bench --bench '*' -- --save-baseline {name}`"
    )]
    NoBaseline {
        /// The criterion output directory searched.
        dir: PathBuf,
        /// The baseline asked for.
        name: String,
        /// The baseline names that do exist, comma-separated (or `none`).
        found: String,
    },
    /// A regression threshold could not be parsed.
    #[error(
        "invalid threshold '{value}': give a percentage such as 5% or a fraction in [0, 1] such as 0.05"
    )]
    Threshold {
        /// The value as given.
        value: String,
    },
    /// The command line combines inputs or flags in an unusable way.
    #[error("{0}")]
    Usage(String),
    /// A figure could not be drawn.
    #[error("cannot draw {path}: {message}")]
    Plot {
        /// The figure being drawn.
        path: PathBuf,
        /// What plotters reported.
        message: String,
    },
}

impl ReportError {
    /// Shorthand for [`ReportError::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ReportError::Io {
            path: path.into(),
            source,
        }
    }
}

/// `Result` with [`ReportError`].
pub type Result<T> = std::result::Result<T, ReportError>;
