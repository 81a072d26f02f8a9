//! Support for the criterion benches (`benches/`): the FMA-throughput peak, machine tags,
//! benchmark metadata, and turning criterion's estimates into the rows of `kernels.csv` and
//! `step.csv` (written whole, then renamed).
//!
//! Results go to `results/<machine-tag>/`; the tag is the CPU model slug plus the best ISA
//! (`amd-epyc-v3`), or `$VITSSL_TAG`. A filtered run (`cargo bench -- mae_sample`) measures only
//! part of a file's benchmarks; it writes to `target/vitssl/bench/<machine-tag>/` instead, so the
//! curated files are only ever replaced by a complete run.

use crate::isa::Isa;
use crate::provenance::Provenance;
use crate::record::write_atomic;
use crate::report::read::read_criterion_baseline;
use crate::report::schema::BenchRow;
use anyhow::{Context, Result};
use pulp::{Simd, WithSimd};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Independent FMA chains in [`FmaPeak`]: enough to cover FMA latency × throughput on current
/// cores (4 cycles × 2 ports on AVX2 parts).
pub const FMA_CHAINS: usize = 10;

/// An FMA-throughput loop: `FMA_CHAINS` independent vector accumulators, `iters` rounds of
/// `acc = acc·a + b` each. Its FLOP count is [`FmaPeak::flops`]; its speed is the f32 FMA peak
/// the kernels are measured against.
pub struct FmaPeak {
    /// Rounds.
    pub iters: usize,
    /// Seed value, so the compiler cannot fold the loop.
    pub seed: f32,
}

impl FmaPeak {
    /// FLOPs of one call on `isa` (2 per lane per FMA).
    pub fn flops(&self, isa: Isa) -> f64 {
        2.0 * (isa.f32_lanes() * FMA_CHAINS * self.iters) as f64
    }
}

impl WithSimd for FmaPeak {
    type Output = f32;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> f32 {
        let a = simd.splat_f32s(0.999_9);
        let b = simd.splat_f32s(1e-4);
        let mut acc = [simd.splat_f32s(self.seed); FMA_CHAINS];
        for _ in 0..self.iters {
            for x in acc.iter_mut() {
                *x = simd.mul_add_f32s(*x, a, b);
            }
        }
        let mut total = simd.splat_f32s(0.0);
        for x in acc {
            total = simd.add_f32s(total, x);
        }
        simd.reduce_sum_f32s(total)
    }
}

/// Lowercase alphanumerics joined by single dashes: `AMD EPYC 7B13` → `amd-epyc-7b13`.
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    for w in s
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push('-');
        }
        out.push_str(&w.to_ascii_lowercase());
    }
    if out.is_empty() {
        "unknown".into()
    } else {
        out
    }
}

/// `$VITSSL_TAG`, else the CPU model slug plus the best ISA.
pub fn machine_tag() -> String {
    std::env::var("VITSSL_TAG")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| format!("{}-{}", slug(&crate::provenance::cpu_model()), Isa::best()))
}

/// Whether criterion was asked for a quick pass (`cargo bench -- --test`) or a listing.
pub fn test_mode() -> bool {
    std::env::args().any(|a| a == "--test" || a == "--list")
}

/// What a benchmark is, for its result row; `id` must equal criterion's full id.
#[derive(Clone, Debug)]
pub struct BenchMeta {
    /// `group/variant/size`.
    pub id: String,
    /// Group.
    pub group: String,
    /// Variant.
    pub variant: String,
    /// P (0 if not applicable).
    pub p: usize,
    /// d (0 if not applicable).
    pub d: usize,
    /// Samples per iteration (or elements for element-counted benches).
    pub n: usize,
    /// Threads.
    pub threads: usize,
    /// ISA the variant runs on.
    pub isa: String,
    /// FLOPs (or elements) per iteration.
    pub work: f64,
    /// Whether `work` counts FLOPs (then the row gets a peak fraction).
    pub flop_counted: bool,
}

impl BenchMeta {
    /// Metadata for criterion id `group/variant/size`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        group: &str,
        variant: &str,
        size: usize,
        p: usize,
        d: usize,
        n: usize,
        threads: usize,
        isa: &str,
        work: f64,
        flop_counted: bool,
    ) -> Self {
        Self {
            id: format!("{group}/{variant}/{size}"),
            group: group.into(),
            variant: variant.into(),
            p,
            d,
            n,
            threads,
            isa: isa.into(),
            work,
            flop_counted,
        }
    }
}

/// Where a complete run's results go, and where a partial run's go.
pub fn results_dir(complete: bool) -> PathBuf {
    let tag = machine_tag();
    if complete {
        PathBuf::from("results").join(tag)
    } else {
        PathBuf::from("target/vitssl/bench").join(tag)
    }
}

