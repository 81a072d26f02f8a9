//! The MAE and CL objectives and their exact gradients, reference f64 engine (SPEC §5).
//!
//! **MAE.** `ℓ = ½ Σ_{p∈M} ‖x_p − F_p‖²`, `L = (1/n) Σ_i ℓ_i`. Only masked query rows enter (their
//! token is `h_p = e_p`). With `r_p = x_p − F_p`: `g_pq = −r_pᵀ x̃_q`.
//!
//! **CL.** `G = (1/P) Σ_p F_p` over all P queries; logits `S_ij = ⟨G_i¹, G_j²⟩/τ`;
//! `L = −(1/n) Σ_i log softmax_j(S_i·)_i`. With `Π = rowsoftmax(S)`:
//! `∂L/∂G_i¹ = (Σ_j Π_ij G_j² − G_i²)/(nτ)`, `∂L/∂G_j² = (Σ_i Π_ij G_i¹ − G_j¹)/(nτ)`, and for every
//! query p of a view `g_pq = (1/P)(∂L/∂G)ᵀ x̃_q`.
//!
//! Batches are reduced over fixed chunks of [`SAMPLE_CHUNK`] samples folded in index order, so
//! results are bit-identical at any thread count (SPEC §11).

use crate::config::Objective;
use crate::data::{DataModel, Sample};
use crate::model::{View, accumulate_grad, attention, mul, softmax_backward, softmax_rows};
use faer::{Mat, MatMut, MatRef};
use rayon::prelude::*;

/// Samples per parallel work item. Fixed (not derived from the thread count) for determinism.
pub const SAMPLE_CHUNK: usize = 8;

/// Maps every chunk of `[0, n)` in parallel, then folds the partial results in chunk order.
pub fn fold_chunks<T: Send>(
    n: usize,
    map: impl Fn(std::ops::Range<usize>) -> T + Sync,
    mut fold: impl FnMut(T),
) {
    let chunks = n.div_ceil(SAMPLE_CHUNK);
    let parts: Vec<T> = (0..chunks)
        .into_par_iter()
        .map(|c| map(c * SAMPLE_CHUNK..((c + 1) * SAMPLE_CHUNK).min(n)))
        .collect();
    parts.into_iter().for_each(&mut fold);
}

/// InfoNCE over the view representations `g1`, `g2` (`n × d`, row i is `G_i¹` / `G_i²`).
/// Returns the loss and `(∂L/∂G¹, ∂L/∂G²)`.
pub fn info_nce(g1: MatRef<'_, f64>, g2: MatRef<'_, f64>, tau: f64) -> (f64, Mat<f64>, Mat<f64>) {
    let n = g1.nrows();
    let mut pi = mul(g1, g2.transpose());
    for i in 0..n {
        for j in 0..n {
            pi[(i, j)] /= tau;
        }
    }
    let logits = pi.clone();
    softmax_rows(pi.as_mut());
    let mut loss = 0.0;
    for i in 0..n {
        let max = (0..n)
            .map(|j| logits[(i, j)])
            .fold(f64::NEG_INFINITY, f64::max);
        let lse = max
            + (0..n)
                .map(|j| (logits[(i, j)] - max).exp())
                .sum::<f64>()
                .ln();
        loss += lse - logits[(i, i)];
    }
    let scale = 1.0 / (n as f64 * tau);
    let mut d1 = mul(pi.as_ref(), g2);
    let mut d2 = mul(pi.transpose(), g1);
    for i in 0..n {
        for j in 0..g1.ncols() {
            d1[(i, j)] = (d1[(i, j)] - g2[(i, j)]) * scale;
            d2[(i, j)] = (d2[(i, j)] - g1[(i, j)]) * scale;
        }
    }
    (loss / n as f64, d1, d2)
}

/// One sample's MAE loss `ℓ`, and `∇_Q ℓ · alpha` added into `grad` when given.
pub fn mae_sample(
    dm: &DataModel,
    q: MatRef<'_, f64>,
    s: &Sample,
    grad: Option<MatMut<'_, f64>>,
    alpha: f64,
) -> f64 {
    let mask = &s.masks[0];
    let view = View::new(dm, s, mask);
    let hm = view.h_rows(&mask.masked);
    let a = attention(q, hm.as_ref(), view.h.as_ref());
    let f = mul(a.as_ref(), view.xt.as_ref());
    let r = Mat::from_fn(f.nrows(), f.ncols(), |i, j| {
        view.x[(mask.masked[i], j)] - f[(i, j)]
    });
    let loss = 0.5 * r.squared_norm_l2();
    if let Some(grad) = grad {
        let g = -mul(r.as_ref(), view.xt.transpose());
        let ds = softmax_backward(a.as_ref(), g.as_ref());
        accumulate_grad(grad, hm.as_ref(), ds.as_ref(), view.h.as_ref(), alpha);
    }
    loss
}

/// One view's representation `G = (1/P) Σ_p F_p` (length d).
pub fn cl_view_forward(dm: &DataModel, q: MatRef<'_, f64>, s: &Sample, v: usize) -> Vec<f64> {
    let view = View::new(dm, s, &s.masks[v]);
    let a = attention(q, view.h.as_ref(), view.h.as_ref());
    let f = mul(a.as_ref(), view.xt.as_ref());
    let p = f.nrows() as f64;
    (0..f.ncols())
        .map(|j| (0..f.nrows()).map(|i| f[(i, j)]).sum::<f64>() / p)
        .collect()
}

