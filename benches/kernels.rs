//! Kernel benches: the FMA peak, `exp`, and one sample's fused forward + backward.
//!
//! Groups (criterion ids `group/variant/size`):
//! - `fma_peak/<isa>/1`: the FMA-throughput loop on one core (the roofline of the others);
//! - `exp/<libm|vector-isa>/4096`: 4096 f32 exponentials (throughput in elements);
//! - `mae_sample/<reference|fast-isa>/P`: one MAE sample, forward and backward. The reference
//!   forms the sample's own `∇_Q`; the fast engine runs the per-sample part of a step
//!   (`FastEngine::mae_sample_kernel`), whose gradient rows are turned into `∇_Q` once per
//!   step for the whole batch (that per-step work is in the `step` bench);
//! - `cl_view/<reference|fast-isa>/P`: one CL view, forward and backward.
//!
//! Throughput is set to the FLOPs the variant executes (criterion reports it as "elements": one
//! element = one FLOP): the SPEC §12 count for the reference, `8m(P − m)d` for the fast MAE
//! sample (`vitssl::fast::mae_sample_flops`), `6(P − m)d² + 6P²d + 2Pd²` for the fast CL view
//! (`vitssl::fast::cl_fast_view_flops` plus its own `(Σ W) E`). Results go to
//! `results/<machine-tag>/kernels.csv` (see `vitssl::bench`).

mod common;

use criterion::{BenchmarkId, Criterion, Throughput};
use faer::Mat;
use std::hint::black_box;
use std::time::{Duration, SystemTime};
use vitssl::bench::{BenchMeta, FmaPeak};
use vitssl::config::Objective;
use vitssl::fast::{
    FastEngine, cl_fast_view_flops, cl_flops, exp::exp_in_place, mae_flops, mae_sample_flops,
};
use vitssl::objectives;

fn fma_peak(c: &mut Criterion, metas: &mut Vec<BenchMeta>) {
    let mut g = c.benchmark_group("fma_peak");
    let iters = 100_000;
    for isa in common::isas() {
        let arch = isa.arch().expect("available");
        let flops = FmaPeak { iters, seed: 1.0 }.flops(isa);
        g.throughput(Throughput::Elements(flops as u64));
        g.bench_with_input(BenchmarkId::new(isa.name(), 1), &iters, |b, &iters| {
            b.iter(|| {
                arch.dispatch(FmaPeak {
                    iters,
                    seed: black_box(1.0),
                })
            })
        });
        metas.push(BenchMeta::new(
            "fma_peak",
            isa.name(),
            1,
            0,
            0,
            1,
            1,
            isa.name(),
            flops,
            true,
        ));
    }
    g.finish();
}

fn exp(c: &mut Criterion, metas: &mut Vec<BenchMeta>) {
    let n = 4096;
    let input: Vec<f32> = (0..n)
        .map(|i| -87.0 + 175.0 * i as f32 / n as f32)
        .collect();
    let mut out = vec![0f32; n];
    let mut g = c.benchmark_group("exp");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(BenchmarkId::new("libm", n), |b| {
        b.iter(|| {
            for (o, x) in out.iter_mut().zip(black_box(&input)) {
                *o = x.exp();
            }
        })
    });
    metas.push(BenchMeta::new(
        "exp", "libm", n, 0, 0, n, 1, "scalar", n as f64, false,
    ));
    for isa in common::isas() {
        let arch = isa.arch().expect("available");
        let variant = format!("vector-{isa}");
        g.bench_function(BenchmarkId::new(&variant, n), |b| {
            b.iter(|| {
                out.copy_from_slice(black_box(&input));
                exp_in_place(arch, &mut out);
            })
        });
        metas.push(BenchMeta::new(
            "exp",
            &variant,
            n,
            0,
            0,
            n,
            1,
            isa.name(),
            n as f64,
            false,
        ));
    }
    g.finish();
}

/// Metadata of a one-sample bench `group/variant/P`: n = 1, one thread, FLOP-counted.
fn sample_meta(group: &str, variant: &str, p: usize, d: usize, isa: &str, flops: f64) -> BenchMeta {
    BenchMeta::new(group, variant, p, p, d, 1, 1, isa, flops, true)
}

