//! Fused CL (InfoNCE) forward and backward of one view, and of chunks of samples (SPEC §4–5).
//!
//! All P queries enter; `H = X̃ + E`, `U = H Q = R + X̃ Q` (`P × d`), with the step's
//! `R = E Q` ([`super::FastEngine::set_q`]) and `Q` packed once per step: `X̃` is zero on the
//! masked rows, so only its `P − m` visible rows are multiplied by `Q` (half the `2Pd²` of a
//! dense `H Q` at γ = 1/2, about 15% of a view).
//!
//! **Forward.** `G = (1/P) Σ_p F_p = (1/P) Σ_p Σ_q A_pq x̃_q = (1/P) X̃ᵀ a` with the column sums
//! `a_q = Σ_p A_pq`: per panel of up to [`QP`] query rows, scores `U_p Hᵀ`, softmax, and `a` is
//! accumulated; `F` itself is never formed (the identity replaces the `4P²d` output product of the
//! cost model by `2Pd` work). Only `G` (d floats) is kept per view.
//!
//! **Backward.** Given `∂L/∂G`, `∂L/∂F_p = (1/P) ∂L/∂G` for every p, so `g_pq = c_q` with
//! `c = (1/P) X̃ ∂L/∂G` (the same for every query row). The backward *recomputes* `U` and each
//! panel's scores and softmax (storing `A` for `n` samples × 2 views × `P²` floats would cost far
//! more memory than the `2Pd² + 2P²d` it saves), writes `Ds_p· = A_p· ⊙ (c − ⟨A_p·, c⟩)` into
//! `Ds` (`P × P`, the kernel's output), then `W = Hᵀ Ds` into the view's slot. Per chunk of
//! samples `∇_Q = Σ W H` over both views of every sample is `Σ W_{·,V} X̃_V + (Σ W) E`: the
//! visible columns of every `W` and visible rows of every `X̃`, compacted side by side, in one
//! product (half the `2Pd²` per view of `Σ W H` at γ = 1/2), and the chunk's `Σ W` times `E`.
//!
//! **Logits.** [`info_nce`] forms `S = G¹G²ᵀ/τ`, its row softmax `Π`, the loss and
//! `∂L/∂G¹ = (Π G² − G²)/(nτ)`, `∂L/∂G² = (Πᵀ G¹ − G¹)/(nτ)` once per batch in f64 (`O(n²d)`).

use super::kernels::{
    axpy, dot, gemm_rows, gemm_rows_to, packed_b_len, softmax_backward_row, softmax_row,
};
use super::mat::ViewMut;
use super::{Ctx, Workspace, materialize, panel_rows, product};
use crate::data::Sample;
use crate::objectives::SAMPLE_CHUNK;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};
use pulp::{Simd, WithSimd};

/// FLOPs of one CL view in the fast engine, `m` of its P positions masked: `6(P − m)d² + 6P²d`
/// (the visible query rows `X̃_V Q` in the forward and in the backward pass, the scores in
/// both, `W = Hᵀ Ds`, and the view's share `W_{·,V} X̃_V` of `Σ W H`). A chunk of views adds
/// `2Pd²` for `(Σ W) E` and a step `2Pd²` for `R = E Q` ([`cl_fast_batch_flops`]).
pub fn cl_fast_view_flops(p: usize, d: usize, m: usize) -> u64 {
    let (p, d, m) = (p as u64, d as u64, m as u64);
    6 * (p - m) * d * d + 6 * p * p * d
}

/// FLOPs of a CL batch of `n` samples in the fast engine: two views each
/// ([`cl_fast_view_flops`]), `(Σ W) E` (`2Pd²`) per chunk of [`SAMPLE_CHUNK`] samples, `R`
/// (`2Pd²`) and the `n × n` logits (`2n²d`).
pub fn cl_fast_batch_flops(p: usize, d: usize, m: usize, n: usize) -> u64 {
    let chunks = n.div_ceil(SAMPLE_CHUNK) as u64;
    let (pd2, n) = ((p * d * d) as u64, n as u64);
    2 * n * cl_fast_view_flops(p, d, m) + 2 * pd2 * (chunks + 1) + 2 * n * n * d as u64
}

