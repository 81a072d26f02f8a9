//! The fast engine against the f64 reference (SPEC §11): loss and gradient agree to ≤ 1e-4
//! relative (Frobenius) on every ISA this machine has, at awkward sizes; results are
//! bit-identical at 1 and 2 threads; and a default-configuration training run on the fast engine
//! shows the paper's headline (SPEC §10).

use faer::Mat;
use vitssl::config::{EmbeddingKind, GeometryConfig, LayoutSpec, Objective, RunConfig};
use vitssl::data::Sample;
use vitssl::engine::Engine;
use vitssl::fast::{FastEngine, MAE_CHUNK, MatmulBackend};
use vitssl::isa::Isa;
use vitssl::objectives::{
    SAMPLE_CHUNK, batch_loss_grad, cl_view_backward, cl_view_forward, mae_sample,
};
use vitssl::rng::{Stream, stream};
use vitssl::train::{Outcome, Run};

/// Every ISA this machine runs; prints a note for each one it does not.
fn isas() -> Vec<Isa> {
    for isa in Isa::ALL {
        if !isa.is_available() {
            println!("note: ISA {isa} is not available on this machine/build; skipped");
        }
    }
    Isa::available()
}

/// An explicit two-cluster layout (for grids block layouts cannot fit): cluster 0 has local
/// areas 1, 2 at every third position, cluster 1 one local area at every fourth.
fn explicit(rows: usize, cols: usize) -> GeometryConfig {
    let p = rows * cols;
    let a = (0..p)
        .map(|i| if i % 3 == 1 { 1 + (i / 3) % 2 } else { 0 })
        .collect();
    let b = (0..p).map(|i| usize::from(i % 4 == 0)).collect();
    GeometryConfig {
        rows,
        cols,
        clusters: 2,
        layout: LayoutSpec::Explicit(vec![a, b]),
    }
}

struct Case {
    name: &'static str,
    cfg: RunConfig,
}

fn cases(objective: Objective) -> Vec<Case> {
    let base = |geometry: GeometryConfig, embedding: EmbeddingKind, noise: f64| {
        let mut cfg = RunConfig::for_objective(objective);
        cfg.geometry = geometry;
        cfg.data.embedding = embedding;
        cfg.data.noise = noise;
        cfg.train.init_scale = 0.5;
        cfg.seed = 11;
        cfg
    };
    let orth = EmbeddingKind::Orthonormal;
    vec![
        Case {
            name: "1x3 explicit, orthonormal",
            cfg: base(explicit(1, 3), orth, 0.0),
        },
        Case {
            name: "3x5 explicit, orthonormal, sigma 0.3",
            cfg: base(explicit(3, 5), orth, 0.3),
        },
        Case {
            name: "7x7 explicit, orthonormal",
            cfg: base(explicit(7, 7), orth, 0.0),
        },
        Case {
            name: "6x6 blocks, orthonormal, sigma 0.2",
            cfg: base(GeometryConfig::default(), orth, 0.2),
        },
        Case {
            name: "3x5 explicit, gaussian d=37, sigma 0.5",
            cfg: base(
                explicit(3, 5),
                EmbeddingKind::Gaussian { dim: Some(37) },
                0.5,
            ),
        },
        Case {
            name: "6x6 blocks, gaussian d=23, sigma 0.1",
            cfg: base(
                GeometryConfig::default(),
                EmbeddingKind::Gaussian { dim: Some(23) },
                0.1,
            ),
        },
    ]
}

fn batch(run: &Run, n: usize) -> Vec<Sample> {
    let mut rng = stream(run.cfg.seed, Stream::Train);
    (0..n)
        .map(|_| run.dm.sample(&mut rng, run.views()))
        .collect()
}

fn rel(a: &Mat<f64>, b: &Mat<f64>) -> f64 {
    (a - b).norm_l2() / b.norm_l2().max(1e-300)
}

fn rel_f32(a: faer::MatRef<'_, f32>, b: &Mat<f64>) -> f64 {
    let a = Mat::from_fn(a.nrows(), a.ncols(), |i, j| a[(i, j)] as f64);
    rel(&a, b)
}

