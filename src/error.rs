//! The library's error type: every invalid input names the offending value and says what to do.

use thiserror::Error;

/// Everything that can go wrong in vitssl's library code.
#[derive(Debug, Error, PartialEq)]
pub enum Error {
    /// A grid dimension, block size, cluster count or other size is unusable.
    #[error("invalid geometry: {0}")]
    Geometry(String),
    /// A configuration value is outside its allowed range.
    #[error("invalid value for {name}: {value} ({hint})")]
    Config {
        /// The configuration field or flag.
        name: &'static str,
        /// The offending value, as given.
        value: String,
        /// What the value must satisfy.
        hint: String,
    },
    /// The loss or the gradient stopped being finite during training.
    #[error(
        "non-finite {what} at step {step}: training diverged; lower --lr (now {lr:?}) or check the configuration"
    )]
    NonFinite {
        /// "loss" or "gradient".
        what: &'static str,
        /// The step at which it happened (1-based: the step whose gradient was being formed).
        step: usize,
        /// The learning rate in use.
        lr: f64,
    },
    /// A requested SIMD level is not available on this CPU.
    #[error("instruction set {requested} is not available on this CPU (available: {available})")]
    Isa {
        /// The level asked for.
        requested: String,
        /// The levels this CPU has.
        available: String,
    },
}

impl Error {
    /// Shorthand for [`Error::Config`].
    pub fn config(name: &'static str, value: impl ToString, hint: impl Into<String>) -> Self {
        Error::Config {
            name,
            value: value.to_string(),
            hint: hint.into(),
        }
    }
}

/// `Result` with vitssl's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