fn mae_sample(c: &mut Criterion, metas: &mut Vec<BenchMeta>) {
    let mut g = c.benchmark_group("mae_sample");
    for p in common::SIZES {
        let run = common::model(Objective::Mae, p);
        let (d, m) = (run.dm.d(), run.dm.m);
        let s = common::batch(&run, 1).remove(0);
        let q = run.initial_q();
        let flops = mae_flops(p, d, m) as f64;
        g.throughput(Throughput::Elements(flops as u64));
        let mut grad = Mat::<f64>::zeros(d, d);
        g.bench_function(BenchmarkId::new("reference", p), |b| {
            b.iter(|| {
                objectives::mae_sample(&run.dm, q.as_ref(), black_box(&s), Some(grad.as_mut()), 1.0)
            })
        });
        metas.push(sample_meta("mae_sample", "reference", p, d, "f64", flops));
        for isa in common::isas() {
            let mut engine =
                FastEngine::new(&run.dm, Objective::Mae, 1.0, isa).expect("available isa");
            engine.set_q(q.as_ref());
            let mut ws = engine.workspace();
            let variant = format!("fast-{isa}");
            let fast_flops = mae_sample_flops(p, d, m) as f64;
            g.throughput(Throughput::Elements(fast_flops as u64));
            g.bench_function(BenchmarkId::new(&variant, p), |b| {
                b.iter(|| engine.mae_sample_kernel(&mut ws, black_box(&s)))
            });
            metas.push(sample_meta(
                "mae_sample",
                &variant,
                p,
                d,
                isa.name(),
                fast_flops,
            ));
        }
    }
    g.finish();
}

fn cl_view(c: &mut Criterion, metas: &mut Vec<BenchMeta>) {
    let mut g = c.benchmark_group("cl_view");
    for p in common::SIZES {
        let run = common::model(Objective::Cl, p);
        let d = run.dm.d();
        let s = common::batch(&run, 1).remove(0);
        let q = run.initial_q();
        let dg64: Vec<f64> = (0..d).map(|j| ((j as f64) * 0.37).sin() * 0.01).collect();
        let dg32: Vec<f32> = dg64.iter().map(|&x| x as f32).collect();
        let flops = cl_flops(p, d) as f64;
        g.throughput(Throughput::Elements(flops as u64));
        let mut grad = Mat::<f64>::zeros(d, d);
        g.bench_function(BenchmarkId::new("reference", p), |b| {
            b.iter(|| {
                let gv = objectives::cl_view_forward(&run.dm, q.as_ref(), black_box(&s), 0);
                objectives::cl_view_backward(&run.dm, q.as_ref(), &s, 0, &dg64, grad.as_mut(), 1.0);
                gv
            })
        });
        metas.push(sample_meta("cl_view", "reference", p, d, "f64", flops));
        // One view through the single-view entry points: its own `(Σ W) E` (a chunk of one).
        let fast_flops = (cl_fast_view_flops(p, d, run.dm.m) + 2 * (p * d * d) as u64) as f64;
        for isa in common::isas() {
            g.throughput(Throughput::Elements(fast_flops as u64));
            let mut engine =
                FastEngine::new(&run.dm, Objective::Cl, 1.0, isa).expect("available isa");
            engine.set_q(q.as_ref());
            let mut ws = engine.workspace();
            let variant = format!("fast-{isa}");
            g.bench_function(BenchmarkId::new(&variant, p), |b| {
                b.iter(|| {
                    let g0 = engine.cl_view_forward(&mut ws, black_box(&s), 0)[0];
                    engine.cl_view_backward(&mut ws, &s, 0, &dg32);
                    g0
                })
            });
            metas.push(sample_meta(
                "cl_view",
                &variant,
                p,
                d,
                isa.name(),
                fast_flops,
            ));
        }
    }
    g.finish();
}

fn main() {
    // Allocator thresholds fixed first, as in the `vitssl` binary (see `vitssl::alloc`).
    vitssl::alloc::retain_freed_memory();
    let since = SystemTime::now();
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut metas = Vec::new();
    fma_peak(&mut c, &mut metas);
    exp(&mut c, &mut metas);
    mae_sample(&mut c, &mut metas);
    cl_view(&mut c, &mut metas);
    c.final_summary();
    common::finish("kernels.csv", &metas, since);
}
