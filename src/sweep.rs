//! Sweeps: named lists of run configurations, run in order, optionally one shard of many.
//!
//! A sweep is data (a `Vec<Point>`), not a loop in code. `--shard i/n` (1-based) runs the i-th
//! of n contiguous slices, so concatenating the shards' output in shard order gives exactly the
//! rows of one unsharded run, and a large sweep can be spread over machines by any scheduler
//! (a Slurm array, GNU parallel).

use crate::config::{LayoutSpec, RunConfig};
use crate::engine::{self, EngineKind};
use crate::error::{Error, Result};
use crate::isa::Isa;
use crate::provenance::Provenance;
use crate::report::schema::ConvergenceRow;
use crate::train::{EvalRow, Outcome, Run};
use std::str::FromStr;

/// One configuration of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Unique id within the sweep, `experiment/...`.
    pub id: String,
    /// The run's configuration.
    pub cfg: RunConfig,
}

impl Point {
    /// A point `id` with configuration `cfg`.
    pub fn new(id: impl Into<String>, cfg: RunConfig) -> Self {
        Self { id: id.into(), cfg }
    }

    /// The experiment a point belongs to: its id up to the first `/`.
    pub fn experiment(&self) -> &str {
        self.id.split('/').next().unwrap_or(&self.id)
    }
}

/// The i-th (1-based) of n contiguous slices of a sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// 1-based index.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// The whole sweep.
    pub const ALL: Shard = Shard { index: 1, count: 1 };

    /// The slice of `points` this shard runs: `[len·(i−1)/n, len·i/n)`.
    pub fn slice<'a, T>(&self, points: &'a [T]) -> &'a [T] {
        let len = points.len();
        &points[len * (self.index - 1) / self.count..len * self.index / self.count]
    }

    /// Whether this is the whole sweep.
    pub fn is_all(&self) -> bool {
        self.count == 1
    }
}

impl FromStr for Shard {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::config("shard", s, "use i/n with 1 <= i <= n, e.g. --shard 2/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if index == 0 || count == 0 || index > count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

/// A finished point: its run, outcome and evaluation trace.
pub struct Trial {
    /// The point.
    pub point: Point,
    /// The built run (geometry, data model).
    pub run: Run,
    /// Final Q and summary.
    pub outcome: Outcome,
    /// Every evaluation, in order.
    pub trace: Vec<EvalRow>,
    /// Engine name.
    pub engine: &'static str,
    /// Instruction set the engine ran on.
    pub isa: String,
}

/// Trains `point` with engine `kind` on `isa`; `on_eval` sees each evaluation as it happens.
pub fn run_point(
    point: &Point,
    kind: EngineKind,
    isa: Isa,
    mut on_eval: impl FnMut(&Run, &EvalRow) -> Result<()>,
) -> Result<Trial> {
    let run = Run::new(point.cfg.clone())?;
    let mut engine = engine::build(kind, isa, &run.dm, &run.cfg.train)?;
    let mut trace = Vec::new();
    let outcome = run.train(
        engine.as_mut(),
        |r| {
            trace.push(*r);
            on_eval(&run, r)
        },
        |_| {},
    )?;
    let (engine_name, isa_name) = (engine.name(), engine.isa());
    drop(engine);
    Ok(Trial {
        point: point.clone(),
        run,
        outcome,
        trace,
        engine: engine_name,
        isa: isa_name,
    })
}

impl Trial {
    /// The `convergence.csv` row of this trial.
    pub fn convergence_row(&self, threads: usize) -> ConvergenceRow {
        let cfg = &self.run.cfg;
        let s = &self.outcome.summary;
        let (block, rho) = match cfg.geometry.layout {
            LayoutSpec::Blocks { block, global_frac } => (block, global_frac),
            LayoutSpec::Explicit(_) => (0, f64::NAN),
        };
        let prov = Provenance::collect(&self.isa, threads);
        ConvergenceRow {
            id: self.point.id.clone(),
            objective: cfg.train.objective.name().to_string(),
            rows: cfg.geometry.rows,
            cols: cfg.geometry.cols,
            p: self.run.dm.p(),
            d: self.run.dm.d(),
            k: cfg.geometry.clusters,
            block,
            rho,
            delta: s.delta,
            gamma: cfg.data.mask_ratio,
            lr: cfg.train.lr,
            tau: cfg.train.tau,
            n: cfg.train.samples_per_step(),
            threads,
            isa: self.isa.clone(),
            engine: self.engine.to_string(),
            converged: s.converged,
            steps: s.steps,
            seconds: s.seconds,
            own_mass: s.last.obs.own_mass,
            global_mass_local: s.last.obs.global_mass_local,
            global_mass_all: s.last.obs.global_mass_all,
            diversity: s.last.obs.diversity,
            seed: cfg.seed,
            git_rev: prov.git_rev,
            cpu_model: prov.cpu_model,
            cores: prov.cores,
            rustc: prov.rustc,
            date: prov.date,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_in_order() {
        let items: Vec<usize> = (0..11).collect();
        for n in 1..=13 {
            let mut joined = Vec::new();
            for i in 1..=n {
                joined.extend_from_slice(Shard { index: i, count: n }.slice(&items));
            }
            assert_eq!(joined, items, "n = {n}");
        }
    }

    #[test]
    fn shard_syntax() {
        assert_eq!(
            "2/4".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 4 }
        );
        for bad in ["0/4", "5/4", "1/0", "x/2", "3"] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