#[test]
fn fast_matches_reference_on_every_isa_and_backend() {
    for objective in [Objective::Mae, Objective::Cl] {
        for case in cases(objective) {
            let run = Run::new(case.cfg.clone()).expect(case.name);
            let q = run.initial_q();
            assert!(q.norm_l2() > 0.0);
            // 11 samples: one full chunk and a short one.
            let samples = batch(&run, 11);
            let d = run.dm.d();
            let mut want = Mat::<f64>::zeros(d, d);
            let t = &run.cfg.train;
            let want_loss = batch_loss_grad(
                objective,
                t.tau,
                &run.dm,
                q.as_ref(),
                &samples,
                Some(want.as_mut()),
            );
            for isa in isas() {
                for backend in [MatmulBackend::Faer, MatmulBackend::Pulp] {
                    let mut e = FastEngine::new(&run.dm, objective, t.tau, isa).unwrap();
                    e.set_backend(backend);
                    let mut got = Mat::<f64>::zeros(d, d);
                    let loss = e.loss_grad(q.as_ref(), &samples, got.as_mut());
                    let el = (loss - want_loss).abs() / want_loss.abs();
                    let eg = rel(&got, &want);
                    println!(
                        "{} {} on {isa}/{backend:?}: loss {loss:.6e} rel err {el:.1e}, grad rel err {eg:.1e}",
                        objective.name(),
                        case.name
                    );
                    assert!(el <= 1e-4, "{}: loss {loss} vs {want_loss}", case.name);
                    assert!(eg <= 1e-4, "{}: gradient rel err {eg}", case.name);
                }
            }
        }
    }
}

#[test]
fn single_sample_entry_points_match_reference() {
    for case in cases(Objective::Mae)
        .into_iter()
        .chain(cases(Objective::Cl))
    {
        let run = Run::new(case.cfg.clone()).unwrap();
        let objective = run.cfg.train.objective;
        let q = run.initial_q();
        let s = &batch(&run, 1)[0];
        let d = run.dm.d();
        for isa in isas() {
            let mut e = FastEngine::new(&run.dm, objective, 1.0, isa).unwrap();
            e.set_q(q.as_ref());
            let mut ws = e.workspace();
            match objective {
                Objective::Mae => {
                    let mut want = Mat::<f64>::zeros(d, d);
                    let want_loss = mae_sample(&run.dm, q.as_ref(), s, Some(want.as_mut()), 1.0);
                    let loss = e.mae_sample(&mut ws, s);
                    assert!(
                        (loss - want_loss).abs() <= 1e-4 * want_loss,
                        "{}: {loss} vs {want_loss}",
                        case.name
                    );
                    let eg = rel_f32(ws.grad(), &want);
                    assert!(eg <= 1e-4, "{} on {isa}: {eg}", case.name);
                }
                Objective::Cl => {
                    for v in 0..2 {
                        let want_g = cl_view_forward(&run.dm, q.as_ref(), s, v);
                        let g = e.cl_view_forward(&mut ws, s, v).to_vec();
                        let err: f64 = want_g
                            .iter()
                            .zip(&g)
                            .map(|(a, b)| (a - *b as f64).powi(2))
                            .sum::<f64>()
                            .sqrt();
                        let norm: f64 = want_g.iter().map(|a| a * a).sum::<f64>().sqrt();
                        assert!(
                            err <= 1e-4 * norm,
                            "{} on {isa}: G err {err} of {norm}",
                            case.name
                        );
                        let dg: Vec<f64> =
                            (0..d).map(|j| ((j * 7 % 5) as f64 - 2.0) * 0.1).collect();
                        let mut want = Mat::<f64>::zeros(d, d);
                        cl_view_backward(&run.dm, q.as_ref(), s, v, &dg, want.as_mut(), 1.0);
                        let dg32: Vec<f32> = dg.iter().map(|&x| x as f32).collect();
                        e.cl_view_backward(&mut ws, s, v, &dg32);
                        let eg = rel_f32(ws.grad(), &want);
                        assert!(eg <= 1e-4, "{} view {v} on {isa}: {eg}", case.name);
                    }
                }
            }
        }
    }
}

fn pool(k: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(k)
        .build()
        .unwrap()
}

