//! Fused MAE forward + backward of one sample, and of a chunk of samples (SPEC §4–5).
//!
//! Only the `m` masked query rows enter, and their tokens carry position only (`h_p = e_p`).
//! Every term that involves positions alone is therefore the same for every sample of a step,
//! and is computed once per step instead of once per sample (see [`super`]): `R = E Q`
//! (`P × d`; the query row of position p is `U_p = R_p`) and `Π = R Eᵀ` (`P × P`, the
//! position-position scores `e_pᵀ Q e_q`). A masked key contributes to the softmax through its
//! position only, and nothing to the outputs or to `g`, so the content products run over the
//! `P − m` visible keys only.
//!
//! Per sample, `X_V` is the `(P − m) × d` content of the visible keys (ascending positions)
//! and, for every panel of up to [`QP`] masked query rows, one fused pass computes, with
//! panel-sized scratch only (`QP × P` and `QP × d`; never `P × P` per sample):
//! 1. scores `s_p· = Π_p· + U_p X_Vᵀ` on the visible keys, `Π_p·` on the masked ones (the row of
//!    `Π` copied, the content scores of the micro-kernel added at the visible positions);
//! 2. the max-subtracted softmax `A_p·` over all P keys, in natural key order;
//! 3. `F_p = A_{p,V} X_V` (the visible columns of `A` gathered while packing), the residual
//!    `r_p = x_p − F_p` and the loss `½‖r_p‖²`;
//! 4. `t_p· = r_p X_Vᵀ` on the visible keys, zero on the masked ones (so `g_p· = −t_p·`);
//! 5. `Ds_p· = −A_p· ⊙ (t_p· − ⟨A_p·, t_p·⟩)`, added as it is to row p of the chunk's position
//!    accumulator `D` (`P × P`);
//! 6. `Ds_{p,V} X_V`, added by the micro-kernel straight into row p of the chunk's content
//!    accumulator `C` (`P × d`).
//!
//! Keeping the rows in natural key order makes the `Π` row and the `D` row contiguous copies and
//! additions; only the `P − m` visible entries of the content products are scattered or gathered.
//!
//! Since `∇_Q ℓ = Σ_p e_p (Σ_q Ds_pq (x̃_q + e_q))ᵀ = E_Mᵀ (Ds_{·,V} X_V + Ds E)`, the batch
//! gradient is `Eᵀ (C + D E)` with `C`, `D` summed over the batch: two products per step, formed
//! by the engine after the chunks are folded. The per-sample work is `8m(P − m)d` FLOPs, all of
//! it in the packed micro-kernel ([`mae_sample_flops`]), against the dense count
//! `2md² + 8mPd + 2Pd²` of SPEC §12 ([`super::mae_flops`]).

use super::kernels::{
    axpy, gemm_packed, gemm_packed_rows, gemm_rows, pack_a_cols, pack_b, packed_a_len,
    packed_b_len, residual_row, softmax_backward_row, softmax_row,
};
use super::mat::RowMat;
use super::{Ctx, Workspace, panel_rows};
use crate::data::Sample;
use faer::Accum;
use pulp::{Simd, WithSimd};

/// FLOPs of one MAE sample in the fast engine: `8m(P − m)d` (four products over the visible
/// keys). The per-step products are [`mae_step_flops`].
pub fn mae_sample_flops(p: usize, d: usize, m: usize) -> u64 {
    let (p, d, m) = (p as u64, d as u64, m as u64);
    8 * m * (p - m) * d
}

/// FLOPs the fast engine spends once per MAE step, whatever the batch size: `R = E Q`
/// (`2Pd²`), `Π = R Eᵀ` (`2P²d`), `C + D E` (`2P²d`) and `Eᵀ (C + D E)` (`2Pd²`).
pub fn mae_step_flops(p: usize, d: usize) -> u64 {
    let (p, d) = (p as u64, d as u64);
    4 * p * d * d + 4 * p * p * d
}

/// Materialises sample `s` for MAE: the visible positions `V` (ascending), their content `X_V`
/// (compact, in that order), the content `x_p` of the masked queries (in mask order), and
/// `X_V`, `X_Vᵀ` packed for the micro-kernel.
///
/// Noise-free rows are built as `x_p = z_{a(p)} v_{k,a(p)}` (the same f64 product
/// [`crate::data::DataModel::write_content`] forms, so the same f32 values); noisy content goes
/// through `write_content`, which owns the noise stream.
#[inline(always)]
pub(super) fn materialize<S: Simd>(ctx: &Ctx<'_>, ws: &mut Workspace, s: &Sample) {
    let (p, d) = (ctx.p, ctx.d);
    let mask = &s.masks[0];
    assert_eq!(mask.is_masked.len(), p, "mask of another geometry");
    let m = mask.masked.len();
    assert!(m <= ws.rows, "more masked rows than the workspace holds");
    assert!(m < p, "an MAE mask leaves at least one key visible");
    let nv = p - m;
    // `row_of[q]` is q's row in X_V (visible) or in the masked rows.
    let mut j = 0;
    for q in 0..p {
        if !mask.is_masked[q] {
            ws.vis[j] = q;
            ws.row_of[q] = j;
            j += 1;
        }
    }
    for (i, &q) in mask.masked.iter().enumerate() {
        ws.row_of[q] = i;
    }
    if ctx.dm.cfg.noise == 0.0 {
        let area = &ctx.dm.geom.clusters[s.cluster].area;
        let v = &ctx.v64[s.cluster];
        for (q, &a) in area.iter().enumerate() {
            let (z, vr) = (s.z[a], &v[a * d..(a + 1) * d]);
            let dst = if mask.is_masked[q] {
                ws.xm.row_mut(ws.row_of[q])
            } else {
                ws.xt.row_mut(ws.row_of[q])
            };
            for (o, &x) in dst.iter_mut().zip(vr) {
                *o = (z * x) as f32;
            }
        }
    } else {
        let (sx, sxm) = (ws.xt.stride(), ws.xm.stride());
        let xv = ws.xt.data_mut();
        let xm = ws.xm.data_mut();
        let row_of = &ws.row_of;
        let masked = &mask.is_masked;
        ctx.dm.write_content(s, |q, j, v| {
            if masked[q] {
                xm[row_of[q] * sxm + j] = v as f32;
            } else {
                xv[row_of[q] * sx + j] = v as f32;
            }
        });
    }
    let xv = ws.xt.view().rows(0, nv);
    pack_b::<S>(xv, ws.xtp.get(packed_b_len(nv, d)));
    pack_b::<S>(xv.t(), ws.xttp.get(packed_b_len(d, nv)));
}