/// One view's backward: adds `alpha · ∇_Q` of the view given `dg = ∂L/∂G` into `grad`.
pub fn cl_view_backward(
    dm: &DataModel,
    q: MatRef<'_, f64>,
    s: &Sample,
    v: usize,
    dg: &[f64],
    grad: MatMut<'_, f64>,
    alpha: f64,
) {
    let view = View::new(dm, s, &s.masks[v]);
    let a = attention(q, view.h.as_ref(), view.h.as_ref());
    let p = view.h.nrows();
    // g_pq = (1/P) dgᵀ x̃_q, the same for every query p.
    let gq: Vec<f64> = (0..p)
        .map(|qi| (0..dg.len()).map(|j| dg[j] * view.xt[(qi, j)]).sum::<f64>() / p as f64)
        .collect();
    let g = Mat::from_fn(p, p, |_, qi| gq[qi]);
    let ds = softmax_backward(a.as_ref(), g.as_ref());
    accumulate_grad(grad, view.h.as_ref(), ds.as_ref(), view.h.as_ref(), alpha);
}

/// Batch loss `L` and, when `grad` is given, `∇_Q L` written into it (overwritten).
pub fn batch_loss_grad(
    objective: Objective,
    tau: f64,
    dm: &DataModel,
    q: MatRef<'_, f64>,
    batch: &[Sample],
    mut grad: Option<MatMut<'_, f64>>,
) -> f64 {
    let n = batch.len();
    let d = dm.d();
    let want = grad.is_some();
    if let Some(g) = grad.as_mut() {
        g.fill(0.0);
    }
    match objective {
        Objective::Mae => {
            let mut loss = 0.0;
            fold_chunks(
                n,
                |r| {
                    let mut part = want.then(|| Mat::<f64>::zeros(d, d));
                    let mut l = 0.0;
                    for s in &batch[r] {
                        l += mae_sample(dm, q, s, part.as_mut().map(|m| m.as_mut()), 1.0);
                    }
                    (l, part)
                },
                |(l, part)| {
                    loss += l;
                    if let (Some(g), Some(part)) = (grad.as_mut(), part) {
                        *g += &part;
                    }
                },
            );
            if let Some(g) = grad.as_mut() {
                *g *= faer::Scale(1.0 / n as f64);
            }
            loss / n as f64
        }
        Objective::Cl => {
            let mut g1 = Mat::<f64>::zeros(n, d);
            let mut g2 = Mat::<f64>::zeros(n, d);
            let mut i = 0;
            fold_chunks(
                n,
                |r| {
                    batch[r]
                        .iter()
                        .map(|s| (cl_view_forward(dm, q, s, 0), cl_view_forward(dm, q, s, 1)))
                        .collect::<Vec<_>>()
                },
                |rows| {
                    for (a, b) in rows {
                        for j in 0..d {
                            g1[(i, j)] = a[j];
                            g2[(i, j)] = b[j];
                        }
                        i += 1;
                    }
                },
            );
            let (loss, d1, d2) = info_nce(g1.as_ref(), g2.as_ref(), tau);
            if let Some(g) = grad.as_mut() {
                let row = |m: &Mat<f64>, i: usize| (0..d).map(|j| m[(i, j)]).collect::<Vec<_>>();
                fold_chunks(
                    n,
                    |r| {
                        let mut part = Mat::<f64>::zeros(d, d);
                        for i in r {
                            cl_view_backward(dm, q, &batch[i], 0, &row(&d1, i), part.as_mut(), 1.0);
                            cl_view_backward(dm, q, &batch[i], 1, &row(&d2, i), part.as_mut(), 1.0);
                        }
                        part
                    },
                    |part| *g += &part,
                );
            }
            loss
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_nce_matches_its_formula_and_finite_differences() {
        let n = 3;
        let d = 4;
        let g1 = Mat::from_fn(n, d, |i, j| ((i * 5 + j) as f64 * 0.7).sin());
        let g2 = Mat::from_fn(n, d, |i, j| ((i * 3 + j * 2) as f64 * 0.3).cos());
        let tau = 0.7;
        let (loss, d1, _) = info_nce(g1.as_ref(), g2.as_ref(), tau);
        let direct = |g1: &Mat<f64>| {
            let mut l = 0.0;
            for i in 0..n {
                let s: Vec<f64> = (0..n)
                    .map(|j| (0..d).map(|k| g1[(i, k)] * g2[(j, k)]).sum::<f64>() / tau)
                    .collect();
                l -= (s[i].exp() / s.iter().map(|x| x.exp()).sum::<f64>()).ln();
            }
            l / n as f64
        };
        assert!((loss - direct(&g1)).abs() < 1e-14);
        let h = 1e-6;
        for i in 0..n {
            for k in 0..d {
                let mut p = g1.clone();
                p[(i, k)] += h;
                let mut m = g1.clone();
                m[(i, k)] -= h;
                let fd = (direct(&p) - direct(&m)) / (2.0 * h);
                assert!((fd - d1[(i, k)]).abs() < 1e-8, "{fd} vs {}", d1[(i, k)]);
            }
        }
    }
}
