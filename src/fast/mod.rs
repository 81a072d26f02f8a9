//! The fast engine: fused f32 forward + backward kernels written with pulp, parallel over
//! fixed sample chunks (SPEC §4, §5, §11, §12).
//!
//! **What it computes.** The batch loss and gradient `∇_Q L` of the f64 reference
//! ([`crate::objectives`]), in f32 storage and arithmetic, to a relative error ≤ 1e-4 (SPEC §11;
//! ~1e-7 in the tests). The training loop keeps `Q` in f64; [`FastEngine::set_q`] rounds it into
//! the engine's own f32 copy each step, and the gradient is folded back in f64.
//!
//! - MAE (`mae.rs`). Masked queries carry position only (`h_p = e_p`), so everything that
//!   involves positions alone is shared by the whole batch and formed once per step:
//!   `R = E Q` (the query rows `U_p = R_p`) and `Π = R Eᵀ` (the position-position scores), both
//!   in [`FastEngine::set_q`]. Per sample, with `X_V` the content of the `P − m` visible keys,
//!   per panel of up to [`QP`] masked rows one fused pass in natural key order — scores `Π_p·`
//!   plus `U_p X_Vᵀ` at the visible keys, max-subtracted softmax `A_p·` over all P keys,
//!   `F_p = A_{p,V} X_V`, `r_p = x_p − F_p` (loss `½‖r_p‖²`), `g_p· = −r_p X_Vᵀ` at the visible
//!   keys and 0 at the masked ones, `Ds_p· = A_p· ⊙ (g_p· − ⟨A_p·, g_p·⟩)`, and
//!   the rows `Ds_{p,V} X_V` and `Ds_p·` added into the chunk's accumulators `C` (`P × d`) and
//!   `D` (`P × P`) — with panel-sized scratch only. After the chunks, `C` and `D` are folded in
//!   chunk order and `∇ = Eᵀ (C + D E)` is formed: two products per step, not per sample.
//!   Work: `8m(P − m)d` per sample ([`mae_sample_flops`]) plus `4Pd² + 4P²d` per step
//!   ([`mae_step_flops`]), against the dense `2md² + 8mPd + 2Pd²` per sample of the SPEC §12
//!   cost model ([`mae_flops`]), which the reference engine executes.
//! - CL (`cl.rs`), per view: the query rows `U = H Q = R + X̃ Q` take the step's `R = E Q`
//!   (formed in [`FastEngine::set_q`]) and multiply only the `P − m` visible rows of `X̃` (the
//!   masked ones are zero) by `Q`; the forward keeps only `G = (1/P) X̃ᵀ colsum(A)`; the `n × n`
//!   logits and their softmax are formed once per batch in f64 by [`info_nce`]; the backward
//!   recomputes the attention, forms `Ds_pq = A_pq (c_q − ⟨A_p·, c⟩)` with
//!   `c = (1/P) X̃ ∂L/∂G`, then `W = Hᵀ Ds`, and per chunk `Σ W H = Σ W_{·,V} X̃_V + (Σ W) E`
//!   (the masked rows of `X̃` are zero again). (Executed work per view: `6(P − m)d² + 6P²d`,
//!   i.e. `3Pd² + 6P²d` at γ = 1/2, against the `4Pd² + 8P²d` of [`cl_flops`]; plus `2Pd²`
//!   per chunk of 16 views for `(Σ W) E` and per step for `R`.)
//!
//! Content is materialised per sample into the worker's [`Workspace`]: noise-free rows are
//! `z_{a(p)} v_{k,a(p)}` (the product [`DataModel::write_content`] forms, bit-identical),
//! noisy ones come from `write_content`. The key-side factors (CL `Hᵀ`; MAE `X_V`, `X_Vᵀ`) are
//! then packed once per sample into the layout of [`kernels`]' micro-kernel.
//!
//! **Instruction sets.** The engine runs on one [`Isa`], dispatched once per chunk through its
//! `pulp::Arch`: every kernel is a generic `<S: Simd>` body inside a named `WithSimd` struct,
//! and the softmax's exponential is [`exp::exp_nonpos_f32s`] (the vector `exp` of [`exp`]
//! specialised to the non-positive arguments of a max-subtracted softmax). The fused passes always use our packed
//! micro-kernel ([`kernels::gemm_packed`]); the other products (MAE: `R`, `Π`, `D E`,
//! `Eᵀ (C + D E)`; CL: `R`, `W`, `Σ W H`) come from one of two [`MatmulBackend`]s (CL's
//! `X̃_V Q` is the micro-kernel's too, on `Q` packed once per step):
//! - [`MatmulBackend::Faer`]: faer's `matmul` with `Par::Seq`;
//! - [`MatmulBackend::Pulp`]: our [`kernels::gemm`], on the chosen `Arch` like everything else.
//!
//! faer picks its own SIMD level at run time, whatever we ask for. So the default
//! ([`MatmulBackend::default_for`]) is faer only when the requested level *is* the best level of
//! this machine and build, where faer's choice coincides with ours, and our kernel otherwise. In
//! particular with [`Isa::Scalar`] every part of the step runs pulp's scalar backend: no AVX,
//! no FMA instruction, one f32 per logical vector. (Like any portable code it is compiled for
//! the baseline target, so LLVM may still auto-vectorise parts of it with 128-bit SSE2; Rust
//! offers no way to forbid that from the source.) [`FastEngine::set_backend`] overrides the
//! choice, e.g. to time faer against our kernel.
//!
//! After every faer product the engine runs `vzeroupper` ([`clear_upper`]): faer's assembly
//! micro-kernels return with the upper halves of the YMM registers dirty, which made every later
//! legacy-SSE instruction (libm's `exp` in particular) ~45× slower on the README's AMD machine.
//!
//! **Parallelism and determinism.** Samples are processed in fixed chunks ([`MAE_CHUNK`] for
//! MAE, [`crate::objectives::SAMPLE_CHUNK`] for CL) on rayon's pool; each chunk writes its own
//! partials (MAE: `C`, `D`, loss; CL: `∇`, in f32), and the partials are folded in chunk order
//! (MAE in f32, block of rows by block of rows; CL in f64), so results are bit-identical at any
//! thread count (SPEC §11). The per-step MAE products run in parallel over fixed blocks of
//! [`ROW_BLOCK`] output rows, which does not change their bits either. Workspaces come from a
//! pool filled when the engine is built (one per rayon thread; a new one only if more workers
//! than that show up) and are reused for every step and sample; every f32 buffer is 64-byte
//! aligned, so which worker computed a chunk does not change its bits.
//!
//! **Memory.** Per workspace: `O(Pd)` key-side matrices and their packed copies, `QP × P` and
//! `QP × d` panel scratch, for CL the view's `P × P` `Ds` rows, the chunk's `W` and `H` blocks
//! (`d × cP`, `cP × d`, `c` = 16 views) and `Σ W` (`d × P`). No `P × P` attention matrix of any
//! sample is ever stored. Per engine: for MAE `R`, `Π` and one `C` (`P × d`) and `D` (`P × P`) per chunk of
//! the batch — `O(P²)` like `Q` itself, whatever the batch size per chunk; for CL one `d × d`
//! partial per chunk. At `P = 256`, `d = 322`, `n = 256` the whole `vitssl train` process stays
//! well under 100 MiB (README, "Measured speed").

