//! The one-layer softmax attention model, forward and backward, in f64 (SPEC §4–5).
//!
//! Tokens `h_q = x̃_q + e_q` with `x̃_q = x_q` for visible q and 0 for masked q; scores
//! `s_pq = h_pᵀ Q h_q`; attention `A_p· = softmax_q(s_p·)` over all P keys (masked keys carry
//! position only); output `F_p = Σ_q A_pq x̃_q`. Given `g_pq = ∂ℓ/∂A_pq`, the softmax backward is
//! `Ds_pq = A_pq (g_pq − Σ_q' A_pq' g_pq')` and `∇_Q ℓ = Σ_p Σ_q Ds_pq h_p h_qᵀ = H_rowsᵀ Ds H`.
//!
//! This is the reference: plain loops and faer products written as the formulas, the ground
//! truth the fast engine is tested against.

use crate::data::{DataModel, Mask, Sample};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};

/// One view of one sample: masked content and tokens.
#[derive(Clone, Debug)]
pub struct View {
    /// Content `X` (`P × d`).
    pub x: Mat<f64>,
    /// Masked content `X̃` (`P × d`, masked rows zero).
    pub xt: Mat<f64>,
    /// Tokens `H = X̃ + E` (`P × d`).
    pub h: Mat<f64>,
}

impl View {
    /// Materialises sample `s` under `mask`.
    pub fn new(dm: &DataModel, s: &Sample, mask: &Mask) -> Self {
        let x = dm.content(s);
        let xt = Mat::from_fn(x.nrows(), x.ncols(), |p, j| {
            if mask.is_masked[p] { 0.0 } else { x[(p, j)] }
        });
        let h = &xt + &dm.emb.e;
        Self { x, xt, h }
    }

    /// The rows of `H` at `rows`, as a `|rows| × d` matrix.
    pub fn h_rows(&self, rows: &[usize]) -> Mat<f64> {
        Mat::from_fn(rows.len(), self.h.ncols(), |i, j| self.h[(rows[i], j)])
    }
}

/// Product `a · b` into a fresh matrix (sequential: the reference parallelises over samples).
///
/// Followed by [`crate::fast::clear_upper`]: faer's micro-kernels return with the upper halves
/// of the vector registers dirty, which otherwise slows every later legacy-SSE instruction
/// (libm's `exp` in the softmax in particular) many times over.
pub fn mul(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Mat<f64> {
    let mut c = Mat::zeros(a.nrows(), b.ncols());
    matmul(c.as_mut(), Accum::Replace, a, b, 1.0, Par::Seq);
    crate::fast::clear_upper();
    c
}

/// Row-wise softmax in place, subtracting each row's max first so huge logits stay finite.
pub fn softmax_rows(mut s: MatMut<'_, f64>) {
    for i in 0..s.nrows() {
        let max = (0..s.ncols())
            .map(|j| s[(i, j)])
            .fold(f64::NEG_INFINITY, f64::max);
        let mut sum = 0.0;
        for j in 0..s.ncols() {
            let e = (s[(i, j)] - max).exp();
            s[(i, j)] = e;
            sum += e;
        }
        for j in 0..s.ncols() {
            s[(i, j)] /= sum;
        }
    }
}

/// Attention of the query tokens `hq` (`r × d`) over the keys `h` (`P × d`):
/// `softmax(hq Q hᵀ)`, `r × P`.
pub fn attention(q: MatRef<'_, f64>, hq: MatRef<'_, f64>, h: MatRef<'_, f64>) -> Mat<f64> {
    let u = mul(hq, q);
    let mut s = mul(u.as_ref(), h.transpose());
    softmax_rows(s.as_mut());
    s
}

/// Softmax backward: `Ds_pq = A_pq (g_pq − Σ_q' A_pq' g_pq')`.
pub fn softmax_backward(a: MatRef<'_, f64>, g: MatRef<'_, f64>) -> Mat<f64> {
    let mut ds = Mat::zeros(a.nrows(), a.ncols());
    for i in 0..a.nrows() {
        let dot: f64 = (0..a.ncols()).map(|j| a[(i, j)] * g[(i, j)]).sum();
        for j in 0..a.ncols() {
            ds[(i, j)] = a[(i, j)] * (g[(i, j)] - dot);
        }
    }
    ds
}

/// Accumulates `∇_Q += hqᵀ Ds h` (the `Σ_p Σ_q Ds_pq h_p h_qᵀ` of SPEC §5).
pub fn accumulate_grad(
    grad: MatMut<'_, f64>,
    hq: MatRef<'_, f64>,
    ds: MatRef<'_, f64>,
    h: MatRef<'_, f64>,
    alpha: f64,
) {
    let w = mul(hq.transpose(), ds);
    matmul(grad, Accum::Add, w.as_ref(), h, alpha, Par::Seq);
    crate::fast::clear_upper();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_stable_for_huge_logits() {
        let mut s = Mat::from_fn(3, 2, |i, j| match (i, j) {
            (0, 0) => 1234.0,
            (0, 1) => 0.0,
            (1, _) => 1e308,
            (2, 0) => -1e308,
            _ => -1e300,
        });
        softmax_rows(s.as_mut());
        assert_eq!((s[(0, 0)], s[(0, 1)]), (1.0, 0.0));
        assert_eq!((s[(1, 0)], s[(1, 1)]), (0.5, 0.5));
        assert!(s[(2, 1)] == 1.0 && s[(2, 0)] == 0.0, "{:?}", s);
        for i in 0..3 {
            for j in 0..2 {
                assert!(s[(i, j)].is_finite());
            }
        }
    }

    #[test]
    fn softmax_rows_sum_to_one() {
        let mut s = Mat::from_fn(4, 7, |i, j| ((i * 7 + j) as f64).sin() * 30.0);
        softmax_rows(s.as_mut());
        for i in 0..4 {
            let sum: f64 = (0..7).map(|j| s[(i, j)]).sum();
            assert!((sum - 1.0).abs() < 1e-15);
        }
    }
}
