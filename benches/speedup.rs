//! Speedup bench: the ratios of the fast-engine targets, measured as paired ratios.
//!
//! The MAE step variants of `step.rs` (fast on the best ISA at 1 thread and at every core,
//! fast on every narrower SIMD level and with `--isa scalar`, the reference engine; P = 256,
//! n = 256, the same seeded model and batch) are timed in interleaved rounds: every round times each variant once, starting from a
//! different variant each round, and each ratio is formed from the two times of the same round.
//! On a shared machine whose speed drifts by 10–30% over seconds, separate criterion runs of the
//! two sides of a ratio can land in different phases of that drift; two times taken within the
//! same couple of seconds share it, so their ratio keeps the comparison. The row reports the
//! median ratio over the rounds, its range, and the median times. Ratios: `simd_vs_scalar`,
//! `threads`, `fast_vs_reference` (the targets), and per narrower level, e.g. on an AVX-512
//! machine, `v4_vs_v3` (the AVX-512 step against the AVX2 step) and `fast_v3_vs_reference`.
//! One more row, `fast_vs_reference_ceiling`, bounds `fast_vs_reference` from above: each
//! round's reference time against the time the FLOPs the fast step executes
//! (`n · mae_sample_flops + mae_step_flops`) would take at the f32 FMA peak of all cores,
//! calibrated by the FMA loop before and after the rounds, the higher of the two (a noisy phase of
//! the machine can only lower a calibration; its `faster` is `<fast variant>-at-fma-peak`). A
//! machine where it is not far above 10× cannot meet the 10× target however fast the kernels get.
//!
//! A round runs one untimed step of a variant, then times `reps` consecutive steps (enough for
//! about 0.3 s, fixed from an untimed warm-up step at the start) and takes their mean. The
//! untimed step keeps a variant whose step is longer than 0.3 s (the reference) from being timed
//! on a single step that starts with caches full of the previous variant's data: every timed
//! step runs in the steady state that criterion's warm-up gives the `step` bench. `cargo bench -- --test` runs one round at P = 16
//! and writes nothing; a run with a filter that does not match `speedup` skips the bench. A
//! complete run writes `results/<machine-tag>/speedup.csv` (written whole, then renamed).

mod common;

use faer::Mat;
use std::time::Instant;
use vitssl::config::Objective;
use vitssl::engine::{Engine, EngineKind, build};
use vitssl::fast::{mae_sample_flops, mae_step_flops};
use vitssl::isa::Isa;
use vitssl::provenance::Provenance;
use vitssl::report::schema::SpeedupRow;

const N: usize = 256;
const ROUNDS: usize = 11;
/// Seconds one variant's share of a round should last, at least.
const ROUND_SECONDS: f64 = 0.3;

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        0.5 * (s[m - 1] + s[m])
    }
}

struct Variant<'a> {
    name: String,
    kind: EngineKind,
    isa: Isa,
    threads: usize,
    pool: rayon::ThreadPool,
    engine: Box<dyn Engine + 'a>,
    reps: usize,
    /// Mean seconds per step, one entry per round.
    times: Vec<f64>,
}