pub mod exp;
pub mod kernels;
pub mod mat;

mod cl;
mod mae;
mod transpose;

use crate::config::Objective;
use crate::data::{DataModel, Mask, Sample};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::isa::Isa;
use crate::objectives::SAMPLE_CHUNK;
pub use cl::{cl_fast_batch_flops, cl_fast_view_flops, info_nce};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use kernels::GemmScratch;
pub use mae::{mae_sample_flops, mae_step_flops};
use mat::{RowMat, Scratch, View, ViewMut};
use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;
use std::sync::Mutex;

/// Samples per MAE chunk. Larger than the reference's [`SAMPLE_CHUNK`]: each chunk carries
/// `P × d` and `P × P` accumulators, which are zeroed and folded once per chunk. At P = 256 one
/// chunk's pair is 0.6 MB, so the 16 chunks of 16 samples of a batch of 256 streamed 9 MB
/// through memory every step; 8 chunks of 32 halve that (about 4% of a one-thread step on the
/// AVX-512 machine) and still give 8 chunks to share among the threads.
pub const MAE_CHUNK: usize = 32;

/// Query rows per fused pass (a multiple of the micro-tile height [`kernels::MR`]).
pub const QP: usize = 4 * kernels::MR;

/// Rows of the next query panel when `left` rows remain: [`QP`], and for the last panel the
/// rest, except that a rest ending in one or two rows past whole micro-tiles is split so that it
/// ends on two short tiles ([`kernels::MR_SHORT`] rows: 8 = 4 + 4 rather than 6 + 2, 14 =
/// 6 + 4 + 4), which computes two padding rows where a full last tile computes four.
pub fn panel_rows(left: usize) -> usize {
    use kernels::{MR, MR_SHORT};
    if left > QP {
        QP
    } else if left > MR && !left.is_multiple_of(MR) && left % MR <= MR - MR_SHORT {
        left - MR_SHORT
    } else {
        left
    }
}

/// Which code computes the large products (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulBackend {
    /// faer's `matmul` (its own run-time SIMD dispatch), `Par::Seq`.
    Faer,
    /// [`kernels::gemm`] on the engine's ISA.
    Pulp,
}

impl MatmulBackend {
    /// The default for `isa`: faer when `isa` is the best SIMD level here, else our kernel.
    pub fn default_for(isa: Isa) -> Self {
        if isa != Isa::Scalar && isa == Isa::best() {
            MatmulBackend::Faer
        } else {
            MatmulBackend::Pulp
        }
    }
}

/// SPEC §12 cost of one MAE sample: `2md² + 4mPd + 4mPd + 2Pd²` FLOPs.
pub fn mae_flops(p: usize, d: usize, m: usize) -> u64 {
    let (p, d, m) = (p as u64, d as u64, m as u64);
    2 * m * d * d + 8 * m * p * d + 2 * p * d * d
}

/// SPEC §12 cost of one CL view: the MAE cost with `m = P` (forward and backward).
pub fn cl_flops(p: usize, d: usize) -> u64 {
    mae_flops(p, d, p)
}

/// SPEC §12 cost of a CL batch of `n` samples: two views each plus the `n × n` logits (`2n²d`).
pub fn cl_batch_flops(p: usize, d: usize, n: usize) -> u64 {
    2 * n as u64 * cl_flops(p, d) + 2 * (n * n * d) as u64
}

/// What every worker reads: geometry, `E`, `V` (f64, for the noise-free content), the per-step
/// `R = E Q`, for MAE `Π = R Eᵀ`, for CL `Q` packed, and the product backend.
pub(crate) struct Ctx<'a> {
    dm: &'a DataModel,
    p: usize,
    d: usize,
    e: &'a RowMat,
    v64: &'a [Vec<f64>],
    r: &'a RowMat,
    pp: &'a RowMat,
    qp: &'a [f32],
    backend: MatmulBackend,
}

