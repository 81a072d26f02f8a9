//! The training loop (SPEC §6), phases (SPEC §8) and convergence (SPEC §9).
//!
//! Gradient descent `Q ← Q − η ∇L` from `Q⁽⁰⁾ = 0` (or `N(0, s²)` entries). Evaluations happen at
//! step 0, every `eval_every` steps and at the last step; each produces one [`EvalRow`]. A run has
//! converged at the first evaluation with `own_mass ≥ target` (MAE) or `global_mass_all ≥ target`
//! (CL) and stops there unless `keep_going` is set; convergence time is the step count and the
//! wall-clock seconds of training work up to that evaluation (drawing data, loss, gradient,
//! update; evaluations excluded). A run that reaches `max_steps` first is not converged.
//!
//! `rho0 = −ΔΦ_global / ΔΦ_target` is measured over the first step; `t_cross` is the first
//! evaluation step with `own_mass > global_mass_local`.

use crate::config::{DataRegime, Objective, RunConfig};
use crate::data::{DataModel, Sample};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::geometry::Geometry;
use crate::observables::{Evaluator, Observables, correlations};
use crate::rng::{Rng, Stream, stream};
use faer::Mat;
use rand::RngExt;
use rand_distr::StandardNormal;
use std::time::Instant;

/// A validated configuration with its geometry and data model built.
pub struct Run {
    /// The configuration.
    pub cfg: RunConfig,
    /// Geometry, embedding and data settings.
    pub dm: DataModel,
}

/// One evaluation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalRow {
    /// Gradient steps taken so far.
    pub step: usize,
    /// Seconds of training work so far (evaluations excluded).
    pub seconds: f64,
    /// Observables at this step.
    pub obs: Observables,
}

/// What a run found.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Whether the convergence target was reached within the step budget.
    pub converged: bool,
    /// Steps to convergence, or the steps taken when not converged.
    pub steps: usize,
    /// Seconds of training work to convergence (or in all, when not converged).
    pub seconds: f64,
    /// Information gap Δ of the geometry.
    pub delta: f64,
    /// First-step ratio `−ΔΦ_global / ΔΦ_target`.
    pub rho0: f64,
    /// First evaluation step with `own_mass > global_mass_local`.
    pub t_cross: Option<usize>,
    /// Observables at the last evaluation.
    pub last: EvalRow,
}

/// The trained parameter and the run's summary.
pub struct Outcome {
    /// Final `Q`.
    pub q: Mat<f64>,
    /// Summary.
    pub summary: Summary,
}

impl Run {
    /// Validates `cfg` and builds its geometry and data model.
    pub fn new(cfg: RunConfig) -> Result<Self> {
        cfg.validate()?;
        let geom = Geometry::new(&cfg.geometry, cfg.seed)?;
        let dm = DataModel::new(geom, cfg.data.clone(), cfg.seed)?;
        Ok(Self { cfg, dm })
    }

    /// Views per sample: 1 for MAE, 2 for CL.
    pub fn views(&self) -> usize {
        match self.cfg.train.objective {
            Objective::Mae => 1,
            Objective::Cl => 2,
        }
    }

    /// The fixed evaluation batch of this run.
    pub fn evaluator(&self) -> Evaluator {
        let t = &self.cfg.train;
        Evaluator::new(&self.dm, t.n_eval, self.cfg.seed, t.objective, t.tau)
    }

    /// `Q⁽⁰⁾`: zero, or i.i.d. `N(0, s²)` entries from the init stream.
    pub fn initial_q(&self) -> Mat<f64> {
        let d = self.dm.d();
        let s = self.cfg.train.init_scale;
        if s == 0.0 {
            return Mat::zeros(d, d);
        }
        let mut rng = stream(self.cfg.seed, Stream::Init);
        let vals: Vec<f64> = (0..d * d)
            .map(|_| s * rng.sample::<f64, _>(StandardNormal))
            .collect();
        Mat::from_fn(d, d, |i, j| vals[i * d + j])
    }

