//! CSV output of training runs: one row per evaluation, flushed as it is written.
//!
//! Header of `vitssl train --out FILE.csv` (documented in the README):
//! `step, seconds, loss, own_mass, global_mass_local, global_mass_all, diversity, phi_target,
//! phi_global, ups_same, ups_other`, then the provenance columns of
//! [`crate::provenance::Provenance`], then the configuration columns of [`ConfigColumns`].

use crate::config::{EmbeddingKind, LayoutSpec, RunConfig};
use crate::observables::Observables;
use crate::provenance::Provenance;
use crate::train::EvalRow;
use serde::Serialize;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The observable columns of a training row.
#[derive(Clone, Debug, Serialize)]
pub struct ObservableColumns {
    /// Gradient steps so far.
    pub step: usize,
    /// Training seconds so far (evaluation excluded).
    pub seconds: f64,
    /// See [`Observables`].
    pub loss: f64,
    /// See [`Observables`].
    pub own_mass: f64,
    /// See [`Observables`].
    pub global_mass_local: f64,
    /// See [`Observables`].
    pub global_mass_all: f64,
    /// See [`Observables`].
    pub diversity: f64,
    /// See [`Observables`].
    pub phi_target: f64,
    /// See [`Observables`].
    pub phi_global: f64,
    /// See [`Observables`].
    pub ups_same: f64,
    /// See [`Observables`].
    pub ups_other: f64,
}

impl From<&EvalRow> for ObservableColumns {
    fn from(r: &EvalRow) -> Self {
        let Observables {
            loss,
            own_mass,
            global_mass_local,
            global_mass_all,
            diversity,
            phi_target,
            phi_global,
            ups_same,
            ups_other,
        } = r.obs;
        Self {
            step: r.step,
            seconds: r.seconds,
            loss,
            own_mass,
            global_mass_local,
            global_mass_all,
            diversity,
            phi_target,
            phi_global,
            ups_same,
            ups_other,
        }
    }
}

/// The full configuration of a run, flattened into columns.
#[derive(Clone, Debug, Serialize)]
pub struct ConfigColumns {
    /// `mae` or `cl`.
    pub objective: &'static str,
    /// `reference` or `fast`.
    pub engine: String,
    /// Grid rows.
    pub rows: usize,
    /// Grid columns.
    pub cols: usize,
    /// Patches P.
    pub p: usize,
    /// Block side b (empty for explicit layouts).
    pub block: Option<usize>,
    /// Global fraction ρ (empty for explicit layouts).
    pub global_frac: Option<f64>,
    /// Clusters K.
    pub clusters: usize,
    /// `orthonormal` or `gaussian`.
    pub embedding: &'static str,
    /// Embedding dimension d.
    pub dim: usize,
    /// Noise σ.
    pub noise: f64,
    /// Weight range lower end L.
    pub weight_lo: f64,
    /// Weight range upper end U.
    pub weight_hi: f64,
    /// Mask ratio γ.
    pub mask_ratio: f64,
    /// Learning rate η.
    pub lr: f64,
    /// Temperature τ.
    pub tau: f64,
    /// Batch size n.
    pub batch: usize,
    /// `fresh` or `fixed:N`.
    pub data: String,
    /// Step budget.
    pub max_steps: usize,
    /// Evaluation interval.
    pub eval_every: usize,
    /// Convergence target.
    pub target: f64,
    /// Evaluation batch size.
    pub n_eval: usize,
    /// Initial scale of Q.
    pub init_scale: f64,
    /// Master seed.
    pub seed: u64,
    /// Information gap Δ of the geometry.
    pub delta: f64,
}

impl ConfigColumns {
    /// Columns of `cfg`, run by `engine`, with dimension `dim` and gap `delta`.
    pub fn new(cfg: &RunConfig, engine: &str, dim: usize, delta: f64) -> Self {
        let (block, global_frac) = match cfg.geometry.layout {
            LayoutSpec::Blocks { block, global_frac } => (Some(block), Some(global_frac)),
            LayoutSpec::Explicit(_) => (None, None),
        };
        let t = &cfg.train;
        let d = &cfg.data;
        Self {
            objective: t.objective.name(),
            engine: engine.to_string(),
            rows: cfg.geometry.rows,
            cols: cfg.geometry.cols,
            p: cfg.geometry.rows * cfg.geometry.cols,
            block,
            global_frac,
            clusters: cfg.geometry.clusters,
            embedding: match d.embedding {
                EmbeddingKind::Orthonormal => "orthonormal",
                EmbeddingKind::Gaussian { .. } => "gaussian",
            },
            dim,
            noise: d.noise,
            weight_lo: d.weights.0,
            weight_hi: d.weights.1,
            mask_ratio: d.mask_ratio,
            lr: t.lr,
            tau: t.tau,
            batch: t.samples_per_step(),
            data: t.data.label(),
            max_steps: t.max_steps,
            eval_every: t.eval_every,
            target: t.target,
            n_eval: t.n_eval,
            init_scale: t.init_scale,
            seed: cfg.seed,
            delta,
        }
    }
}

/// A CSV file written row by row, each row flushed to disk as soon as it is written, so a run
/// that stops early keeps every row it produced.
pub struct RowWriter {
    path: PathBuf,
    inner: csv::Writer<File>,
}

impl RowWriter {
    /// Creates (truncates) `path`, making its parent directories.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = File::create(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            inner: csv::Writer::from_writer(file),
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one row (the header before the first) and flushes it to the OS.
    pub fn write(&mut self, row: impl Serialize) -> csv::Result<()> {
        self.inner.serialize(row)?;
        self.inner.flush()?;
        Ok(())
    }
}

/// Writes a whole CSV file atomically: rows go to `path.tmp`, which is renamed onto `path` only
/// once complete, so readers see either the old file or the new one, never a partial file.
pub fn write_atomic<R: Serialize>(
    path: &Path,
    rows: impl IntoIterator<Item = R>,
) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("csv.tmp");
    {
        let mut w = csv::Writer::from_path(&tmp)?;
        for r in rows {
            w.serialize(r)?;
        }
        let mut file = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
        file.flush()?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// One training row: observables, provenance, configuration.
pub fn train_row<'a>(
    row: &EvalRow,
    prov: &'a Provenance,
    cfg: &'a ConfigColumns,
) -> (ObservableColumns, &'a Provenance, &'a ConfigColumns) {
    (ObservableColumns::from(row), prov, cfg)
}