/// One worker's buffers, sized for an engine's geometry and objective.
pub struct Workspace {
    p: usize,
    d: usize,
    rows: usize,
    slots: usize,
    /// CL: `X̃` (`P × d`). MAE: the visible content `X_V`, ascending positions (first `P − m` rows).
    xt: RowMat,
    /// MAE: content rows `x_p` of the masked queries (`m × d`).
    xm: RowMat,
    /// CL: `U = H Q` (`P × d`).
    u: RowMat,
    /// Packed key-side factors ([`kernels::pack_b`]): CL `Hᵀ` (`d × P`) for the scores; MAE
    /// `X_V` (`(P − m) × d`) for the outputs and `X_Vᵀ` (`d × (P − m)`) for the scores and `t`.
    htp: Scratch,
    xtp: Scratch,
    xttp: Scratch,
    /// MAE: a packed left panel, the visible columns of a panel's `A` or `Ds` rows
    /// ([`kernels::pack_a_cols`]).
    ap: Scratch,
    /// Panel scratch: scores → attention (`QP × P`), MAE outputs → residuals → content rows
    /// (`QP × d`), MAE `t` (`QP × P`).
    sc: RowMat,
    f: RowMat,
    t: RowMat,
    /// `Ds` rows: MAE one panel (`QP × P`), CL the whole view (`P × P`).
    ds: RowMat,
    /// CL: column sums of `A`, `c = (1/P) X̃ ∂L/∂G`, and `G`.
    colsum: Vec<f32>,
    c: Vec<f32>,
    gvec: Vec<f32>,
    /// The visible positions `V` of the current sample or view (ascending, first `P − m`
    /// entries); MAE: each position's row in `X_V` or in the masked rows.
    vis: Vec<usize>,
    row_of: Vec<usize>,
    /// CL: the chunk's slots: each view's `W = Hᵀ Ds` (`d × P`) and `H` (`P × d`) in slot
    /// `s` (columns / rows `sP .. (s + 1)P`), then compacted to the visible columns of the `W`s
    /// and visible rows of the `X̃`s in the leading columns / rows; and `Σ W` (`d × P`).
    w: RowMat,
    h: RowMat,
    wsum: RowMat,
    /// MAE single-sample entry points: the content (`P × d`) and position (`P × P`)
    /// accumulators.
    c_acc: RowMat,
    d_acc: RowMat,
    /// Packing buffers of [`kernels::gemm`] (used by the pulp product backend only).
    gemm: GemmScratch,
    /// Gradient of the single-sample entry points (`d × d`).
    grad: Option<RowMat>,
}

impl Workspace {
    fn new(p: usize, d: usize, m: usize, objective: Objective) -> Self {
        let mae = objective == Objective::Mae;
        let rows = if mae { m } else { p };
        let slots = if mae { 0 } else { 2 * SAMPLE_CHUNK };
        let only = |keep: bool, r: usize, c: usize| {
            if keep {
                RowMat::zeros(r, c)
            } else {
                RowMat::zeros(0, c)
            }
        };
        let len = |keep: bool, len: usize| if keep { len } else { 0 };
        Self {
            p,
            d,
            rows,
            slots,
            xt: RowMat::zeros(p, d),
            xm: only(mae, m, d),
            u: only(!mae, p, d),
            htp: Scratch::zeros(len(!mae, kernels::packed_b_len(d, p))),
            xtp: Scratch::zeros(len(mae, kernels::packed_b_len(p, d))),
            xttp: Scratch::zeros(len(mae, kernels::packed_b_len(d, p))),
            ap: Scratch::zeros(len(mae, kernels::packed_a_len(QP, p))),
            sc: RowMat::zeros(QP, p),
            f: only(mae, QP, d),
            t: only(mae, QP, p),
            ds: RowMat::zeros(if mae { QP } else { p }, p),
            colsum: vec![0.0; p],
            c: vec![0.0; p],
            gvec: vec![0.0; d],
            vis: vec![0; p],
            row_of: vec![usize::MAX; p],
            w: RowMat::zeros(d, slots * p),
            h: RowMat::zeros(slots * p, d),
            wsum: only(!mae, d, p),
            c_acc: only(mae, p, d),
            d_acc: only(mae, p, p),
            gemm: GemmScratch::new(),
            grad: Some(RowMat::zeros(d, d)),
        }
    }

    /// The gradient left by [`FastEngine::mae_sample`] or [`FastEngine::cl_view_backward`]
    /// (`d × d`).
    pub fn grad(&self) -> MatRef<'_, f32> {
        self.grad
            .as_ref()
            .expect("gradient buffer present")
            .view()
            .faer()
    }
}

/// Materialises view `mask` of `s` for CL into `ws`: the visible positions (ascending, in
/// `ws.vis`), `X̃`, `H = X̃ + E` (into chunk slot `slot`) and packed `Hᵀ`. Returns the number of
/// visible positions.
///
/// Noise-free content is built row by row as `x_p = z_{a(p)} v_{k,a(p)}` (the same f64 product
/// [`DataModel::write_content`] forms, so the same f32 values); noisy content goes through
/// `write_content`, which owns the noise stream.
#[inline(always)]
fn materialize<S: Simd>(
    simd: S,
    ctx: &Ctx<'_>,
    ws: &mut Workspace,
    s: &Sample,
    mask: &Mask,
    slot: usize,
) -> usize {
    let (p, d) = (ctx.p, ctx.d);
    assert_eq!(mask.is_masked.len(), p, "mask of another geometry");
    let mut nv = 0;
    for q in (0..p).filter(|&q| !mask.is_masked[q]) {
        ws.vis[nv] = q;
        nv += 1;
    }
    if ctx.dm.cfg.noise == 0.0 {
        let area = &ctx.dm.geom.clusters[s.cluster].area;
        let v = &ctx.v64[s.cluster];
        for (q, &a) in area.iter().enumerate() {
            let dst = ws.xt.row_mut(q);
            if mask.is_masked[q] {
                dst.fill(0.0);
                continue;
            }
            let (z, vr) = (s.z[a], &v[a * d..(a + 1) * d]);
            for (o, &x) in dst.iter_mut().zip(vr) {
                *o = (z * x) as f32;
            }
        }
    } else {
        let sx = ws.xt.stride();
        let xt = ws.xt.data_mut();
        let masked = &mask.is_masked;
        ctx.dm.write_content(s, |q, j, v| {
            xt[q * sx + j] = if masked[q] { 0.0 } else { v as f32 };
        });
    }
    for q in 0..p {
        kernels::add_rows(simd, ws.h.row_mut(slot * p + q), ws.xt.row(q), ctx.e.row(q));
    }
    let h = ws.h.view().rows(slot * p, p);
    kernels::pack_b::<S>(h.t(), ws.htp.get(kernels::packed_b_len(d, p)));
    nv
}

