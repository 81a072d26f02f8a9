//! Training-loop behaviour on the reference engine: the paper's headline at the default
//! configuration (SPEC §10), determinism, and typed errors for invalid configurations.

use faer::{MatMut, MatRef};
use vitssl::Error;
use vitssl::config::{DataRegime, EmbeddingKind, GeometryConfig, LayoutSpec, Objective, RunConfig};
use vitssl::data::Sample;
use vitssl::engine::{Engine, ReferenceEngine};
use vitssl::train::{EvalRow, Outcome, Run};

fn train(cfg: RunConfig) -> (Outcome, Vec<EvalRow>) {
    let run = Run::new(cfg).expect("valid config");
    let t = &run.cfg.train;
    let mut engine = ReferenceEngine::new(&run.dm, t.objective, t.tau);
    let mut rows = Vec::new();
    let out = run
        .train(
            &mut engine,
            |r| {
                rows.push(*r);
                Ok(())
            },
            |_| {},
        )
        .expect("training succeeds");
    (out, rows)
}

#[test]
fn headline_mae_is_local_and_cl_collapses_to_global() {
    let (mae, _) = train(RunConfig::for_objective(Objective::Mae));
    let m = mae.summary.last.obs;
    println!("MAE after {} steps: {m:?}", mae.summary.steps);
    assert!(mae.summary.converged);
    assert!(m.own_mass >= 0.85, "MAE own_mass {}", m.own_mass);
    assert!(
        m.global_mass_local <= 0.05,
        "MAE global_mass_local {}",
        m.global_mass_local
    );
    assert!(mae.summary.t_cross.is_some());

    let (cl, rows) = train(RunConfig::for_objective(Objective::Cl));
    let c = cl.summary.last.obs;
    println!("CL after {} steps: {c:?}", cl.summary.steps);
    assert!(cl.summary.converged);
    assert!(
        c.global_mass_all >= 0.85,
        "CL global_mass_all {}",
        c.global_mass_all
    );
    assert!(
        c.own_mass < rows[0].obs.own_mass,
        "CL own_mass should fall: {} -> {}",
        rows[0].obs.own_mass,
        c.own_mass
    );
    assert!(
        m.diversity > c.diversity,
        "MAE diversity {} should exceed CL's {}",
        m.diversity,
        c.diversity
    );
}

fn small(objective: Objective) -> RunConfig {
    let mut cfg = RunConfig::for_objective(objective);
    cfg.geometry.rows = 4;
    cfg.geometry.cols = 4;
    cfg.train.batch = 16;
    cfg.train.max_steps = 12;
    cfg.train.eval_every = 4;
    cfg.train.n_eval = 8;
    cfg.train.keep_going = true;
    cfg
}

#[test]
fn same_config_and_seed_give_identical_observables_at_any_thread_count() {
    for objective in [Objective::Mae, Objective::Cl] {
        let mut cfg = small(objective);
        cfg.data.noise = 0.1;
        cfg.seed = 3;
        let pool = |k| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(k)
                .build()
                .unwrap()
        };
        let (a, ra) = pool(1).install(|| train(cfg.clone()));
        let (b, rb) = pool(2).install(|| train(cfg.clone()));
        let obs = |r: &[EvalRow]| r.iter().map(|x| (x.step, x.obs)).collect::<Vec<_>>();
        assert_eq!(
            obs(&ra),
            obs(&rb),
            "{}: observables differ between 1 and 2 threads",
            objective.name()
        );
        assert_eq!(a.q, b.q);
        cfg.seed = 4;
        let (_, rc) = train(cfg);
        assert_ne!(
            obs(&ra),
            obs(&rc),
            "a different seed should give different numbers"
        );
    }
}

#[test]
fn fixed_regime_reuses_samples_and_trains() {
    let mut cfg = small(Objective::Mae);
    cfg.train.data = DataRegime::Fixed(10);
    let (out, rows) = train(cfg);
    assert_eq!(rows.len(), 4);
    assert!(out.summary.last.obs.loss < rows[0].obs.loss);
}

#[test]
fn evaluation_rows_follow_the_schedule_and_stop_at_convergence() {
    let mut cfg = RunConfig::for_objective(Objective::Mae);
    cfg.train.eval_every = 7;
    let (out, rows) = train(cfg);
    let steps: Vec<_> = rows.iter().map(|r| r.step).collect();
    assert!(steps.iter().all(|s| s % 7 == 0), "{steps:?}");
    assert_eq!(*steps.last().unwrap(), out.summary.steps);
    assert!(rows.windows(2).all(|w| w[0].seconds <= w[1].seconds));
    // Only the last row reached the target: the run stopped at its first converged evaluation.
    assert!(rows[..rows.len() - 1].iter().all(|r| r.obs.own_mass < 0.85));
}

#[test]
fn capped_runs_are_not_converged() {
    let mut cfg = small(Objective::Mae);
    cfg.train.max_steps = 3;
    cfg.train.eval_every = 10;
    let (out, rows) = train(cfg);
    assert!(!out.summary.converged);
    assert_eq!(out.summary.steps, 3);
    assert_eq!(rows.iter().map(|r| r.step).collect::<Vec<_>>(), vec![0, 3]);
}

/// The reference engine, except that from step `bad_from` on the loss (or gradient) is NaN.
struct Poisoned<'a> {
    inner: ReferenceEngine<'a>,
    step: usize,
    bad_from: usize,
    poison_grad: bool,
}