fn train_fast(cfg: RunConfig, isa: Isa) -> Outcome {
    let run = Run::new(cfg).unwrap();
    let t = &run.cfg.train;
    let mut engine = FastEngine::new(&run.dm, t.objective, t.tau, isa).unwrap();
    run.train(&mut engine, |_| Ok(()), |_| {}).unwrap()
}

#[test]
fn bit_identical_at_one_and_two_threads() {
    for objective in [Objective::Mae, Objective::Cl] {
        let case = &cases(objective)[3];
        let run = Run::new(case.cfg.clone()).unwrap();
        let q = run.initial_q();
        // At least three chunks on either objective, the last one ragged: the fold order matters.
        let samples = batch(&run, 2 * MAE_CHUNK.max(SAMPLE_CHUNK) + 5);
        let d = run.dm.d();
        for isa in isas() {
            let grads: Vec<(f64, Mat<f64>)> = [1, 2]
                .into_iter()
                .map(|k| {
                    pool(k).install(|| {
                        let mut e = FastEngine::new(&run.dm, objective, 1.0, isa).unwrap();
                        let mut g = Mat::<f64>::zeros(d, d);
                        let l = e.loss_grad(q.as_ref(), &samples, g.as_mut());
                        (l, g)
                    })
                })
                .collect();
            assert_eq!(
                grads[0].0.to_bits(),
                grads[1].0.to_bits(),
                "{objective:?} {isa}: loss"
            );
            assert!(
                grads[0].1 == grads[1].1,
                "{objective:?} {isa}: gradient differs between 1 and 2 threads"
            );

            let mut cfg = RunConfig::for_objective(objective);
            cfg.train.batch = 20;
            cfg.train.max_steps = 6;
            cfg.train.eval_every = 2;
            cfg.train.n_eval = 8;
            cfg.train.keep_going = true;
            let outs: Vec<Outcome> = [1, 2]
                .into_iter()
                .map(|k| pool(k).install(|| train_fast(cfg.clone(), isa)))
                .collect();
            assert!(
                outs[0].q == outs[1].q,
                "{objective:?} {isa}: trained Q differs"
            );
            assert_eq!(
                outs[0].summary.last.obs, outs[1].summary.last.obs,
                "{objective:?} {isa}"
            );
            assert_eq!(
                outs[0].summary.rho0.to_bits(),
                outs[1].summary.rho0.to_bits()
            );
        }
    }
}

#[test]
fn default_training_on_the_fast_engine_shows_the_headline() {
    let isa = Isa::best();
    let mae = train_fast(RunConfig::for_objective(Objective::Mae), isa);
    let m = mae.summary.last.obs;
    println!(
        "fast MAE after {} steps ({:.2} s): {m:?}",
        mae.summary.steps, mae.summary.seconds
    );
    assert!(mae.summary.converged);
    assert!(m.own_mass >= 0.85, "MAE own_mass {}", m.own_mass);
    assert!(
        m.global_mass_local <= 0.05,
        "MAE global_mass_local {}",
        m.global_mass_local
    );

    let cl = train_fast(RunConfig::for_objective(Objective::Cl), isa);
    let c = cl.summary.last.obs;
    println!(
        "fast CL after {} steps ({:.2} s): {c:?}",
        cl.summary.steps, cl.summary.seconds
    );
    assert!(cl.summary.converged);
    assert!(
        c.global_mass_all >= 0.85,
        "CL global_mass_all {}",
        c.global_mass_all
    );
    assert!(
        m.diversity > c.diversity,
        "MAE diversity {} should exceed CL's {}",
        m.diversity,
        c.diversity
    );
}

#[test]
fn engine_reports_name_and_isa_and_rejects_missing_levels() {
    let run = Run::new(RunConfig::default()).unwrap();
    for isa in Isa::available() {
        let e = FastEngine::new(&run.dm, Objective::Mae, 1.0, isa).unwrap();
        assert_eq!(e.name(), "fast");
        assert_eq!(e.isa(), isa.name());
    }
    for isa in Isa::ALL.into_iter().filter(|i| !i.is_available()) {
        assert!(FastEngine::new(&run.dm, Objective::Mae, 1.0, isa).is_err());
    }
    let built = vitssl::engine::build(
        vitssl::engine::EngineKind::Fast,
        Isa::best(),
        &run.dm,
        &run.cfg.train,
    )
    .unwrap();
    assert_eq!(built.name(), "fast");
}