/// What a pass over the attention rows of a view accumulates.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Forward: the column sums `a_q = Σ_p A_pq` into `ws.colsum`.
    ColumnSums,
    /// Backward: `Ds_p· = A_p· ⊙ (c − ⟨A_p·, c⟩)` into `ws.ds`.
    SoftmaxBackward,
}

/// `U = H Q` (the view has `nv` visible positions, listed in `ws.vis`), then per panel of up to
/// [`QP`] queries the scores `U_p Hᵀ`, their softmax and the pass's accumulation. (A plain enum
/// rather than a closure: a closure body would not inherit the SIMD target features and its
/// intrinsics would become calls.)
#[inline(always)]
fn attention_pass<S: Simd>(simd: S, ctx: &Ctx<'_>, ws: &mut Workspace, nv: usize, pass: Pass) {
    let (p, d) = (ctx.p, ctx.d);
    // U = E Q + X̃ Q = R + X̃ Q with the step's R; the masked rows of X̃ are zero, so only the
    // visible rows multiply Q.
    for q in 0..p {
        ws.u.row_mut(q).copy_from_slice(ctx.r.row(q));
    }
    let (xt, vis) = (&ws.xt, &ws.vis[..nv]);
    gemm_rows_to(
        simd,
        &mut ws.u.view_mut(),
        |i| xt.row(vis[i]),
        |i| vis[i],
        nv,
        d,
        ctx.qp,
        Accum::Add,
    );
    let mut r0 = 0;
    while r0 < p {
        let nr = panel_rows(p - r0);
        let htp = ws.htp.slice(packed_b_len(d, p));
        let u = &ws.u;
        let sc = &mut ws.sc.view_mut();
        gemm_rows(simd, sc, |i| u.row(r0 + i), nr, d, htp, Accum::Replace);
        for i in 0..nr {
            softmax_row(simd, ws.sc.row_mut(i));
            match pass {
                Pass::ColumnSums => axpy(simd, &mut ws.colsum, 1.0, ws.sc.row(i)),
                Pass::SoftmaxBackward => {
                    softmax_backward_row(simd, ws.sc.row(i), &ws.c, 1.0, ws.ds.row_mut(r0 + i));
                }
            }
        }
        r0 += nr;
    }
}

/// View `v` of `s`: `G = (1/P) Σ_p F_p = (1/P) Σ_q a_q x̃_q` into `ws.gvec`.
#[inline(always)]
pub(super) fn view_forward<S: Simd>(
    simd: S,
    ctx: &Ctx<'_>,
    ws: &mut Workspace,
    s: &Sample,
    v: usize,
) {
    let nv = materialize(simd, ctx, ws, s, &s.masks[v], 0);
    let p = ctx.p;
    ws.colsum.fill(0.0);
    attention_pass(simd, ctx, ws, nv, Pass::ColumnSums);
    let inv_p = 1.0 / p as f32;
    ws.gvec.fill(0.0);
    for q in 0..p {
        axpy(simd, &mut ws.gvec, ws.colsum[q] * inv_p, ws.xt.row(q));
    }
}