/// `dst (=|+=) a·b` on the engine's product backend.
#[inline(always)]
fn product<S: Simd>(
    simd: S,
    backend: MatmulBackend,
    dst: ViewMut<'_>,
    a: View<'_>,
    b: View<'_>,
    accum: Accum,
    scratch: &mut GemmScratch,
) {
    match backend {
        MatmulBackend::Faer => {
            matmul(dst.faer(), accum, a.faer(), b.faer(), 1.0f32, Par::Seq);
            clear_upper();
        }
        MatmulBackend::Pulp => kernels::gemm(simd, dst, a, b, accum, scratch),
    }
}

/// Clears the upper halves of the vector registers (`vzeroupper`) after a faer product.
///
/// faer's f32/f64 micro-kernels are hand-written assembly that returns with the upper halves of
/// the YMM registers dirty, and the compiler, which does not see inside them, inserts no
/// `vzeroupper`. Every legacy-SSE instruction that runs afterwards (libm's `exp`, any code built
/// for the baseline x86-64 target) then pays a state-transition penalty; on the README's AMD
/// machine libm's `exp` became ~20× slower. A no-op where AVX is unavailable.
pub fn clear_upper() {
    #[cfg(target_arch = "x86_64")]
    if let Some(v3) = pulp::x86::V3::try_new() {
        v3.avx._mm256_zeroupper();
    }
}

/// `dst (=|+=) a·b` on `backend`, as a body for `Arch::dispatch`.
struct Product<'a> {
    backend: MatmulBackend,
    dst: ViewMut<'a>,
    a: View<'a>,
    b: View<'a>,
    accum: Accum,
    gemm: &'a mut GemmScratch,
}

impl WithSimd for Product<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        product(
            simd,
            self.backend,
            self.dst,
            self.a,
            self.b,
            self.accum,
            self.gemm,
        );
    }
}

/// [`kernels::pack_b`] of `b` into `dst` on the dispatched ISA.
struct PackB<'a> {
    b: View<'a>,
    dst: &'a mut Scratch,
}

impl WithSimd for PackB<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let len = kernels::packed_b_len(self.b.nrows(), self.b.ncols());
        kernels::pack_b::<S>(self.b, self.dst.get(len));
    }
}

/// How the engine multiplies outside the fused passes: its `Arch` and product backend.
#[derive(Clone, Copy)]
struct Mul {
    arch: Arch,
    backend: MatmulBackend,
}

impl Mul {
    /// `dst (=|+=) a·b`, with the packing buffers `gemm`.
    fn run(self, dst: ViewMut<'_>, a: View<'_>, b: View<'_>, accum: Accum, gemm: &mut GemmScratch) {
        self.arch.dispatch(Product {
            backend: self.backend,
            dst,
            a,
            b,
            accum,
            gemm,
        });
    }
}

/// The engine's workspaces: filled when the engine is built, one per worker, reused by every
/// step.
struct Pool {
    free: Mutex<Vec<Workspace>>,
    p: usize,
    d: usize,
    m: usize,
    objective: Objective,
}

impl Pool {
    fn new(p: usize, d: usize, m: usize, objective: Objective, count: usize) -> Self {
        let free = (0..count)
            .map(|_| Workspace::new(p, d, m, objective))
            .collect();
        Self {
            free: Mutex::new(free),
            p,
            d,
            m,
            objective,
        }
    }

    /// Runs `f` on a workspace from the pool (a new one only when every one is in use, i.e.
    /// when more workers than expected show up), then puts it back.
    fn with<R>(&self, f: impl FnOnce(&mut Workspace) -> R) -> R {
        let taken = self.free.lock().expect("pool lock").pop();
        let mut ws =
            taken.unwrap_or_else(|| Workspace::new(self.p, self.d, self.m, self.objective));
        let out = f(&mut ws);
        self.free.lock().expect("pool lock").push(ws);
        out
    }
}

/// Rows per block of the per-step MAE products and of the fold (a fixed partition, so the
/// result does not depend on the thread count).
pub const ROW_BLOCK: usize = 32;