    /// Trains with `engine`. `on_eval` receives every evaluation as it happens (an error from it
    /// stops the run); `on_step` is called after every step.
    pub fn train(
        &self,
        engine: &mut dyn Engine,
        mut on_eval: impl FnMut(&EvalRow) -> Result<()>,
        mut on_step: impl FnMut(usize),
    ) -> Result<Outcome> {
        let t = &self.cfg.train;
        let dm = &self.dm;
        let d = dm.d();
        let eval = self.evaluator();
        let mut data = Batches::new(self);
        let mut q = self.initial_q();
        let mut grad = Mat::<f64>::zeros(d, d);
        let mut seconds = 0.0;
        let mut rho0 = f64::NAN;
        let mut t_cross = None;
        let mut converged_at: Option<(usize, f64)> = None;
        let reached = |o: &Observables| o.convergence_value(t.objective) >= t.target;

        let mut record = |step: usize, seconds: f64, q: &Mat<f64>| -> Result<EvalRow> {
            let row = EvalRow {
                step,
                seconds,
                obs: eval.evaluate(dm, q.as_ref()),
            };
            if t_cross.is_none() && row.obs.own_mass > row.obs.global_mass_local {
                t_cross = Some(step);
            }
            on_eval(&row)?;
            Ok(row)
        };

        let mut last = record(0, 0.0, &q)?;
        if reached(&last.obs) {
            converged_at = Some((0, 0.0));
        }
        for step in 1..=t.max_steps {
            if converged_at.is_some() && !t.keep_going {
                break;
            }
            let start = Instant::now();
            let batch = data.next(dm);
            let loss = engine.loss_grad(q.as_ref(), batch, grad.as_mut());
            if !loss.is_finite() {
                return Err(Error::NonFinite {
                    what: "loss",
                    step,
                    lr: t.lr,
                });
            }
            if !grad.squared_norm_l2().is_finite() {
                return Err(Error::NonFinite {
                    what: "gradient",
                    step,
                    lr: t.lr,
                });
            }
            let before = (step == 1).then(|| correlations(dm, q.as_ref()));
            q -= faer::Scale(t.lr) * &grad;
            seconds += start.elapsed().as_secs_f64();
            if let Some((t0, g0, _, _)) = before {
                let (t1, g1, _, _) = correlations(dm, q.as_ref());
                rho0 = -(g1 - g0) / (t1 - t0);
            }
            on_step(step);
            if step.is_multiple_of(t.eval_every) || step == t.max_steps {
                last = record(step, seconds, &q)?;
                if converged_at.is_none() && reached(&last.obs) {
                    converged_at = Some((step, seconds));
                }
            }
        }
        let (converged, steps, secs) = match converged_at {
            Some((s, sec)) => (true, s, sec),
            None => (false, last.step, last.seconds),
        };
        Ok(Outcome {
            q,
            summary: Summary {
                converged,
                steps,
                seconds: secs,
                delta: dm.geom.delta(),
                rho0,
                t_cross,
                last,
            },
        })
    }
}

/// The per-step batches of a data regime.
struct Batches {
    rng: Rng,
    regime: DataRegime,
    n: usize,
    views: usize,
    samples: Vec<Sample>,
    steps: usize,
}

impl Batches {
    fn new(run: &Run) -> Self {
        let t = &run.cfg.train;
        let mut rng = stream(run.cfg.seed, Stream::Train);
        let views = run.views();
        let samples = match t.data {
            DataRegime::Fresh => Vec::new(),
            DataRegime::Fixed(n) => (0..n).map(|_| run.dm.sample(&mut rng, views)).collect(),
        };
        Self {
            rng,
            regime: t.data,
            n: t.batch,
            views,
            samples,
            steps: 0,
        }
    }

    fn next(&mut self, dm: &DataModel) -> &[Sample] {
        self.steps += 1;
        match self.regime {
            DataRegime::Fresh => {
                self.samples.clear();
                for _ in 0..self.n {
                    let s = dm.sample(&mut self.rng, self.views);
                    self.samples.push(s);
                }
            }
            DataRegime::Fixed(_) => {
                for s in &mut self.samples {
                    dm.redraw_masks(&mut self.rng, s);
                }
            }
        }
        &self.samples
    }
}
