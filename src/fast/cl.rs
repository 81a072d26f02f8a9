//! Fused CL (InfoNCE) forward and backward of one view, and of chunks of samples (SPEC §4–5).
//!
//! All P queries enter; `H = X̃ + E`, `U = H Q` (`P × d`).
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
//! `Ds` (`P × P`, the kernel's output), then `W = Hᵀ Ds` into the view's slot; per chunk of
//! samples `∇_Q = Σ W H` over both views of every sample is one product.

use super::kernels::{axpy, dot, gemm, softmax_backward_row, softmax_row};
use super::mat::ViewMut;
use super::{Ctx, QP, Workspace, materialize, product};
use crate::data::Sample;
use faer::Accum;
use pulp::{Simd, WithSimd};

/// Scores and softmax of every query of the view in `slot`, panel by panel; `each(r0, nr, ws)`
/// sees the attention rows `r0..r0 + nr` in `ws.sc`.
#[inline(always)]
fn attention_panels<S: Simd>(
    simd: S,
    ctx: &Ctx<'_>,
    ws: &mut Workspace,
    slot: usize,
    mut each: impl FnMut(usize, usize, &mut Workspace),
) {
    let p = ctx.p;
    let h = ws.h.view().rows(slot * p, p);
    product(
        simd,
        ctx.backend,
        ws.u.view_mut().into_rows(0, p),
        h,
        ctx.q.view(),
        Accum::Replace,
    );
    let mut r0 = 0;
    while r0 < p {
        let nr = (p - r0).min(QP);
        gemm(
            simd,
            ws.sc.view_mut().into_rows(0, nr),
            ws.u.view().rows(r0, nr),
            ws.ht.view(),
            Accum::Replace,
        );
        for i in 0..nr {
            softmax_row(simd, ws.sc.row_mut(i));
        }
        each(r0, nr, ws);
        r0 += nr;
    }
}

/// View `v` of `s`: `G = (1/P) Σ_p F_p` into `ws.gvec`.
#[inline(always)]
pub(super) fn view_forward<S: Simd>(
    simd: S,
    ctx: &Ctx<'_>,
    ws: &mut Workspace,
    s: &Sample,
    v: usize,
) {
    materialize(simd, ctx, ws, s, &s.masks[v], 0, false);
    let p = ctx.p;
    ws.colsum.fill(0.0);
    attention_panels(simd, ctx, ws, 0, |_, nr, ws| {
        for i in 0..nr {
            axpy(simd, &mut ws.colsum, 1.0, ws.sc.row(i));
        }
    });
    let inv_p = 1.0 / p as f32;
    for j in 0..ctx.d {
        ws.gvec[j] = dot(simd, ws.xtt.row(j), &ws.colsum) * inv_p;
    }
}

/// Backward of view `v` of `s` given `dg = ∂L/∂G`: leaves `W = Hᵀ Ds` and `H` in `slot`.
#[inline(always)]
fn view_backward<S: Simd>(
    simd: S,
    ctx: &Ctx<'_>,
    ws: &mut Workspace,
    s: &Sample,
    v: usize,
    dg: &[f32],
    slot: usize,
) {
    materialize(simd, ctx, ws, s, &s.masks[v], slot, false);
    let p = ctx.p;
    let inv_p = 1.0 / p as f32;
    for q in 0..p {
        ws.c[q] = dot(simd, dg, ws.xt.row(q)) * inv_p;
    }
    attention_panels(simd, ctx, ws, slot, |r0, nr, ws| {
        for i in 0..nr {
            softmax_backward_row(simd, ws.sc.row(i), &ws.c, 1.0, ws.ds.row_mut(r0 + i));
        }
    });
    let w = ws.w.view_mut().into_cols(slot * p, p);
    product(
        simd,
        ctx.backend,
        w,
        ws.ht.view(),
        ws.ds.view(),
        Accum::Replace,
    );
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
        let (d, p) = (ctx.d, ctx.p);
        let nv = views.len();
        assert!(
            samples.len() * nv <= ws.slots,
            "chunk too large for the workspace"
        );
        for (i, s) in samples.iter().enumerate() {
            for (k, &v) in views.iter().enumerate() {
                let slot = nv * i + k;
                view_backward(simd, ctx, ws, s, v, &dg[slot * d..(slot + 1) * d], slot);
            }
        }
        let kp = samples.len() * nv * p;
        product(
            simd,
            ctx.backend,
            grad,
            ws.w.view().cols(0, kp),
            ws.h.view().rows(0, kp),
            Accum::Replace,
        );
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