/// Runs `f(first row, those rows of dst, a workspace)` over the blocks of [`ROW_BLOCK`] rows of
/// `dst`, in parallel.
fn par_row_blocks(
    pool: &Pool,
    dst: &mut RowMat,
    f: impl Fn(usize, ViewMut<'_>, &mut Workspace) + Sync,
) {
    let (nrows, ncols, stride) = (dst.nrows(), dst.ncols(), dst.stride());
    if nrows == 0 {
        return;
    }
    dst.data_mut()
        .par_chunks_mut(ROW_BLOCK * stride)
        .enumerate()
        .for_each(|(b, rows)| {
            let r0 = b * ROW_BLOCK;
            let n = ROW_BLOCK.min(nrows - r0);
            pool.with(|ws| f(r0, ViewMut::new(rows, n, ncols, stride), ws));
        });
}

/// One chunk's partial result.
struct Part {
    /// CL: the chunk's `Σ ∇_Q` (`d × d`).
    grad: RowMat,
    /// MAE: the chunk's content (`P × d`) and position (`P × P`) accumulators.
    c: RowMat,
    dacc: RowMat,
    loss: f64,
}

/// The fused f32 SIMD engine (see the module docs).
pub struct FastEngine<'a> {
    dm: &'a DataModel,
    objective: Objective,
    tau: f64,
    isa: Isa,
    arch: Arch,
    backend: MatmulBackend,
    e: RowMat,
    v64: Vec<Vec<f64>>,
    q: RowMat,
    /// Per step: `R = E Q` (`P × d`); MAE: `Π = R Eᵀ` (`P × P`); CL: `Q` packed for the
    /// micro-kernel ([`kernels::pack_b`]).
    r: RowMat,
    pp: RowMat,
    qp: Scratch,
    /// MAE, per step: the folded accumulators (`C` becomes `C + D E` in place) and `∇` in f32.
    ctot: RowMat,
    dtot: RowMat,
    g32: RowMat,
    pool: Pool,
    parts: Vec<Part>,
    /// CL: `G` of every view (`2n × d`, row `2i + v`), then `∂L/∂G` in the same layout.
    gbuf: Vec<f32>,
    dgbuf: Vec<f32>,
}

