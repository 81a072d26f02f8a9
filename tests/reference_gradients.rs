//! The reference gradients of SPEC §5 against central finite differences of the reference loss
//! (relative Frobenius error ≤ 1e-6), for MAE and CL, orthonormal and gaussian embeddings,
//! σ = 0 and σ > 0, at several geometries.

use faer::Mat;
use vitssl::config::{EmbeddingKind, GeometryConfig, LayoutSpec, Objective, RunConfig};
use vitssl::objectives::batch_loss_grad;
use vitssl::rng::{Stream, stream};
use vitssl::train::Run;

fn run(
    objective: Objective,
    geometry: GeometryConfig,
    embedding: EmbeddingKind,
    noise: f64,
) -> Run {
    let mut cfg = RunConfig::for_objective(objective);
    cfg.geometry = geometry;
    cfg.data.embedding = embedding;
    cfg.data.noise = noise;
    cfg.train.init_scale = 0.4;
    cfg.train.tau = 0.7;
    cfg.seed = 11;
    Run::new(cfg).expect("valid config")
}

/// Relative Frobenius error between the analytic gradient and central differences.
fn fd_error(run: &Run, n: usize) -> f64 {
    let t = &run.cfg.train;
    let mut rng = stream(5, Stream::Train);
    let batch: Vec<_> = (0..n).map(|_| run.dm.sample(&mut rng, 2)).collect();
    let q = run.initial_q();
    let d = q.nrows();
    let loss =
        |q: &Mat<f64>| batch_loss_grad(t.objective, t.tau, &run.dm, q.as_ref(), &batch, None);
    let mut grad = Mat::zeros(d, d);
    batch_loss_grad(
        t.objective,
        t.tau,
        &run.dm,
        q.as_ref(),
        &batch,
        Some(grad.as_mut()),
    );
    let h = 1e-5;
    let mut fd = Mat::<f64>::zeros(d, d);
    let mut qp = q.clone();
    for i in 0..d {
        for j in 0..d {
            let orig = qp[(i, j)];
            qp[(i, j)] = orig + h;
            let up = loss(&qp);
            qp[(i, j)] = orig - h;
            let down = loss(&qp);
            qp[(i, j)] = orig;
            fd[(i, j)] = (up - down) / (2.0 * h);
        }
    }
    let err = (&grad - &fd).norm_l2() / fd.norm_l2();
    assert!(
        fd.norm_l2() > 1e-3,
        "degenerate test: gradient norm {}",
        fd.norm_l2()
    );
    err
}

fn blocks(rows: usize, cols: usize, clusters: usize, block: usize, rho: f64) -> GeometryConfig {
    GeometryConfig {
        rows,
        cols,
        clusters,
        layout: LayoutSpec::Blocks {
            block,
            global_frac: rho,
        },
    }
}

fn explicit_3x3() -> GeometryConfig {
    GeometryConfig {
        rows: 3,
        cols: 3,
        clusters: 2,
        layout: LayoutSpec::Explicit(vec![
            vec![0, 0, 1, 0, 0, 1, 2, 2, 0],
            vec![1, 0, 0, 1, 0, 0, 0, 0, 0],
        ]),
    }
}

#[test]
fn gradients_match_finite_differences() {
    let geometries = [
        ("4x4 b2", blocks(4, 4, 2, 2, 0.5)),
        ("2x6 b2 K3", blocks(2, 6, 3, 2, 0.4)),
        ("3x3 explicit", explicit_3x3()),
    ];
    let embeddings = [
        EmbeddingKind::Orthonormal,
        EmbeddingKind::Gaussian { dim: Some(11) },
    ];
    let mut worst: f64 = 0.0;
    for objective in [Objective::Mae, Objective::Cl] {
        for (name, geometry) in &geometries {
            for embedding in embeddings {
                for noise in [0.0, 0.1] {
                    let r = run(objective, geometry.clone(), embedding, noise);
                    let err = fd_error(&r, 3);
                    println!(
                        "{} {name} {} σ={noise}: relative error {err:.2e}",
                        objective.name(),
                        embedding.name()
                    );
                    assert!(
                        err <= 1e-6,
                        "{} {name} {} σ={noise}: gradient vs finite differences, relative error {err:.3e}",
                        objective.name(),
                        embedding.name()
                    );
                    worst = worst.max(err);
                }
            }
        }
    }
    println!("largest relative error: {worst:.2e}");
}