impl Engine for Poisoned<'_> {
    fn name(&self) -> &'static str {
        "poisoned"
    }
    fn isa(&self) -> String {
        "f64".into()
    }
    fn loss_grad(
        &mut self,
        q: MatRef<'_, f64>,
        batch: &[Sample],
        mut grad: MatMut<'_, f64>,
    ) -> f64 {
        self.step += 1;
        let loss = self.inner.loss_grad(q, batch, grad.as_mut());
        if self.step < self.bad_from {
            loss
        } else if self.poison_grad {
            grad[(0, 0)] = f64::INFINITY;
            loss
        } else {
            f64::NAN
        }
    }
}

#[test]
fn non_finite_loss_or_gradient_names_the_step_and_keeps_rows() {
    for poison_grad in [false, true] {
        let mut cfg = small(Objective::Mae);
        cfg.train.eval_every = 1;
        let run = Run::new(cfg).unwrap();
        let mut engine = Poisoned {
            inner: ReferenceEngine::new(&run.dm, Objective::Mae, 1.0),
            step: 0,
            bad_from: 4,
            poison_grad,
        };
        let mut rows = Vec::new();
        let err = run
            .train(
                &mut engine,
                |r| {
                    rows.push(r.step);
                    Ok(())
                },
                |_| {},
            )
            .err()
            .expect("a NaN loss must stop the run");
        let what = if poison_grad { "gradient" } else { "loss" };
        assert_eq!(
            err,
            Error::NonFinite {
                what,
                step: 4,
                lr: 1.0
            }
        );
        assert!(err.to_string().contains("at step 4"), "{err}");
        assert_eq!(
            rows,
            [0, 1, 2, 3],
            "every evaluation before the failure was reported"
        );
    }
}

#[test]
fn invalid_configurations_give_named_errors() {
    let base = RunConfig::default;
    let cases: Vec<(RunConfig, &str)> = vec![
        (
            {
                let mut c = base();
                c.geometry.rows = 5;
                c
            },
            "b = 2",
        ),
        (
            {
                let mut c = base();
                c.geometry.rows = 0;
                c
            },
            "empty",
        ),
        (
            {
                let mut c = base();
                c.geometry.clusters = 0;
                c
            },
            "K = 0",
        ),
        (
            {
                let mut c = base();
                c.geometry.layout = LayoutSpec::Blocks {
                    block: 2,
                    global_frac: 0.0,
                };
                c
            },
            "rho = 0",
        ),
        (
            {
                let mut c = base();
                c.geometry.layout = LayoutSpec::Blocks {
                    block: 2,
                    global_frac: 0.95,
                };
                c
            },
            "no local area",
        ),
        (
            {
                let mut c = base();
                c.geometry.layout = LayoutSpec::Blocks {
                    block: 2,
                    global_frac: 0.05,
                };
                c
            },
            "global area empty",
        ),
        (
            {
                let mut c = base();
                c.geometry = GeometryConfig {
                    rows: 1,
                    cols: 3,
                    clusters: 1,
                    layout: LayoutSpec::Explicit(vec![vec![0, 2, 2]]),
                };
                c
            },
            "area 1 has no position",
        ),
        (
            {
                let mut c = base();
                c.data.weights = (2.0, 1.0);
                c
            },
            "weights",
        ),
        (
            {
                let mut c = base();
                c.data.weights = (0.0, 1.0);
                c
            },
            "weights",
        ),
        (
            {
                let mut c = base();
                c.data.noise = -1.0;
                c
            },
            "noise",
        ),
        (
            {
                let mut c = base();
                c.data.mask_ratio = 1.0;
                c
            },
            "mask-ratio",
        ),
        (
            {
                let mut c = base();
                c.data.mask_ratio = 0.001;
                c
            },
            "mask-ratio",
        ),
        (
            {
                let mut c = base();
                c.data.embedding = EmbeddingKind::Gaussian { dim: Some(0) };
                c
            },
            "dim",
        ),
        (
            {
                let mut c = base();
                c.train.lr = f64::NAN;
                c
            },
            "lr",
        ),
        (
            {
                let mut c = base();
                c.train.tau = 0.0;
                c
            },
            "tau",
        ),
        (
            {
                let mut c = base();
                c.train.batch = 0;
                c
            },
            "batch",
        ),
        (
            {
                let mut c = RunConfig::for_objective(Objective::Cl);
                c.train.batch = 1;
                c
            },
            "batch",
        ),
        (
            {
                let mut c = base();
                c.train.data = DataRegime::Fixed(0);
                c
            },
            "fixed:0",
        ),
        (
            {
                let mut c = base();
                c.train.max_steps = 0;
                c
            },
            "steps",
        ),
        (
            {
                let mut c = base();
                c.train.eval_every = 0;
                c
            },
            "eval-every",
        ),
        (
            {
                let mut c = base();
                c.train.target = 1.5;
                c
            },
            "target",
        ),
        (
            {
                let mut c = base();
                c.train.n_eval = 1;
                c
            },
            "n-eval",
        ),
        (
            {
                let mut c = base();
                c.train.init_scale = -0.1;
                c
            },
            "init-scale",
        ),
    ];
    for (cfg, needle) in cases {
        let err = Run::new(cfg.clone())
            .err()
            .unwrap_or_else(|| panic!("accepted invalid config {cfg:?}"));
        assert!(
            err.to_string().contains(needle),
            "error '{err}' should name '{needle}'"
        );
    }
}