impl<'a> FastEngine<'a> {
    /// A fast engine for `objective` (temperature `tau` for CL) on `isa`, with one workspace per
    /// thread of the current rayon pool.
    ///
    /// # Errors
    /// [`Error::Isa`] when this CPU or build cannot run `isa`.
    pub fn new(dm: &'a DataModel, objective: Objective, tau: f64, isa: Isa) -> Result<Self> {
        let arch = isa.arch().ok_or_else(|| Error::Isa {
            requested: isa.name().to_string(),
            available: Isa::available()
                .iter()
                .map(|i| i.name())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        let (p, d) = (dm.p(), dm.d());
        let mut e = RowMat::zeros(p, d);
        for i in 0..p {
            for (j, v) in e.row_mut(i).iter_mut().enumerate() {
                *v = dm.emb.e[(i, j)] as f32;
            }
        }
        let v64 = dm
            .emb
            .v
            .iter()
            .map(|v| {
                (0..v.nrows())
                    .flat_map(|a| (0..d).map(move |j| v[(a, j)]))
                    .collect()
            })
            .collect();
        let mae = objective == Objective::Mae;
        let only = |r: usize, c: usize| RowMat::zeros(if mae { r } else { 0 }, c);
        let engine = Self {
            dm,
            objective,
            tau,
            isa,
            arch,
            backend: MatmulBackend::default_for(isa),
            e,
            v64,
            q: RowMat::zeros(d, d),
            r: RowMat::zeros(p, d),
            pp: only(p, p),
            qp: Scratch::zeros(if mae { 0 } else { kernels::packed_b_len(d, d) }),
            ctot: only(p, d),
            dtot: only(p, p),
            g32: only(d, d),
            pool: Pool::new(p, d, dm.m, objective, rayon::current_num_threads()),
            parts: Vec::new(),
            gbuf: Vec::new(),
            dgbuf: Vec::new(),
        };
        Ok(engine)
    }

    /// The product backend in use.
    pub fn backend(&self) -> MatmulBackend {
        self.backend
    }

    /// Overrides the product backend (e.g. to time faer against our kernel).
    pub fn set_backend(&mut self, backend: MatmulBackend) {
        self.backend = backend;
    }

    /// The instruction set the kernels run on.
    pub fn instruction_set(&self) -> Isa {
        self.isa
    }

    /// A fresh workspace for this engine's geometry and objective.
    pub fn workspace(&self) -> Workspace {
        Workspace::new(self.dm.p(), self.dm.d(), self.dm.m, self.objective)
    }

    /// Converts `Q` (`d × d`, f64) into the engine's f32 copy used by every following call, and
    /// forms the step's `R = E Q` (in parallel over fixed row blocks) and, for MAE, `Π = R Eᵀ`,
    /// for CL `Q` packed for the micro-kernel.
    ///
    /// # Panics
    /// When `q` is not `d × d`.
    #[track_caller]
    pub fn set_q(&mut self, q: MatRef<'_, f64>) {
        let d = self.dm.d();
        assert_eq!((q.nrows(), q.ncols()), (d, d), "Q must be d × d");
        for i in 0..d {
            for (j, v) in self.q.row_mut(i).iter_mut().enumerate() {
                *v = q[(i, j)] as f32;
            }
        }
        self.hoist();
    }

    /// `R = E Q`; MAE: `Π = R Eᵀ`; CL: `Q` packed.
    fn hoist(&mut self) {
        let (mul, pool, e, q) = (self.mul(), &self.pool, &self.e, &self.q);
        par_row_blocks(pool, &mut self.r, |r0, dst, ws| {
            let a = e.view().rows(r0, dst.nrows());
            mul.run(dst, a, q.view(), Accum::Replace, &mut ws.gemm);
        });
        if self.objective == Objective::Cl {
            self.arch.dispatch(PackB {
                b: self.q.view(),
                dst: &mut self.qp,
            });
            return;
        }
        let r = &self.r;
        par_row_blocks(pool, &mut self.pp, |r0, dst, ws| {
            let a = r.view().rows(r0, dst.nrows());
            mul.run(dst, a, e.view().t(), Accum::Replace, &mut ws.gemm);
        });
    }

    fn mul(&self) -> Mul {
        Mul {
            arch: self.arch,
            backend: self.backend,
        }
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            dm: self.dm,
            p: self.dm.p(),
            d: self.dm.d(),
            e: &self.e,
            v64: &self.v64,
            r: &self.r,
            pp: &self.pp,
            qp: self.qp.slice(if self.objective == Objective::Cl {
                kernels::packed_b_len(self.dm.d(), self.dm.d())
            } else {
                0
            }),
            backend: self.backend,
        }
    }

    #[track_caller]
    fn check(&self, ws: &Workspace, objective: Objective) {
        assert_eq!(
            self.objective,
            objective,
            "engine built for {}",
            self.objective.name()
        );
        assert_eq!(
            (ws.p, ws.d),
            (self.dm.p(), self.dm.d()),
            "workspace of another geometry"
        );
    }

    /// One MAE sample's fused forward + backward at the current `Q` ([`Self::set_q`]): returns
    /// `ℓ = ½ Σ_{p∈M} ‖x_p − F_p‖²` and leaves `∇_Q ℓ` in [`Workspace::grad`].
    ///
    /// The gradient of a single sample costs the two per-step products of the batch path on
    /// top of the sample's own work; [`Self::mae_sample_kernel`] is the per-sample part alone.
    ///
    /// # Panics
    /// When the engine is not an MAE engine or `ws` belongs to another engine.
    #[track_caller]
    pub fn mae_sample(&self, ws: &mut Workspace, s: &Sample) -> f64 {
        ws.c_acc.fill_zero();
        ws.d_acc.fill_zero();
        let loss = self.mae_sample_kernel(ws, s);
        let mut grad = ws.grad.take().expect("gradient buffer present");
        let (mul, e) = (self.mul(), &self.e);
        let (c, dacc) = (ws.c_acc.view_mut(), ws.d_acc.view());
        mul.run(c, dacc, e.view(), Accum::Add, &mut ws.gemm);
        let c = ws.c_acc.view();
        mul.run(
            grad.view_mut(),
            e.view().t(),
            c,
            Accum::Replace,
            &mut ws.gemm,
        );
        ws.grad = Some(grad);
        loss
    }

    /// The per-sample part of an MAE step at the current `Q`, as the batch path runs it:
    /// returns `ℓ` and adds the sample's rows into the workspace's content and position
    /// accumulators (see `mae.rs`), without forming `∇_Q` ([`mae_sample_flops`] FLOPs).
    ///
    /// # Panics
    /// When the engine is not an MAE engine or `ws` belongs to another engine.
    #[track_caller]
    pub fn mae_sample_kernel(&self, ws: &mut Workspace, s: &Sample) -> f64 {
        self.check(ws, Objective::Mae);
        let mut c = std::mem::replace(&mut ws.c_acc, RowMat::zeros(0, 0));
        let mut dacc = std::mem::replace(&mut ws.d_acc, RowMat::zeros(0, 0));
        let ctx = self.ctx();
        let loss = self.arch.dispatch(mae::MaeChunk {
            ctx: &ctx,
            ws,
            samples: std::slice::from_ref(s),
            c: &mut c,
            dacc: &mut dacc,
        });
        ws.c_acc = c;
        ws.d_acc = dacc;
        loss
    }

    /// One CL view's fused forward at the current `Q`: returns `G = (1/P) Σ_p F_p` of view `v`.
    ///
    /// # Panics
    /// When the engine is not a CL engine, `ws` belongs to another engine or `v > 1`.
    #[track_caller]
    pub fn cl_view_forward<'w>(&self, ws: &'w mut Workspace, s: &Sample, v: usize) -> &'w [f32] {
        self.check(ws, Objective::Cl);
        assert!(v < 2, "CL has views 0 and 1");
        let ctx = self.ctx();
        self.arch.dispatch(cl::ClViewForward {
            ctx: &ctx,
            ws,
            sample: s,
            view: v,
        });
        &ws.gvec
    }

    /// One CL view's fused backward at the current `Q` given `dg = ∂L/∂G` (length d): leaves
    /// the view's `∇_Q` in [`Workspace::grad`].
    ///
    /// # Panics
    /// When the engine is not a CL engine, `ws` belongs to another engine, `v > 1` or `dg` is
    /// not of length d.
    #[track_caller]
    pub fn cl_view_backward(&self, ws: &mut Workspace, s: &Sample, v: usize, dg: &[f32]) {
        self.check(ws, Objective::Cl);
        assert!(v < 2, "CL has views 0 and 1");
        assert_eq!(dg.len(), self.dm.d(), "dg must have length d");
        let mut grad = ws.grad.take().expect("gradient buffer present");
        let ctx = self.ctx();
        self.arch.dispatch(cl::ClBackwardChunk {
            ctx: &ctx,
            ws,
            samples: std::slice::from_ref(s),
            views: &[v],
            dg,
            grad: grad.view_mut(),
        });
        ws.grad = Some(grad);
    }

    /// Runs `work(chunk index, samples, workspace, partial)` for every chunk in parallel.
    fn for_chunks(
        &mut self,
        batch: &[Sample],
        work: impl Fn(&Ctx<'_>, usize, &[Sample], &mut Workspace, &mut Part) + Sync,
    ) {
        let n = batch.len();
        let (p, d) = (self.dm.p(), self.dm.d());
        let mae = self.objective == Objective::Mae;
        let size = if mae { MAE_CHUNK } else { SAMPLE_CHUNK };
        let chunks = n.div_ceil(size);
        while self.parts.len() < chunks {
            let (g, c, dacc) = if mae { (0, p, p) } else { (d, 0, 0) };
            self.parts.push(Part {
                grad: RowMat::zeros(g, d),
                c: RowMat::zeros(c, d),
                dacc: RowMat::zeros(dacc, p),
                loss: 0.0,
            });
        }
        let mut parts = std::mem::take(&mut self.parts);
        let (ctx, pool) = (self.ctx(), &self.pool);
        parts[..chunks]
            .par_iter_mut()
            .enumerate()
            .for_each(|(c, part)| {
                let lo = c * size;
                let hi = (lo + size).min(n);
                pool.with(|ws| work(&ctx, c, &batch[lo..hi], ws, part));
            });
        self.parts = parts;
    }

    fn mae_batch(&mut self, batch: &[Sample]) -> f64 {
        let arch = self.arch;
        self.for_chunks(batch, |ctx, _, samples, ws, part| {
            part.c.fill_zero();
            part.dacc.fill_zero();
            part.loss = arch.dispatch(mae::MaeChunk {
                ctx,
                ws,
                samples,
                c: &mut part.c,
                dacc: &mut part.dacc,
            });
        });
        let chunks = batch.len().div_ceil(MAE_CHUNK);
        self.mae_gradient(chunks);
        self.parts[..chunks].iter().map(|p| p.loss).sum::<f64>() / batch.len() as f64
    }

    /// Folds the first `chunks` MAE partials in chunk order into `C` and `D`, then forms
    /// `∇ = Eᵀ (C + D E)` (the batch sum, not yet divided by n) in `g32`.
    fn mae_gradient(&mut self, chunks: usize) {
        let (mul, pool, e) = (self.mul(), &self.pool, &self.e);
        let (p, d) = (self.dm.p(), self.dm.d());
        let parts = &self.parts[..chunks];
        let (cs, ds) = (self.ctot.stride(), self.dtot.stride());
        self.ctot
            .data_mut()
            .par_chunks_mut(ROW_BLOCK * cs)
            .zip(self.dtot.data_mut().par_chunks_mut(ROW_BLOCK * ds))
            .enumerate()
            .for_each(|(b, (cb, db))| {
                let r0 = b * ROW_BLOCK;
                let n = ROW_BLOCK.min(p - r0);
                let mut cv = ViewMut::new(cb, n, d, cs);
                let mut dv = ViewMut::new(db, n, p, ds);
                for i in 0..n {
                    fold_row(cv.row_mut(i), parts.iter().map(|pt| pt.c.row(r0 + i)));
                    fold_row(dv.row_mut(i), parts.iter().map(|pt| pt.dacc.row(r0 + i)));
                }
                pool.with(|ws| mul.run(cv, dv.rb(), e.view(), Accum::Add, &mut ws.gemm));
            });
        let ctot = &self.ctot;
        par_row_blocks(pool, &mut self.g32, |r0, dst, ws| {
            let a = e.view().cols(r0, dst.nrows()).t();
            mul.run(dst, a, ctot.view(), Accum::Replace, &mut ws.gemm);
        });
    }

    fn cl_batch(&mut self, batch: &[Sample]) -> f64 {
        let (n, d, arch) = (batch.len(), self.dm.d(), self.arch);
        let mut gbuf = std::mem::take(&mut self.gbuf);
        gbuf.resize(2 * n * d, 0.0);
        {
            let (ctx, pool) = (self.ctx(), &self.pool);
            gbuf.par_chunks_mut(2 * SAMPLE_CHUNK * d)
                .enumerate()
                .for_each(|(c, out)| {
                    let lo = c * SAMPLE_CHUNK;
                    let samples = &batch[lo..(lo + SAMPLE_CHUNK).min(n)];
                    pool.with(|ws| {
                        arch.dispatch(cl::ClForwardChunk {
                            ctx: &ctx,
                            ws,
                            samples,
                            out,
                        })
                    });
                });
        }
        let g1 = Mat::from_fn(n, d, |i, j| gbuf[2 * i * d + j] as f64);
        let g2 = Mat::from_fn(n, d, |i, j| gbuf[(2 * i + 1) * d + j] as f64);
        let (loss, d1, d2) = info_nce(g1.as_ref(), g2.as_ref(), self.tau);
        let mut dgbuf = std::mem::take(&mut self.dgbuf);
        dgbuf.resize(2 * n * d, 0.0);
        for i in 0..n {
            for j in 0..d {
                dgbuf[2 * i * d + j] = d1[(i, j)] as f32;
                dgbuf[(2 * i + 1) * d + j] = d2[(i, j)] as f32;
            }
        }
        self.for_chunks(batch, |ctx, c, samples, ws, part| {
            let lo = 2 * c * SAMPLE_CHUNK * d;
            let dg = &dgbuf[lo..lo + 2 * samples.len() * d];
            arch.dispatch(cl::ClBackwardChunk {
                ctx,
                ws,
                samples,
                views: &[0, 1],
                dg,
                grad: part.grad.view_mut(),
            });
            part.loss = 0.0;
        });
        self.gbuf = gbuf;
        self.dgbuf = dgbuf;
        loss
    }
}