/// Criterion's output directory (`$CRITERION_HOME`, else `target/criterion`).
pub fn criterion_dir() -> PathBuf {
    std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR").map(|t| PathBuf::from(t).join("criterion"))
        })
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// Builds the result rows of `metas` from criterion's latest estimates, keeping only those
/// measured since `since` (so stale estimates of benchmarks not run now are never reported).
/// `peak_gflops_per_core` is the calibrated FMA peak of one core.
pub fn rows(
    metas: &[BenchMeta],
    since: SystemTime,
    peak_gflops_per_core: Option<f64>,
) -> Result<Vec<BenchRow>> {
    let dir = criterion_dir();
    let measured = read_criterion_baseline(&dir, "new")
        .with_context(|| format!("reading {}", dir.display()))?;
    let prov = Provenance::collect("", 0);
    let fresh = |id: &str| -> bool {
        let path = dir
            .join(id.replace('/', std::path::MAIN_SEPARATOR_STR))
            .join("new/estimates.json");
        std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= since)
    };
    let mut out = Vec::new();
    for meta in metas {
        let Some(m) = measured.iter().find(|m| m.id == meta.id) else {
            continue;
        };
        if !fresh(&meta.id) {
            continue;
        }
        let gflops = meta.work / m.median_ns;
        out.push(BenchRow {
            id: meta.id.clone(),
            group: meta.group.clone(),
            variant: meta.variant.clone(),
            p: meta.p,
            d: meta.d,
            n: meta.n,
            threads: meta.threads,
            isa: meta.isa.clone(),
            median_ns: m.median_ns,
            lower_ns: m.lower_ns,
            upper_ns: m.upper_ns,
            flops: meta.work,
            gflops,
            peak_fraction: match (meta.flop_counted, peak_gflops_per_core) {
                (true, Some(peak)) => Some(gflops / (peak * meta.threads as f64)),
                _ => None,
            },
            git_rev: prov.git_rev.clone(),
            cpu_model: prov.cpu_model.clone(),
            cores: prov.cores,
            rustc: prov.rustc.clone(),
            date: prov.date.clone(),
        });
    }
    Ok(out)
}

/// Writes `rows` to `file` under [`results_dir`] (complete when every meta was measured).
/// Returns the path written.
pub fn write(file: &str, metas: &[BenchMeta], rows: &[BenchRow]) -> Result<PathBuf> {
    let complete = !rows.is_empty() && rows.len() == metas.len();
    let path = results_dir(complete).join(file);
    write_atomic(&path, rows)?;
    Ok(path)
}

/// Reads the calibrated single-core FMA peak (GFLOP/s) for `isa` from `kernels.csv` rows in
/// `dir`, when a kernels run has measured it.
pub fn peak_from(dir: &Path, isa: &str) -> Option<f64> {
    let rows = crate::report::read::read_bench_csv(&dir.join("kernels.csv")).ok()?;
    rows.iter()
        .find(|r| r.group == "fma_peak" && r.isa == isa && r.threads == 1)
        .map(|r| r.gflops)
}

/// Measures the f32 FMA peak of `threads` cores on `isa` (GFLOP/s), best of 5 timed runs of
/// [`FmaPeak`] on every thread of a fresh pool. Used as the denominator of `peak_fraction`.
pub fn calibrate_peak_gflops(isa: Isa, threads: usize) -> f64 {
    let arch = isa.arch().expect("available isa");
    let iters = 2_000_000;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    let flops = FmaPeak { iters, seed: 1.0 }.flops(isa) * threads as f64;
    let mut best = 0f64;
    for _ in 0..5 {
        let start = std::time::Instant::now();
        let sum: f32 = pool.install(|| {
            use rayon::prelude::*;
            (0..threads)
                .into_par_iter()
                .map(|t| {
                    arch.dispatch(FmaPeak {
                        iters,
                        seed: 1.0 + t as f32,
                    })
                })
                .sum()
        });
        std::hint::black_box(sum);
        best = best.max(flops / start.elapsed().as_nanos() as f64);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(
            slug("AMD EPYC 7B13 64-Core Processor"),
            "amd-epyc-7b13-64-core-processor"
        );
        assert_eq!(slug("  "), "unknown");
    }

    #[test]
    fn fma_peak_computes_the_recurrence() {
        let k = FmaPeak {
            iters: 3,
            seed: 1.0,
        };
        let flops = k.flops(Isa::Scalar);
        let got = pulp::Arch::Scalar.dispatch(k);
        let mut x = 1.0f32;
        for _ in 0..3 {
            x = x.mul_add(0.999_9, 1e-4);
        }
        assert!((got - FMA_CHAINS as f32 * x).abs() < 1e-4, "{got}");
        assert_eq!(flops, 2.0 * FMA_CHAINS as f64 * 3.0);
    }
}
