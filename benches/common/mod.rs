//! Inputs shared by the benches: seeded models at the benchmark sizes.

#![allow(dead_code)]

use vitssl::config::{GeometryConfig, Objective, RunConfig};
use vitssl::data::Sample;
use vitssl::engine::EngineKind;
use vitssl::isa::Isa;
use vitssl::rng::{Stream, stream};
use vitssl::train::Run;

/// Patches P of the kernel and step benches: 4×4, 8×8, 12×12 and 16×16 grids.
pub const SIZES: [usize; 4] = [16, 64, 144, 256];

/// The default model (block 2, ρ = 0.5, K = 2) on a √P × √P grid, with a seeded random Q
/// (entries N(0, 0.1²)) so the softmax is not uniform.
pub fn model(objective: Objective, p: usize) -> Run {
    let side = (p as f64).sqrt() as usize;
    assert_eq!(side * side, p);
    let mut cfg = RunConfig::for_objective(objective);
    cfg.geometry = GeometryConfig::blocks(side, side, 2, 0.5);
    cfg.train.init_scale = 0.1;
    cfg.seed = 2024;
    Run::new(cfg).expect("benchmark config is valid")
}

/// `n` seeded samples with the objective's number of views.
pub fn batch(run: &Run, n: usize) -> Vec<Sample> {
    let mut rng = stream(run.cfg.seed, Stream::Train);
    (0..n)
        .map(|_| run.dm.sample(&mut rng, run.views()))
        .collect()
}

/// Every available ISA, with a printed note for each one skipped.
pub fn isas() -> Vec<vitssl::isa::Isa> {
    for isa in vitssl::isa::Isa::ALL {
        if !isa.is_available() {
            eprintln!(
                "note: ISA {isa} not available on this machine/build: its variants are skipped"
            );
        }
    }
    vitssl::isa::Isa::available()
}

/// Writes the rows of `metas` measured since `since` into `file`, with a summary line.
pub fn finish(file: &str, metas: &[vitssl::bench::BenchMeta], since: std::time::SystemTime) {
    if vitssl::bench::test_mode() {
        return;
    }
    let peak = vitssl::bench::calibrate_peak_gflops(vitssl::isa::Isa::best(), 1);
    let result = vitssl::bench::rows(metas, since, Some(peak))
        .and_then(|rows| vitssl::bench::write(file, metas, &rows).map(|p| (p, rows.len())));
    match result {
        Ok((path, n)) => eprintln!(
            "wrote {n} of {} rows to {} (FMA peak of one core: {peak:.1} GFLOP/s)",
            metas.len(),
            path.display()
        ),
        Err(e) => {
            eprintln!("error: cannot write {file}: {e:#}");
            std::process::exit(1);
        }
    }
}

/// The variants of a full step: the fast engine on the best ISA at 1 thread and at every core,
/// and for MAE also `--isa scalar` and the reference engine at every core (the SIMD-vs-scalar
/// and fast-vs-reference ratios of the fast-engine targets), and every narrower SIMD level of
/// this machine at every core (on an AVX-512 machine `fast-v3-t<all>`: the AVX2 kernels on the
/// same cores).
pub fn step_variants(objective: Objective) -> Vec<(EngineKind, Isa, usize)> {
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let best = Isa::best();
    let mut variants = vec![(EngineKind::Fast, best, 1), (EngineKind::Fast, best, all)];
    if objective == Objective::Mae {
        for isa in narrower_simd() {
            variants.push((EngineKind::Fast, isa, all));
        }
        variants.push((EngineKind::Fast, Isa::Scalar, all));
        variants.push((EngineKind::Reference, Isa::Scalar, all));
    }
    variants.dedup();
    variants
}

/// The SIMD levels of this machine below the best one, scalar excluded (best first).
pub fn narrower_simd() -> Vec<Isa> {
    Isa::available()
        .into_iter()
        .skip(1)
        .filter(|&i| i != Isa::Scalar)
        .collect()
}

/// A step variant's name in the result files: `fast-<isa>-t<threads>` or `reference-t<threads>`.
pub fn variant_name(kind: EngineKind, isa: &str, threads: usize) -> String {
    match kind {
        EngineKind::Fast => format!("fast-{isa}-t{threads}"),
        EngineKind::Reference => format!("reference-t{threads}"),
    }
}

/// The benchmark filter among criterion-style arguments: the first word that is neither a flag
/// nor the value of one of criterion's options that take a value.
pub fn filter(args: &[String]) -> Option<String> {
    const WITH_VALUE: [&str; 15] = [
        "--save-baseline",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--profile-time",
        "--plotting-backend",
        "--output-format",
        "--color",
    ];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if WITH_VALUE.contains(&a.as_str()) {
            it.next();
        } else if !a.starts_with('-') {
            return Some(a.clone());
        }
    }
    None
}

/// Writes `rows` (a whole file) to `file` under [`vitssl::bench::results_dir`]`(complete)`, with
/// a summary line; exits with status 1 when it cannot.
pub fn write_rows<R: serde::Serialize>(file: &str, rows: &[R], complete: bool) {
    let path = vitssl::bench::results_dir(complete).join(file);
    if let Err(e) = vitssl::record::write_atomic(&path, rows) {
        eprintln!("error: cannot write {}: {e:#}", path.display());
        std::process::exit(1);
    }
    eprintln!("wrote {} rows to {}", rows.len(), path.display());
}
