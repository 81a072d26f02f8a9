//! vitssl: a one-layer softmax vision transformer trained with MAE and contrastive objectives on
//! synthetic global/local images, with a f64 reference engine and fused f32 SIMD kernels.
//!
//! The model is specified in `SPEC.md` (summarised in `docs/model.md`); each module cites the
//! section it implements.
#![warn(missing_docs)]

pub mod alloc;
pub mod bench;
pub mod config;
pub mod data;
pub mod embedding;
pub mod engine;
pub mod error;
pub mod fast;
pub mod geometry;
pub mod isa;
pub mod model;
pub mod objectives;
pub mod observables;
pub mod provenance;
pub mod record;
pub mod report;
pub mod reproduce;
pub mod rng;
pub mod sweep;
pub mod train;

pub use error::{Error, Result};
