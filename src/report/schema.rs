//! Typed rows of the benchmark result files under `results/<machine-tag>/`.
//!
//! `kernels.csv` and `step.csv` hold [`BenchRow`]s, `convergence.csv` holds [`ConvergenceRow`]s,
//! `speedup.csv` holds [`SpeedupRow`]s.
//! Every row carries its provenance (the columns of [`crate::provenance::Provenance`], without
//! `isa` and `threads`, which are columns of the row itself). The headers are the field names, in
//! order; the README documents them.

use serde::{Deserialize, Serialize};

/// One criterion measurement (`kernels.csv`, `step.csv`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchRow {
    /// Criterion id, `group/variant/size` (unique within a file).
    pub id: String,
    /// Criterion group: `exp`, `mae_sample`, `cl_view`, `step_mae`, `step_cl`, `fma_peak`.
    pub group: String,
    /// Variant: `libm`, `reference`, `fast-scalar`, `fast-v3`, … .
    pub variant: String,
    /// Patches P (0 where not applicable).
    pub p: usize,
    /// Embedding dimension d (0 where not applicable).
    pub d: usize,
    /// Samples per step n (1 for per-sample benches, elements for `exp`).
    pub n: usize,
    /// Worker threads.
    pub threads: usize,
    /// Instruction set the variant ran on.
    pub isa: String,
    /// Median time per iteration, ns.
    pub median_ns: f64,
    /// Lower bound of criterion's confidence interval for the median, ns.
    pub lower_ns: f64,
    /// Upper bound of criterion's confidence interval for the median, ns.
    pub upper_ns: f64,
    /// Floating-point work per iteration (SPEC §12), or elements for element-counted benches.
    pub flops: f64,
    /// `flops / median` in GFLOP/s (elements/ns for element-counted benches).
    pub gflops: f64,
    /// `gflops` over the calibrated f32 FMA peak of `threads` cores (empty when not FLOP-counted).
    pub peak_fraction: Option<f64>,
    /// Git revision of the build.
    pub git_rev: String,
    /// CPU model.
    pub cpu_model: String,
    /// Logical cores of the machine.
    pub cores: usize,
    /// rustc version.
    pub rustc: String,
    /// UTC date of the run.
    pub date: String,
}

/// Time to convergence of one configuration (`convergence.csv`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvergenceRow {
    /// Sweep id, unique within a file (e.g. `scale/mae/8x8`).
    pub id: String,
    /// `mae` or `cl`.
    pub objective: String,
    /// Grid rows.
    pub rows: usize,
    /// Grid columns.
    pub cols: usize,
    /// Patches P.
    pub p: usize,
    /// Embedding dimension d.
    pub d: usize,
    /// Clusters K.
    pub k: usize,
    /// Block side b.
    pub block: usize,
    /// Global fraction ρ.
    pub rho: f64,
    /// Information gap Δ.
    pub delta: f64,
    /// Mask ratio γ.
    pub gamma: f64,
    /// Learning rate η.
    pub lr: f64,
    /// Temperature τ.
    pub tau: f64,
    /// Batch size n.
    pub n: usize,
    /// Worker threads.
    pub threads: usize,
    /// Instruction set.
    pub isa: String,
    /// Engine.
    pub engine: String,
    /// Whether the target was reached within the budget.
    pub converged: bool,
    /// Steps to convergence (or the budget).
    pub steps: usize,
    /// Training seconds to convergence (or in all).
    pub seconds: f64,
    /// Final `own_mass`.
    pub own_mass: f64,
    /// Final `global_mass_local`.
    pub global_mass_local: f64,
    /// Final `global_mass_all`.
    pub global_mass_all: f64,
    /// Final `diversity`.
    pub diversity: f64,
    /// Master seed.
    pub seed: u64,
    /// Git revision of the build.
    pub git_rev: String,
    /// CPU model.
    pub cpu_model: String,
    /// Logical cores of the machine.
    pub cores: usize,
    /// rustc version.
    pub rustc: String,
    /// UTC date of the run.
    pub date: String,
}

/// One paired speed ratio of `speedup.csv`: two variants of the same step, timed in the same
/// interleaved rounds, `slower` time over `faster` time per round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpeedupRow {
    /// `group/ratio/P`, e.g. `step_mae/fast_vs_reference/256` (unique within a file).
    pub id: String,
    /// Step group: `step_mae`.
    pub group: String,
    /// `simd_vs_scalar`, `threads` (all cores against one), `fast_vs_reference`, per narrower
    /// SIMD level `<best>_vs_<isa>` and `fast_<isa>_vs_reference`, or
    /// `fast_vs_reference_ceiling` (the reference against the fast step's executed FLOPs at the
    /// calibrated FMA peak).
    pub ratio: String,
    /// The variant whose time is the numerator (as in `step.csv`, e.g. `reference-t2`).
    pub slower: String,
    /// The variant whose time is the denominator (e.g. `fast-v3-t2`; `fast-v4-t2-at-fma-peak`
    /// in the ceiling row).
    pub faster: String,
    /// Patches P.
    pub p: usize,
    /// Embedding dimension d.
    pub d: usize,
    /// Samples per step n.
    pub n: usize,
    /// Rounds measured.
    pub rounds: usize,
    /// Median over rounds of `slower / faster`.
    pub median: f64,
    /// Smallest per-round ratio.
    pub min: f64,
    /// Largest per-round ratio.
    pub max: f64,
    /// Median time of one `slower` step over the rounds, ms.
    pub slower_ms: f64,
    /// Median time of one `faster` step over the rounds, ms.
    pub faster_ms: f64,
    /// Git revision of the build.
    pub git_rev: String,
    /// CPU model.
    pub cpu_model: String,
    /// Logical cores of the machine.
    pub cores: usize,
    /// rustc version.
    pub rustc: String,
    /// UTC date of the run.
    pub date: String,
}