/// `dst ← Σ rows` in the order given.
fn fold_row<'r>(dst: &mut [f32], mut rows: impl Iterator<Item = &'r [f32]>) {
    match rows.next() {
        Some(first) => dst.copy_from_slice(first),
        None => dst.fill(0.0),
    }
    for row in rows {
        for (o, &v) in dst.iter_mut().zip(row) {
            *o += v;
        }
    }
}

impl Engine for FastEngine<'_> {
    fn name(&self) -> &'static str {
        "fast"
    }

    fn isa(&self) -> String {
        self.isa.name().to_string()
    }

    fn loss_grad(
        &mut self,
        q: MatRef<'_, f64>,
        batch: &[Sample],
        mut grad: MatMut<'_, f64>,
    ) -> f64 {
        assert!(!batch.is_empty(), "empty batch");
        self.set_q(q);
        let d = self.dm.d();
        match self.objective {
            Objective::Mae => {
                let loss = self.mae_batch(batch);
                let inv_n = 1.0 / batch.len() as f64;
                for i in 0..d {
                    for (j, &v) in self.g32.row(i).iter().enumerate() {
                        grad[(i, j)] = v as f64 * inv_n;
                    }
                }
                loss
            }
            Objective::Cl => {
                let loss = self.cl_batch(batch);
                // Fold the chunk partials in chunk order (f64): bit-identical at any thread
                // count.
                grad.fill(0.0);
                let chunks = batch.len().div_ceil(SAMPLE_CHUNK);
                for part in &self.parts[..chunks] {
                    for i in 0..d {
                        for (j, &v) in part.grad.row(i).iter().enumerate() {
                            grad[(i, j)] += v as f64;
                        }
                    }
                }
                loss
            }
        }
    }
}

