//! Step benches: one full gradient step (loss and `∇_Q L` of a batch of n = 256) through the
//! `Engine` interface, as the training loop calls it.
//!
//! Groups `step_mae` and `step_cl`, criterion ids `group/variant/P` with variants
//! `fast-<best isa>-t1`, `fast-<best isa>-t<all>`, and for MAE also `fast-<isa>-t<all>` for every
//! narrower SIMD level (`fast-v3-t2` on an AVX-512 machine), `fast-scalar-t<all>` and
//! `reference-t<all>` (the SIMD-vs-scalar and fast-vs-reference ratios). Throughput is the FLOPs
//! the variant executes for the batch: the SPEC §12 count for the reference; for the fast MAE
//! step `n·8m(P − m)d + 4Pd² + 4P²d` (it forms the position-only terms once per step and skips
//! masked keys in the content products), for the fast CL step `vitssl::fast::cl_fast_batch_flops`
//! (its products skip the masked, zero, content rows; see `vitssl::fast`). Compare variants by
//! time; the SPEC §12 counts of the fast steps are in the README. Results go to
//! `results/<machine-tag>/step.csv`.

mod common;

use criterion::{BenchmarkId, Criterion, Throughput};
use faer::Mat;
use std::hint::black_box;
use std::time::{Duration, SystemTime};
use vitssl::bench::BenchMeta;
use vitssl::config::Objective;
use vitssl::engine::{EngineKind, build};
use vitssl::fast::{
    cl_batch_flops, cl_fast_batch_flops, mae_flops, mae_sample_flops, mae_step_flops,
};

const N: usize = 256;

fn step(c: &mut Criterion, objective: Objective, metas: &mut Vec<BenchMeta>) {
    let group = format!("step_{}", objective.name());
    let variants = common::step_variants(objective);
    let mut g = c.benchmark_group(&group);
    g.sample_size(10);
    for p in common::SIZES {
        let run = common::model(objective, p);
        let d = run.dm.d();
        let batch = common::batch(&run, N);
        let q = run.initial_q();
        let m = run.dm.m;
        for &(kind, isa, threads) in &variants {
            let flops = match (objective, kind) {
                (Objective::Mae, EngineKind::Reference) => (N as u64 * mae_flops(p, d, m)) as f64,
                (Objective::Mae, EngineKind::Fast) => {
                    (N as u64 * mae_sample_flops(p, d, m) + mae_step_flops(p, d)) as f64
                }
                (Objective::Cl, EngineKind::Reference) => cl_batch_flops(p, d, N) as f64,
                (Objective::Cl, EngineKind::Fast) => cl_fast_batch_flops(p, d, m, N) as f64,
            };
            g.throughput(Throughput::Elements(flops as u64));
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            let mut engine = pool
                .install(|| build(kind, isa, &run.dm, &run.cfg.train))
                .expect("engine");
            let isa_name = engine.isa();
            let variant = common::variant_name(kind, &isa.to_string(), threads);
            let mut grad = Mat::<f64>::zeros(d, d);
            g.bench_function(BenchmarkId::new(&variant, p), |b| {
                b.iter(|| {
                    pool.install(|| engine.loss_grad(q.as_ref(), black_box(&batch), grad.as_mut()))
                })
            });
            metas.push(BenchMeta::new(
                &group, &variant, p, p, d, N, threads, &isa_name, flops, true,
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
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut metas = Vec::new();
    step(&mut c, Objective::Mae, &mut metas);
    step(&mut c, Objective::Cl, &mut metas);
    c.final_summary();
    common::finish("step.csv", &metas, since);
}
