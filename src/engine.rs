//! Engines: what computes the batch loss and its gradient `∇_Q L` for the training loop.
//!
//! The [`ReferenceEngine`] is the f64 formula of SPEC §5 ([`crate::objectives`]). The training loop
//! keeps `Q` in f64 and talks to every engine through [`Engine`], so both produce the same CSV.

use crate::config::Objective;
use crate::data::{DataModel, Sample};
use crate::objectives::batch_loss_grad;
use faer::{MatMut, MatRef};

/// Computes a batch's loss and gradient.
pub trait Engine: Send {
    /// `reference` or `fast`.
    fn name(&self) -> &'static str;
    /// The instruction set the engine runs on, as recorded in CSV rows.
    fn isa(&self) -> String;
    /// Batch loss `L`; writes `∇_Q L` into `grad` (`d × d`, overwritten).
    fn loss_grad(&mut self, q: MatRef<'_, f64>, batch: &[Sample], grad: MatMut<'_, f64>) -> f64;
}

/// The f64 reference engine: the formulas of SPEC §5, parallel over fixed sample chunks.
pub struct ReferenceEngine<'a> {
    dm: &'a DataModel,
    objective: Objective,
    tau: f64,
}

impl<'a> ReferenceEngine<'a> {
    /// A reference engine for `objective` (with temperature `tau` for CL).
    pub fn new(dm: &'a DataModel, objective: Objective, tau: f64) -> Self {
        Self { dm, objective, tau }
    }
}

impl Engine for ReferenceEngine<'_> {
    fn name(&self) -> &'static str {
        "reference"
    }

    fn isa(&self) -> String {
        "f64".to_string()
    }

    fn loss_grad(&mut self, q: MatRef<'_, f64>, batch: &[Sample], grad: MatMut<'_, f64>) -> f64 {
        batch_loss_grad(self.objective, self.tau, self.dm, q, batch, Some(grad))
    }
}

/// Which engine computes the gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    /// The f64 reference ([`ReferenceEngine`]).
    Reference,
    /// The fused f32 SIMD engine.
    Fast,
}

impl EngineKind {
    /// `reference` or `fast`.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Reference => "reference",
            EngineKind::Fast => "fast",
        }
    }
}

/// Builds the engine `kind` for `run`'s objective; the fast engine runs on `isa`.
pub fn build<'a>(
    kind: EngineKind,
    isa: crate::isa::Isa,
    dm: &'a DataModel,
    train: &crate::config::TrainConfig,
) -> crate::Result<Box<dyn Engine + 'a>> {
    match kind {
        EngineKind::Reference => Ok(Box::new(ReferenceEngine::new(
            dm,
            train.objective,
            train.tau,
        ))),
        EngineKind::Fast => Ok(Box::new(crate::fast::FastEngine::new(
            dm,
            train.objective,
            train.tau,
            isa,
        )?)),
    }
}