fn main() {
    // Allocator thresholds fixed first, as in the `vitssl` binary (see `vitssl::alloc`).
    vitssl::alloc::retain_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let test = vitssl::bench::test_mode();
    if common::filter(&args).is_some_and(|f| !"speedup".contains(f.as_str())) {
        return;
    }
    let (p, rounds) = if test { (16, 1) } else { (256, ROUNDS) };
    let run = common::model(Objective::Mae, p);
    let d = run.dm.d();
    let batch = common::batch(&run, N);
    let q = run.initial_q();
    let mut grad = Mat::<f64>::zeros(d, d);
    let mut variants: Vec<Variant> = common::step_variants(Objective::Mae)
        .into_iter()
        .map(|(kind, isa, threads)| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("thread pool");
            let engine = pool
                .install(|| build(kind, isa, &run.dm, &run.cfg.train))
                .expect("engine");
            Variant {
                name: common::variant_name(kind, &isa.to_string(), threads),
                kind,
                isa,
                threads,
                pool,
                engine,
                reps: 1,
                times: Vec::new(),
            }
        })
        .collect();
    // One untimed step each (workspaces, caches), which also sets how many steps a round takes.
    for v in &mut variants {
        let t = Instant::now();
        v.pool
            .install(|| v.engine.loss_grad(q.as_ref(), &batch, grad.as_mut()));
        let secs = t.elapsed().as_secs_f64();
        v.reps = if test {
            1
        } else {
            ((ROUND_SECONDS / secs).ceil() as usize).clamp(1, 100)
        };
    }
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let best = Isa::best();
    let peak_before = vitssl::bench::calibrate_peak_gflops(best, all);
    let count = variants.len();
    for round in 0..rounds {
        for i in 0..count {
            let v = &mut variants[(round + i) % count];
            v.pool
                .install(|| v.engine.loss_grad(q.as_ref(), &batch, grad.as_mut()));
            let t = Instant::now();
            for _ in 0..v.reps {
                v.pool
                    .install(|| v.engine.loss_grad(q.as_ref(), &batch, grad.as_mut()));
            }
            v.times.push(t.elapsed().as_secs_f64() / v.reps as f64);
        }
    }

    let find = |kind: EngineKind, isa: Option<Isa>, threads: usize| {
        variants
            .iter()
            .position(|v| v.kind == kind && isa.is_none_or(|i| i == v.isa) && v.threads == threads)
    };
    let fast_all = find(EngineKind::Fast, Some(best), all);
    let reference = find(EngineKind::Reference, None, all);
    // (ratio, slower, faster): the three targets, then for each narrower SIMD level its step
    // against the best level's and the reference against it.
    let mut pairs = vec![
        (
            "simd_vs_scalar".to_string(),
            find(EngineKind::Fast, Some(Isa::Scalar), all),
            fast_all,
        ),
        (
            "threads".into(),
            find(EngineKind::Fast, Some(best), 1),
            fast_all,
        ),
        ("fast_vs_reference".into(), reference, fast_all),
    ];
    for isa in common::narrower_simd() {
        let narrow = find(EngineKind::Fast, Some(isa), all);
        pairs.push((format!("{best}_vs_{isa}"), narrow, fast_all));
        pairs.push((format!("fast_{isa}_vs_reference"), reference, narrow));
    }
    // (ratio, slower name, faster name, slower times, faster times) per round.
    let mut series = Vec::new();
    for (ratio, slower, faster) in pairs {
        // A ratio of a variant with itself (a one-core machine, a machine without SIMD) is
        // not a measurement; skip it.
        let (Some(s), Some(f)) = (slower, faster) else {
            continue;
        };
        if s == f {
            continue;
        }
        let (s, f) = (&variants[s], &variants[f]);
        series.push((
            ratio,
            s.name.clone(),
            f.name.clone(),
            &s.times,
            f.times.clone(),
        ));
    }
    // The ceiling of `fast_vs_reference`: the reference's times against the time the fast
    // step's executed FLOPs would take at the FMA peak of all cores.
    if let (Some(r), Some(f)) = (reference, fast_all) {
        let flops =
            N as f64 * mae_sample_flops(p, d, run.dm.m) as f64 + mae_step_flops(p, d) as f64;
        let peak = peak_before.max(vitssl::bench::calibrate_peak_gflops(best, all));
        let at_peak = flops / (peak * 1e9);
        series.push((
            "fast_vs_reference_ceiling".into(),
            variants[r].name.clone(),
            format!("{}-at-fma-peak", variants[f].name),
            &variants[r].times,
            vec![at_peak; rounds],
        ));
    }
    let prov = Provenance::collect("", 0);
    let mut rows = Vec::new();
    for (ratio, slower, faster, s_times, f_times) in series {
        let per_round: Vec<f64> = s_times.iter().zip(&f_times).map(|(a, b)| a / b).collect();
        let row = SpeedupRow {
            id: format!("step_mae/{ratio}/{p}"),
            group: "step_mae".into(),
            ratio,
            slower,
            faster,
            p,
            d,
            n: N,
            rounds,
            median: median(&per_round),
            min: per_round.iter().copied().fold(f64::INFINITY, f64::min),
            max: per_round.iter().copied().fold(0.0, f64::max),
            slower_ms: 1e3 * median(s_times),
            faster_ms: 1e3 * median(&f_times),
            git_rev: prov.git_rev.clone(),
            cpu_model: prov.cpu_model.clone(),
            cores: prov.cores,
            rustc: prov.rustc.clone(),
            date: prov.date.clone(),
        };
        eprintln!(
            "{:<32} {:>6.2}× (rounds {:.2}–{:.2}×)  {} {:.1} ms / {} {:.1} ms",
            row.id,
            row.median,
            row.min,
            row.max,
            row.slower,
            row.slower_ms,
            row.faster,
            row.faster_ms
        );
        rows.push(row);
    }
    if test {
        println!("speedup: 1 round at P = {p} in test mode, nothing written");
        return;
    }
    common::write_rows("speedup.csv", &rows, true);
}
