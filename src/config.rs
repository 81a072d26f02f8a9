//! Typed configuration. `Default` for each struct is the default of `SPEC.md`; the CLI maps its
//! flags onto these structs and [`RunConfig::validate`] checks every value before a run starts.

use crate::error::{Error, Result};

/// Which self-supervised objective is trained (SPEC §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Objective {
    /// Masked autoencoder: reconstruct the masked patches.
    Mae,
    /// Contrastive InfoNCE between two masked views, in-batch negatives.
    Cl,
}

impl Objective {
    /// The name used on the command line and in CSV files.
    pub fn name(self) -> &'static str {
        match self {
            Objective::Mae => "mae",
            Objective::Cl => "cl",
        }
    }

    /// The observable whose target decides convergence (SPEC §9): `own_mass` for MAE,
    /// `global_mass_all` for CL.
    pub fn convergence_observable(self) -> &'static str {
        match self {
            Objective::Mae => "own_mass",
            Objective::Cl => "global_mass_all",
        }
    }

    /// SPEC §6 default learning rate: η = 1 for MAE, η = 4 for CL.
    pub fn default_lr(self) -> f64 {
        match self {
            Objective::Mae => 1.0,
            Objective::Cl => 4.0,
        }
    }

    /// Default step budget: 500 for MAE, 1000 for CL.
    pub fn default_max_steps(self) -> usize {
        match self {
            Objective::Mae => 500,
            Objective::Cl => 1000,
        }
    }
}

/// How the areas of each cluster are laid out on the grid (SPEC §1).
#[derive(Clone, Debug, PartialEq)]
pub enum LayoutSpec {
    /// Local areas are `block × block` cells of the block grid; `round((1-ρ)·P/b²)` cells per
    /// cluster (ties to even) are drawn from the layout seed, the rest is the global area.
    Blocks {
        /// Side `b` of a local block.
        block: usize,
        /// Global fraction `ρ ∈ (0, 1)`.
        global_frac: f64,
    },
    /// One area index per position per cluster: `areas[k][p]`, 0 = global, `1..n_k` local.
    Explicit(Vec<Vec<usize>>),
}

/// Grid and area layout (SPEC §1).
#[derive(Clone, Debug, PartialEq)]
pub struct GeometryConfig {
    /// Grid rows.
    pub rows: usize,
    /// Grid columns.
    pub cols: usize,
    /// Number of clusters `K`.
    pub clusters: usize,
    /// Area layout of every cluster.
    pub layout: LayoutSpec,
}

impl GeometryConfig {
    /// A `rows × cols` grid with the default `K = 2` clusters whose local areas are
    /// `block × block` blocks at global fraction `global_frac` (SPEC §1's generator).
    pub fn blocks(rows: usize, cols: usize, block: usize, global_frac: f64) -> Self {
        Self {
            rows,
            cols,
            clusters: 2,
            layout: LayoutSpec::Blocks { block, global_frac },
        }
    }
}

impl Default for GeometryConfig {
    fn default() -> Self {
        Self::blocks(6, 6, 2, 0.5)
    }
}

/// Feature and position embeddings (SPEC §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbeddingKind {
    /// `d = P + Σ_k (n_k + 1)` basis vectors (the paper's assumption).
    Orthonormal,
    /// Every vector i.i.d. `N(0, I_d/d)`; `None` takes the orthonormal dimension.
    Gaussian {
        /// Embedding dimension `d`.
        dim: Option<usize>,
    },
}

impl EmbeddingKind {
    /// The name used on the command line and in CSV files.
    pub fn name(self) -> &'static str {
        match self {
            EmbeddingKind::Orthonormal => "orthonormal",
            EmbeddingKind::Gaussian { .. } => "gaussian",
        }
    }
}

/// Samples and masks (SPEC §3).
#[derive(Clone, Debug, PartialEq)]
pub struct DataConfig {
    /// Embedding kind.
    pub embedding: EmbeddingKind,
    /// Per-area weight range `[L, U]`.
    pub weights: (f64, f64),
    /// Noise level σ.
    pub noise: f64,
    /// Mask ratio γ: `m = round(γ·P)` masked positions (ties to even).
    pub mask_ratio: f64,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            embedding: EmbeddingKind::Orthonormal,
            weights: (1.0, 2.0),
            noise: 0.0,
            mask_ratio: 0.5,
        }
    }
}

/// Where the training samples come from (SPEC §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataRegime {
    /// New samples and masks at every step (descent on the population loss).
    Fresh,
    /// A fixed set of N samples, used whole as the batch at every step, with fresh masks.
    Fixed(usize),
}

impl DataRegime {
    /// `fresh` or `fixed:N`, as on the command line.
    pub fn label(self) -> String {
        match self {
            DataRegime::Fresh => "fresh".to_string(),
            DataRegime::Fixed(n) => format!("fixed:{n}"),
        }
    }
}