/// Backward of view `v` of `s` given `dg = ∂L/∂G`, in chunk slot `slot`: forms `W = Hᵀ Ds`,
/// adds it into `ws.wsum`, and appends its visible columns to the first `off` columns of `ws.w`
/// and the visible rows of `X̃` to the first `off` rows of `ws.h`. Returns how many it appended.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn view_backward<S: Simd>(
    simd: S,
    ctx: &Ctx<'_>,
    ws: &mut Workspace,
    s: &Sample,
    v: usize,
    dg: &[f32],
    slot: usize,
    off: usize,
) -> usize {
    let nv = materialize(simd, ctx, ws, s, &s.masks[v], slot);
    let p = ctx.p;
    let inv_p = 1.0 / p as f32;
    for q in 0..p {
        ws.c[q] = dot(simd, dg, ws.xt.row(q)) * inv_p;
    }
    attention_pass(simd, ctx, ws, nv, Pass::SoftmaxBackward);
    let w = ws.w.view_mut().into_cols(slot * p, p);
    let h = ws.h.view().rows(slot * p, p);
    product(
        simd,
        ctx.backend,
        w,
        h.t(),
        ws.ds.view(),
        Accum::Replace,
        &mut ws.gemm,
    );
    // `W H = W X̃ + W E`: X̃ is zero on the masked rows, so only W's visible columns meet X̃ (in
    // the chunk's compact product), and `W E` is summed over the chunk first. Moving left
    // (`off + j ≤ slot·P + vis[j]`) never overwrites a column or row still to be read.
    let vis = &ws.vis[..nv];
    for i in 0..ctx.d {
        let row = ws.w.row_mut(i);
        axpy(
            simd,
            ws.wsum.row_mut(i),
            1.0,
            &row[slot * p..(slot + 1) * p],
        );
        for (j, &q) in vis.iter().enumerate() {
            row[off + j] = row[slot * p + q];
        }
    }
    for (j, &q) in vis.iter().enumerate() {
        ws.h.row_mut(off + j).copy_from_slice(ws.xt.row(q));
    }
    nv
}

/// Forward of both views of a chunk of samples: row `2i + v` of `out` is `G` of view v of
/// sample i.
pub(super) struct ClForwardChunk<'a, 'c> {
    pub ctx: &'a Ctx<'c>,
    pub ws: &'a mut Workspace,
    pub samples: &'a [Sample],
    pub out: &'a mut [f32],
}

impl WithSimd for ClForwardChunk<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Self {
            ctx,
            ws,
            samples,
            out,
        } = self;
        let d = ctx.d;
        for (i, s) in samples.iter().enumerate() {
            for v in 0..2 {
                view_forward(simd, ctx, ws, s, v);
                out[(2 * i + v) * d..(2 * i + v + 1) * d].copy_from_slice(&ws.gvec);
            }
        }
    }
}

/// Backward of both views of a chunk: `dg` row `2i + v` is `∂L/∂G` of view v of sample i;
/// `Σ ∇_Q` over the chunk is written into `grad`.
pub(super) struct ClBackwardChunk<'a, 'c> {
    pub ctx: &'a Ctx<'c>,
    pub ws: &'a mut Workspace,
    pub samples: &'a [Sample],
    pub views: &'a [usize],
    pub dg: &'a [f32],
    pub grad: ViewMut<'a>,
}

impl WithSimd for ClBackwardChunk<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Self {
            ctx,
            ws,
            samples,
            views,
            dg,
            grad,
        } = self;
        let d = ctx.d;
        let nviews = views.len();
        assert!(
            samples.len() * nviews <= ws.slots,
            "chunk too large for the workspace"
        );
        ws.wsum.fill_zero();
        let mut off = 0;
        for (i, s) in samples.iter().enumerate() {
            for (k, &v) in views.iter().enumerate() {
                let slot = nviews * i + k;
                let dg = &dg[slot * d..(slot + 1) * d];
                off += view_backward(simd, ctx, ws, s, v, dg, slot, off);
            }
        }
        // Σ W H = [W_V…] [X̃_V; …] + (Σ W) E.
        let (w, h) = (ws.w.view().cols(0, off), ws.h.view().rows(0, off));
        let mut grad = grad;
        product(
            simd,
            ctx.backend,
            grad.rb_mut(),
            w,
            h,
            Accum::Replace,
            &mut ws.gemm,
        );
        let (wsum, e) = (ws.wsum.view(), ctx.e.view());
        product(simd, ctx.backend, grad, wsum, e, Accum::Add, &mut ws.gemm);
    }
}

/// Forward of one view, for benchmarks and tests.
pub(super) struct ClViewForward<'a, 'c> {
    pub ctx: &'a Ctx<'c>,
    pub ws: &'a mut Workspace,
    pub sample: &'a Sample,
    pub view: usize,
}

impl WithSimd for ClViewForward<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        view_forward(simd, self.ctx, self.ws, self.sample, self.view);
    }
}