/// One sample: returns `ℓ = ½ Σ_{p∈M} ‖x_p − F_p‖²` and adds its rows into the content
/// accumulator `c` (`P × d`) and the position accumulator `dacc` (`P × P`).
#[inline(always)]
fn sample<S: Simd>(
    simd: S,
    ctx: &Ctx<'_>,
    ws: &mut Workspace,
    s: &Sample,
    c: &mut RowMat,
    dacc: &mut RowMat,
) -> f64 {
    materialize::<S>(ctx, ws, s);
    let masked = &s.masks[0].masked;
    let (p, d, m) = (ctx.p, ctx.d, masked.len());
    let nv = p - m;
    let xvp = ws.xtp.slice(packed_b_len(nv, d));
    let xvtp = ws.xttp.slice(packed_b_len(d, nv));
    let vis = &ws.vis[..nv];
    let mut loss = 0.0f64;
    let mut r0 = 0;
    while r0 < m {
        let nr = panel_rows(m - r0);
        let rows = &masked[r0..r0 + nr];
        // Content scores U X_Vᵀ (compact, in `ds`), added at the visible keys of the rows of Π.
        let mut cs = ws.ds.view_mut().into_cols(0, nv);
        let r = ctx.r;
        gemm_rows(
            simd,
            &mut cs,
            |i| r.row(rows[i]),
            nr,
            d,
            xvtp,
            Accum::Replace,
        );
        for (i, &qp) in rows.iter().enumerate() {
            let sc = ws.sc.row_mut(i);
            sc.copy_from_slice(ctx.pp.row(qp));
            for (&k, &v) in vis.iter().zip(ws.ds.row(i)) {
                sc[k] += v;
            }
            softmax_row(simd, sc);
        }
        // Outputs F = A_V X_V, residuals r = x − F.
        let ap = ws.ap.get(packed_a_len(nr, nv));
        pack_a_cols(ws.sc.view(), nr, vis, ap);
        gemm_packed(
            simd,
            &mut ws.f.view_mut(),
            0,
            nr,
            nv,
            ap,
            xvp,
            Accum::Replace,
        );
        for i in 0..nr {
            loss += residual_row(simd, ws.xm.row(r0 + i), ws.f.row_mut(i)) as f64;
        }
        // t = r X_Vᵀ on the visible keys (compact, in `ds`), zero on the masked ones; g = −t,
        // so Ds = A ⊙ (g − ⟨A, g⟩) = −A ⊙ (t − ⟨A, t⟩). Ds rows go into D as they are.
        let mut tc = ws.ds.view_mut().into_cols(0, nv);
        let f = &ws.f;
        gemm_rows(simd, &mut tc, |i| f.row(i), nr, d, xvtp, Accum::Replace);
        for (i, &qp) in rows.iter().enumerate() {
            let t = ws.t.row_mut(i);
            t.fill(0.0);
            for (&k, &v) in vis.iter().zip(ws.ds.row(i)) {
                t[k] = v;
            }
            softmax_backward_row(simd, ws.sc.row(i), ws.t.row(i), -1.0, ws.ds.row_mut(i));
            axpy(simd, dacc.row_mut(qp), 1.0, ws.ds.row(i));
        }
        // Content rows Ds_V X_V, added straight into the rows of C.
        let ap = ws.ap.get(packed_a_len(nr, nv));
        pack_a_cols(ws.ds.view(), nr, vis, ap);
        gemm_packed_rows(simd, &mut c.view_mut(), rows, nv, ap, xvp, Accum::Add);
        r0 += nr;
    }
    0.5 * loss
}

/// A chunk of MAE samples: returns `Σ_i ℓ_i` and adds every sample's rows into `c` (`P × d`)
/// and `dacc` (`P × P`), which the caller has zeroed.
pub(super) struct MaeChunk<'a, 'c> {
    pub ctx: &'a Ctx<'c>,
    pub ws: &'a mut Workspace,
    pub samples: &'a [Sample],
    pub c: &'a mut RowMat,
    pub dacc: &'a mut RowMat,
}

impl WithSimd for MaeChunk<'_, '_> {
    type Output = f64;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> f64 {
        let Self {
            ctx,
            ws,
            samples,
            c,
            dacc,
        } = self;
        // A loop, not `map(..).sum()`: a closure body would not inherit the SIMD target
        // features, and every intrinsic in it would become a call.
        let mut loss = 0.0;
        for s in samples {
            loss += sample(simd, ctx, ws, s, c, dacc);
        }
        loss
    }
}
