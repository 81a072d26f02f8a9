//! Fused MAE forward + backward of one sample, and of a chunk of samples (SPEC §4–5).
//!
//! Only the `m` masked query rows enter; their tokens are `h_p = e_p`, so `H_M = E_M`.
//! 1. `U = H_M Q` (`m × d`, a product).
//! 2. For every panel of up to [`QP`] masked query rows, one fused pass over the P keys with
//!    row-sized scratch (`QP × P` and `QP × d`, never `m × P × P` or `P × P`):
//!    scores `s_p· = U_p Hᵀ`; max-subtracted softmax `A_p·`; output `F_p = A_p· X̃`;
//!    residual `r_p = x_p − F_p` (loss `½‖r_p‖²`); `t_p· = r_pᵀ X̃ᵀ` (so `g_p· = −t_p·`); and the
//!    softmax backward `Ds_p· = A_p· ⊙ (g_p· − ⟨A_p·, g_p·⟩)`, stored as row p of `Ds` (`m × P`,
//!    the kernel's output).
//! 3. `W = H_Mᵀ Ds` (`d × P`) into the sample's slot of the chunk buffer.
//! 4. Per chunk: `∇_Q Σ_i ℓ_i = Σ_i W_i H_i = [W_1 … W_c]·[H_1; …; H_c]`, one product.
//!
//! Every buffer is f32 and lives in the worker's [`Workspace`]. The three key-side factors are
//! packed once per sample in the layout their pass streams (`Hᵀ` for the scores, `X̃` for the
//! outputs, `X̃ᵀ` for `t`), and each query panel is packed before its product, so every pass
//! reads two contiguous streams (see [`super::kernels`]).

use super::kernels::{
    gemm_packed, pack_a, packed_a_len, packed_b_len, residual_row, softmax_backward_row,
    softmax_row,
};
use super::{Ctx, QP, Workspace, materialize, product};
use crate::data::Sample;
use faer::Accum;
use pulp::{Simd, WithSimd};

/// One sample into chunk slot `slot`: returns `ℓ = ½ Σ_{p∈M} ‖x_p − F_p‖²` and leaves
/// `W = H_Mᵀ Ds` and `H` in the slot.
#[inline(always)]
fn sample<S: Simd>(simd: S, ctx: &Ctx<'_>, ws: &mut Workspace, s: &Sample, slot: usize) -> f64 {
    let mask = &s.masks[0];
    materialize(simd, ctx, ws, s, mask, slot, true);
    let (p, d, m) = (ctx.p, ctx.d, mask.masked.len());

    let u = ws.u.view_mut().into_rows(0, m);
    product(
        simd,
        ctx.backend,
        u,
        ws.hq.view().rows(0, m),
        ctx.q.view(),
        Accum::Replace,
        &mut ws.gemm,
    );

    let htp = ws.htp.slice(packed_b_len(d, p));
    let xtp = ws.xtp.slice(packed_b_len(p, d));
    let xttp = ws.xttp.slice(packed_b_len(d, p));
    let mut loss = 0.0f64;
    let mut r0 = 0;
    while r0 < m {
        let nr = (m - r0).min(QP);
        // Scores s = U Hᵀ.
        let ap = ws.ap.get(packed_a_len(nr, d));
        pack_a(ws.u.view(), r0, nr, ap);
        gemm_packed(
            simd,
            &mut ws.sc.view_mut(),
            0,
            nr,
            d,
            ap,
            htp,
            Accum::Replace,
        );
        for i in 0..nr {
            softmax_row(simd, ws.sc.row_mut(i));
        }
        // Outputs F = A X̃, residuals r = x − F.
        let ap = ws.ap.get(packed_a_len(nr, p));
        pack_a(ws.sc.view(), 0, nr, ap);
        gemm_packed(
            simd,
            &mut ws.f.view_mut(),
            0,
            nr,
            p,
            ap,
            xtp,
            Accum::Replace,
        );
        for i in 0..nr {
            loss += residual_row(simd, ws.xm.row(r0 + i), ws.f.row_mut(i)) as f64;
        }
        // t = r X̃ᵀ; g = −t, so Ds = A ⊙ (g − ⟨A, g⟩) = −A ⊙ (t − ⟨A, t⟩).
        let ap = ws.ap.get(packed_a_len(nr, d));
        pack_a(ws.f.view(), 0, nr, ap);
        gemm_packed(
            simd,
            &mut ws.t.view_mut(),
            0,
            nr,
            d,
            ap,
            xttp,
            Accum::Replace,
        );
        for i in 0..nr {
            softmax_backward_row(simd, ws.sc.row(i), ws.t.row(i), -1.0, ws.ds.row_mut(r0 + i));
        }
        r0 += nr;
    }

    let w = ws.w.view_mut().into_cols(slot * p, p);
    let (hm, ds) = (ws.hq.view().rows(0, m), ws.ds.view().rows(0, m));
    product(
        simd,
        ctx.backend,
        w,
        hm.t(),
        ds,
        Accum::Replace,
        &mut ws.gemm,
    );
    0.5 * loss
}

/// A chunk of MAE samples: `Σ_i ℓ_i`, and `Σ_i ∇_Q ℓ_i` written into `grad` (`d × d`).
pub(super) struct MaeChunk<'a, 'c> {
    pub ctx: &'a Ctx<'c>,
    pub ws: &'a mut Workspace,
    pub samples: &'a [Sample],
    pub grad: super::mat::ViewMut<'a>,
}

impl WithSimd for MaeChunk<'_, '_> {
    type Output = f64;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> f64 {
        let Self {
            ctx,
            ws,
            samples,
            grad,
        } = self;
        assert!(
            samples.len() <= ws.slots,
            "chunk of {} > {} slots",
            samples.len(),
            ws.slots
        );
        let mut loss = 0.0;
        for (slot, s) in samples.iter().enumerate() {
            loss += sample(simd, ctx, ws, s, slot);
        }
        let kp = samples.len() * ctx.p;
        let (w, h) = (ws.w.view().cols(0, kp), ws.h.view().rows(0, kp));
        product(simd, ctx.backend, grad, w, h, Accum::Replace, &mut ws.gemm);
        loss
    }
}