/// Below this shifted logit `exp` is taken as 0: its weight against the row maximum's `e⁰ = 1`
/// is under `e⁻⁷⁰⁰ ≈ 1e−304`, far below f64 resolution, and libm's `exp` takes a slow path for
/// results that underflow (which made the logits, not the kernels, dominate collapsed CL runs).
const EXP_CUTOFF: f64 = -700.0;

/// InfoNCE over the view representations `g1`, `g2` (`n × d`, row i is `G_i¹` / `G_i²`), in f64:
/// returns `L = −(1/n) Σ_i log softmax_j(S_i·)_i` with `S = G¹G²ᵀ/τ`, and `(∂L/∂G¹, ∂L/∂G²)`
/// (SPEC §5). The same formula as [`crate::objectives::info_nce`].
///
/// # Panics
/// When the shapes differ.
#[track_caller]
pub fn info_nce(g1: MatRef<'_, f64>, g2: MatRef<'_, f64>, tau: f64) -> (f64, Mat<f64>, Mat<f64>) {
    assert_eq!(
        (g1.nrows(), g1.ncols()),
        (g2.nrows(), g2.ncols()),
        "views of different shapes"
    );
    let (n, d) = (g1.nrows(), g1.ncols());
    // Column i of `pit` is row i of S (faer is column-major): every row softmax is contiguous.
    let mut pit = Mat::<f64>::zeros(n, n);
    matmul(
        pit.as_mut(),
        Accum::Replace,
        g2,
        g1.transpose(),
        1.0,
        Par::Seq,
    );
    // faer's kernels leave the vector state dirty; libm's exp below would crawl.
    super::clear_upper();
    let mut loss = 0.0;
    for i in 0..n {
        let row = pit.col_as_slice_mut(i);
        let mut max = f64::NEG_INFINITY;
        for s in row.iter_mut() {
            *s /= tau;
            max = max.max(*s);
        }
        let diag = row[i];
        let mut sum = 0.0;
        for s in row.iter_mut() {
            let z = *s - max;
            *s = if z < EXP_CUTOFF { 0.0 } else { z.exp() };
            sum += *s;
        }
        loss += max + sum.ln() - diag;
        for s in row.iter_mut() {
            *s /= sum;
        }
    }
    let scale = 1.0 / (n as f64 * tau);
    let mut d1 = Mat::<f64>::zeros(n, d);
    let mut d2 = Mat::<f64>::zeros(n, d);
    matmul(
        d1.as_mut(),
        Accum::Replace,
        pit.transpose(),
        g2,
        1.0,
        Par::Seq,
    );
    matmul(d2.as_mut(), Accum::Replace, pit.as_ref(), g1, 1.0, Par::Seq);
    super::clear_upper();
    for j in 0..d {
        for i in 0..n {
            d1[(i, j)] = (d1[(i, j)] - g2[(i, j)]) * scale;
            d2[(i, j)] = (d2[(i, j)] - g1[(i, j)]) * scale;
        }
    }
    (loss / n as f64, d1, d2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_nce_matches_the_reference_including_collapsed_logits() {
        for (n, d, scale, tau) in [
            (3, 4, 1.0, 1.0),
            (17, 5, 3.0, 0.5),
            (40, 7, 60.0, 0.2),
            (2, 1, 1e3, 1.0),
        ] {
            let g1 = Mat::from_fn(n, d, |i, j| ((i * 5 + j) as f64 * 0.7).sin() * scale);
            let g2 = Mat::from_fn(n, d, |i, j| ((i * 3 + j * 2) as f64 * 0.3).cos() * scale);
            let (l, a1, a2) = info_nce(g1.as_ref(), g2.as_ref(), tau);
            let (wl, w1, w2) = crate::objectives::info_nce(g1.as_ref(), g2.as_ref(), tau);
            assert!(
                (l - wl).abs() <= 1e-12 * wl.abs().max(1.0),
                "n={n}: {l} vs {wl}"
            );
            for (a, w) in [(&a1, &w1), (&a2, &w2)] {
                let err = (a - w).norm_l2();
                assert!(err <= 1e-12 * w.norm_l2().max(1e-300), "n={n}: {err}");
            }
        }
    }
}