/// Every ISA this machine runs, printing a note for each one it does not (for tests).
#[cfg(test)]
pub(crate) fn test_isas() -> Vec<Isa> {
    for isa in Isa::ALL.into_iter().filter(|i| !i.is_available()) {
        println!("note: ISA {isa} is not available on this machine/build; skipped");
    }
    Isa::available()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunConfig;
    use crate::rng::{Stream, stream};
    use crate::train::Run;
    use pulp::WithSimd;

    struct Materialize<'a, 'c> {
        ctx: &'a Ctx<'c>,
        ws: &'a mut Workspace,
        s: &'a Sample,
        mae: bool,
    }

    impl WithSimd for Materialize<'_, '_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) {
            if self.mae {
                mae::materialize::<S>(self.ctx, self.ws, self.s);
            } else {
                materialize(simd, self.ctx, self.ws, self.s, &self.s.masks[0], 1);
            }
        }
    }

    #[test]
    fn materialised_content_is_the_data_models_content_in_f32() {
        for noise in [0.0, 0.3] {
            let mut cfg = RunConfig::default();
            cfg.data.noise = noise;
            let run = Run::new(cfg).unwrap();
            let (p, d) = (run.dm.p(), run.dm.d());
            let s = run.dm.sample(&mut stream(3, Stream::Train), 1);
            let x = run.dm.content(&s);
            let mask = &s.masks[0];

            let materialised = |objective: Objective| {
                let e = FastEngine::new(&run.dm, objective, 1.0, Isa::Scalar).unwrap();
                let mut ws = e.workspace();
                e.arch.dispatch(Materialize {
                    ctx: &e.ctx(),
                    ws: &mut ws,
                    s: &s,
                    mae: objective == Objective::Mae,
                });
                ws
            };

            let ws = materialised(Objective::Cl);
            for q in 0..p {
                for j in 0..d {
                    let want = x[(q, j)] as f32;
                    let vis = if mask.is_masked[q] { 0.0 } else { want };
                    assert_eq!(
                        ws.xt.row(q)[j].to_bits(),
                        vis.to_bits(),
                        "σ={noise} X̃[{q}, {j}]"
                    );
                    let h = vis + run.dm.emb.e[(q, j)] as f32;
                    assert_eq!(
                        ws.h.row(p + q)[j].to_bits(),
                        h.to_bits(),
                        "σ={noise} H[{q}, {j}]"
                    );
                }
            }

            let ws = materialised(Objective::Mae);
            let visible: Vec<usize> = (0..p).filter(|&q| !mask.is_masked[q]).collect();
            assert_eq!(ws.vis[..visible.len()], visible[..], "visible positions");
            // Row i of `got` is the content of position `at[i]`, bit for bit.
            let same_rows = |got: &RowMat, at: &[usize], what: &str| {
                for (i, &q) in at.iter().enumerate() {
                    for j in 0..d {
                        let want = (x[(q, j)] as f32).to_bits();
                        assert_eq!(got.row(i)[j].to_bits(), want, "σ={noise} {what} row {i}");
                    }
                }
            };
            same_rows(&ws.xt, &visible, "X_V");
            same_rows(&ws.xm, &mask.masked, "masked content");
        }
    }

    #[test]
    fn flop_counts_follow_the_cost_model() {
        assert_eq!(
            mae_flops(256, 322, 128),
            2 * 128 * 322 * 322 + 8 * 128 * 256 * 322 + 2 * 256 * 322 * 322
        );
        assert_eq!(cl_flops(36, 46), mae_flops(36, 46, 36));
        assert_eq!(
            cl_batch_flops(36, 46, 4),
            8 * cl_flops(36, 46) + 2 * 16 * 46
        );
        assert_eq!(mae_sample_flops(256, 322, 128), 8 * 128 * 128 * 322);
        assert_eq!(
            cl_fast_view_flops(256, 322, 128),
            6 * 128 * 322 * 322 + 6 * 256 * 256 * 322
        );
        assert_eq!(
            cl_fast_batch_flops(36, 46, 18, 17),
            34 * cl_fast_view_flops(36, 46, 18) + 2 * 36 * 46 * 46 * 4 + 2 * 17 * 17 * 46
        );
        assert!(cl_fast_view_flops(36, 46, 18) < cl_flops(36, 46));
        assert_eq!(
            mae_step_flops(256, 322),
            4 * 256 * 322 * 322 + 4 * 256 * 256 * 322
        );
        // The hoisted sample is cheaper than the dense count whenever a key is masked.
        assert!(mae_sample_flops(36, 46, 18) < mae_flops(36, 46, 18));
    }
}