/// Optimisation and evaluation (SPEC §6, §7, §9).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Objective.
    pub objective: Objective,
    /// Learning rate η.
    pub lr: f64,
    /// InfoNCE temperature τ (CL only).
    pub tau: f64,
    /// Batch size n (fresh regime).
    pub batch: usize,
    /// Data regime.
    pub data: DataRegime,
    /// Step budget: a run that has not converged by then is reported as not converged.
    pub max_steps: usize,
    /// Evaluate every this many steps (and at step 0 and the last step).
    pub eval_every: usize,
    /// Convergence target for `own_mass` (MAE) or `global_mass_all` (CL).
    pub target: f64,
    /// Size of the fixed evaluation batch.
    pub n_eval: usize,
    /// Standard deviation of the entries of `Q⁽⁰⁾` (0: start from `Q = 0`).
    pub init_scale: f64,
    /// Keep training after convergence, up to `max_steps`.
    pub keep_going: bool,
}

impl TrainConfig {
    /// SPEC defaults for `objective`.
    pub fn for_objective(objective: Objective) -> Self {
        Self {
            objective,
            lr: objective.default_lr(),
            tau: 1.0,
            batch: 256,
            data: DataRegime::Fresh,
            max_steps: objective.default_max_steps(),
            eval_every: 10,
            target: 0.85,
            n_eval: 64,
            init_scale: 0.0,
            keep_going: false,
        }
    }

    /// Samples per step: the batch size, or N in the fixed regime.
    pub fn samples_per_step(&self) -> usize {
        match self.data {
            DataRegime::Fresh => self.batch,
            DataRegime::Fixed(n) => n,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self::for_objective(Objective::Mae)
    }
}

/// Everything a run depends on: a run is a pure function of this value.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RunConfig {
    /// Geometry.
    pub geometry: GeometryConfig,
    /// Data.
    pub data: DataConfig,
    /// Training.
    pub train: TrainConfig,
    /// Master seed; the layout, embedding, training data, evaluation batch and initialisation
    /// each draw from their own stream derived from it.
    pub seed: u64,
}

fn finite_positive(name: &'static str, x: f64) -> Result<()> {
    if x.is_finite() && x > 0.0 {
        Ok(())
    } else {
        Err(Error::config(name, x, "must be a finite number > 0"))
    }
}

impl RunConfig {
    /// SPEC defaults for `objective`.
    pub fn for_objective(objective: Objective) -> Self {
        Self {
            train: TrainConfig::for_objective(objective),
            ..Self::default()
        }
    }

    /// Checks every scalar value (the geometry itself is checked when it is built).
    pub fn validate(&self) -> Result<()> {
        let d = &self.data;
        let (lo, hi) = d.weights;
        if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi) {
            return Err(Error::config(
                "weights",
                format!("{lo},{hi}"),
                "need finite 0 < L <= U, e.g. --weights 1,2",
            ));
        }
        if !(d.noise.is_finite() && d.noise >= 0.0) {
            return Err(Error::config(
                "noise",
                d.noise,
                "must be a finite number >= 0",
            ));
        }
        if !(d.mask_ratio > 0.0 && d.mask_ratio < 1.0) {
            return Err(Error::config(
                "mask-ratio",
                d.mask_ratio,
                "must lie in (0, 1)",
            ));
        }
        if let EmbeddingKind::Gaussian { dim: Some(0) } = d.embedding {
            return Err(Error::config("dim", 0, "must be at least 1"));
        }
        let t = &self.train;
        finite_positive("lr", t.lr)?;
        finite_positive("tau", t.tau)?;
        if t.batch < 2 && t.objective == Objective::Cl && t.data == DataRegime::Fresh {
            return Err(Error::config(
                "batch",
                t.batch,
                "CL needs at least 2 samples per batch",
            ));
        }
        if t.batch == 0 {
            return Err(Error::config("batch", 0, "must be at least 1"));
        }
        if let DataRegime::Fixed(n) = t.data {
            let min = if t.objective == Objective::Cl { 2 } else { 1 };
            if n < min {
                return Err(Error::config(
                    "data",
                    format!("fixed:{n}"),
                    format!("need N >= {min}"),
                ));
            }
        }
        if t.max_steps == 0 {
            return Err(Error::config("steps", 0, "must be at least 1"));
        }
        if t.eval_every == 0 {
            return Err(Error::config("eval-every", 0, "must be at least 1"));
        }
        if !(t.target > 0.0 && t.target <= 1.0) {
            return Err(Error::config("target", t.target, "must lie in (0, 1]"));
        }
        if t.n_eval < 2 {
            return Err(Error::config("n-eval", t.n_eval, "must be at least 2"));
        }
        if !(t.init_scale.is_finite() && t.init_scale >= 0.0) {
            return Err(Error::config(
                "init-scale",
                t.init_scale,
                "must be a finite number >= 0",
            ));
        }
        Ok(())
    }
}
