//! The fast engine's building blocks, generic over pulp's [`Simd`]: a packed, register-blocked
//! product kernel and the row operations of the fused passes (softmax, residual, softmax
//! backward).
//!
//! **Product.** `C (=|+=) A·B`. Both operands are first *packed*: `A` into micro-panels of
//! [`MR`] rows stored k-major (`a[k·MR + r]`, rows past the end zero), `B` into column blocks of
//! `nb` = [`nvec`] vectors stored k-major (`b[k·nb + c]`, columns past the end zero). The
//! micro-kernel then walks two contiguous streams: per `k` it loads the block's vectors of `B`,
//! broadcasts `MR` values of `A` and issues `MR · nvec` independent fused multiply-adds into an
//! `MR × nvec` tile of vector accumulators. On AVX2 that is `6 × 2` vectors (6 × 16 floats: 12
//! accumulators, 2 loads and a broadcast in 15 of the 16 registers); on AVX-512, whose 32
//! registers hold twice that, `6 × 4` vectors (6 × 64 floats: 24 accumulators), which needs 10
//! loads per 24 FMAs instead of 8 per 12 and measured 84–91% of the FMA peak at the MAE panel
//! shapes where `6 × 2` measured 80–85%. Column blocks are the outer loop and the micro-panels
//! of a row panel the inner one, so each `k × nb` block of `B` is read from memory once per panel
//! and then from cache. The ragged last rows and columns are stored with `partial_store`; a last
//! micro-panel with at most [`MR_SHORT`] valid rows runs a 4-row tile (still enough independent
//! accumulators to cover the FMA latency), which costs about 2/3 of a full one, and a ragged last
//! column block runs only the vectors that hold valid columns (d = 322 on AVX-512 is 5 full
//! blocks and 2 columns: the last block runs one vector).
//!
//! In the fused passes the key-side operands (`Hᵀ`, `X̃`, `X̃ᵀ`) are packed once per sample
//! and reused by every query panel. The query-side left factors are not packed: [`gemm_rows`]
//! broadcasts from `MR` rows read in place (six sequential streams, as cheap for the core as
//! one packed stream, and no packing pass), and a left factor whose inner index is a subset of
//! its columns is gathered while packing ([`pack_a_cols`]). Products can also land in scattered
//! rows of `C` ([`gemm_packed_rows`]). [`gemm`] packs both operands itself and computes every
//! other product when the engine does not use faer (see [`super`]).
//!
//! **Rows.** Reductions keep four vector accumulators (their latency, not the loads, bounds
//! them); tails are loaded with `partial_load` and masked where a padding lane would change the
//! result (a max, a sum of exponentials).

use super::exp::exp_nonpos_f32s;
use super::mat::{Scratch, View, ViewMut};
use faer::Accum;
use pulp::{Simd, WithSimd};

/// Rows of the micro-tile.
pub const MR: usize = 6;

/// The most vectors per column block of any ISA.
pub const NV_MAX: usize = 4;

/// The widest column block of any ISA (`4 × 16` lanes), for sizing packed buffers.
pub const NB_MAX: usize = NV_MAX * 16;

/// Vectors per packed column block on `S`: four with 16-lane vectors (AVX-512, whose 32
/// registers hold a `6 × 4` tile of accumulators), two otherwise (a `6 × 2` tile in the 16
/// registers of AVX2).
#[inline(always)]
pub fn nvec<S: Simd>() -> usize {
    if S::F32_LANES == 16 { 4 } else { 2 }
}

/// Columns of a packed `B` block on `S`: [`nvec`] vectors.
#[inline(always)]
pub fn nb<S: Simd>() -> usize {
    nvec::<S>() * S::F32_LANES
}

/// Floats needed to pack a `k × n` right factor on any ISA.
pub fn packed_b_len(k: usize, n: usize) -> usize {
    k * n.next_multiple_of(NB_MAX)
}

/// Floats needed to pack `rows × k` of a left factor.
pub fn packed_a_len(rows: usize, k: usize) -> usize {
    rows.next_multiple_of(MR) * k
}

/// Packs `b` (`k × n`) into column blocks of [`nb`] columns: block `jb` holds
/// `b[kk, jb·nb + c]` at `jb·k·nb + kk·nb + c`, zero past column n.
///
/// # Panics
/// When `dst` is shorter than `k · ⌈n/nb⌉ · nb`.
#[inline(always)]
#[track_caller]
pub fn pack_b<S: Simd>(b: View<'_>, dst: &mut [f32]) {
    let (k, n, nb) = (b.nrows(), b.ncols(), nb::<S>());
    for (jb, blk) in dst[..k * n.div_ceil(nb) * nb]
        .chunks_exact_mut(k * nb)
        .enumerate()
    {
        let j0 = jb * nb;
        let w = nb.min(n - j0);
        if b.col_stride() == 1 {
            for (kk, out) in blk.chunks_exact_mut(nb).enumerate() {
                let row = &b.row(kk)[j0..j0 + w];
                if w == nb {
                    // Vector moves, not a `memcpy` call.
                    let (o, _) = S::as_mut_simd_f32s(out);
                    let (v, _) = S::as_simd_f32s(row);
                    o[0] = v[0];
                    o[1] = v[1];
                    if nvec::<S>() == 4 {
                        o[2] = v[2];
                        o[3] = v[3];
                    }
                } else {
                    out[..w].copy_from_slice(row);
                    out[w..].fill(0.0);
                }
            }
        } else if b.row_stride() == 1 {
            // Column-major source (a transposed row-major matrix): column j0 + c is a contiguous
            // run of k floats. Past the tiles of `transpose`, eight columns per sweep, so each
            // packed row is written in eight-float pieces rather than float by float.
            let (data, cs) = (b.data(), b.col_stride());
            let col = |c: usize| &data[(j0 + c) * cs..(j0 + c) * cs + k];
            // Whole lane × lane tiles transposed in registers on x86, the rest here.
            let mut c = super::transpose::pack_cols::<S>(&data[j0 * cs..], cs, k, w, nb, blk);
            while c + 8 <= w {
                let src: [&[f32]; 8] = core::array::from_fn(|i| col(c + i));
                for (kk, out) in blk.chunks_exact_mut(nb).enumerate() {
                    let out: &mut [f32; 8] = (&mut out[c..c + 8]).try_into().expect("8 floats");
                    for (o, s) in out.iter_mut().zip(&src) {
                        *o = s[kk];
                    }
                }
                c += 8;
            }
            for c in c..w {
                for (out, &v) in blk.chunks_exact_mut(nb).zip(col(c)) {
                    out[c] = v;
                }
            }
            if w < nb {
                for out in blk.chunks_exact_mut(nb) {
                    out[w..].fill(0.0);
                }
            }
        } else {
            for (kk, out) in blk.chunks_exact_mut(nb).enumerate() {
                for (c, o) in out.iter_mut().enumerate() {
                    *o = if c < w { b.at(kk, j0 + c) } else { 0.0 };
                }
            }
        }
    }
}

/// Packs rows `r0 .. r0 + rows` of `a` (`· × k`) into `⌈rows/MR⌉` micro-panels: panel `t` holds
/// `a[r0 + t·MR + r, kk]` at `t·k·MR + kk·MR + r`, zero past the last row.
///
/// # Panics
/// When `dst` is shorter than [`packed_a_len`]`(rows, k)`.
#[inline(always)]
#[track_caller]
pub fn pack_a(a: View<'_>, r0: usize, rows: usize, dst: &mut [f32]) {
    let k = a.ncols();
    for (t, panel) in dst[..packed_a_len(rows, k)]
        .chunks_exact_mut(k * MR)
        .enumerate()
    {
        let valid = MR.min(rows - t * MR);
        if a.row_stride() == 1 && a.col_stride() != 1 {
            // Column-major source: the MR values of one k are contiguous.
            let (data, cs, i0) = (a.data(), a.col_stride(), r0 + t * MR);
            for (kk, col) in panel.chunks_exact_mut(MR).enumerate() {
                col[..valid].copy_from_slice(&data[kk * cs + i0..kk * cs + i0 + valid]);
                col[valid..].fill(0.0);
            }
            continue;
        }
        for r in 0..MR {
            if r >= valid {
                for col in panel.chunks_exact_mut(MR) {
                    col[r] = 0.0;
                }
            } else if a.col_stride() == 1 {
                for (col, &v) in panel.chunks_exact_mut(MR).zip(a.row(r0 + t * MR + r)) {
                    col[r] = v;
                }
            } else {
                for (kk, col) in panel.chunks_exact_mut(MR).enumerate() {
                    col[r] = a.at(r0 + t * MR + r, kk);
                }
            }
        }
    }
}

/// Packs the columns `cols` of rows `0 .. rows` of the row-major `a` as [`pack_a`] packs
/// `rows × cols.len()`: panel `t` holds `a[t·MR + r, cols[kk]]` at `t·k·MR + kk·MR + r` with
/// `k = cols.len()`, zero past the last row. A gather, for left factors whose inner index runs
/// over a subset of `a`'s columns.
///
/// # Panics
/// When `a` is not row-major, a column index is out of range or `dst` is shorter than
/// [`packed_a_len`]`(rows, cols.len())`.
#[inline(always)]
#[track_caller]
pub fn pack_a_cols(a: View<'_>, rows: usize, cols: &[usize], dst: &mut [f32]) {
    assert_eq!(a.col_stride(), 1, "pack_a_cols reads row-major rows");
    let k = cols.len();
    for (t, panel) in dst[..packed_a_len(rows, k)]
        .chunks_exact_mut(k * MR)
        .enumerate()
    {
        let valid = MR.min(rows - t * MR);
        if valid == MR {
            let row = |r: usize| a.row(t * MR + r);
            let src: [&[f32]; MR] = [row(0), row(1), row(2), row(3), row(4), row(5)];
            for (out, &c) in panel.chunks_exact_mut(MR).zip(cols) {
                for (o, row) in out.iter_mut().zip(&src) {
                    *o = row[c];
                }
            }
        } else {
            for (out, &c) in panel.chunks_exact_mut(MR).zip(cols) {
                for (r, o) in out.iter_mut().enumerate() {
                    *o = if r < valid { a.row(t * MR + r)[c] } else { 0.0 };
                }
            }
        }
    }
}

/// Rows of the short micro-tile, used for a last micro-panel with at most this many valid rows:
/// it costs 4/6 of a full tile where a full tile would compute padding rows.
pub const MR_SHORT: usize = 4;

/// A micro-tile of accumulators: `MR` rows of up to [`NV_MAX`] vectors.
type Tile<S> = [[<S as Simd>::f32s; NV_MAX]; MR];

/// Where the micro-kernel reads the `MR` rows of its left factor: a packed micro-panel, or
/// rows read in place.
trait Left: Copy {
    /// The `R × NV` vector tile `Σ_k a[k, :] ⊗ b[k, :]` of the first `R` rows and the first `NV`
    /// vectors of one packed column block of `NB` vectors; every other accumulator is zero.
    fn tile<S: Simd, const R: usize, const NV: usize, const NB: usize>(
        self,
        simd: S,
        b: &[f32],
    ) -> Tile<S>;
}

/// A packed micro-panel ([`pack_a`]): `MR` rows interleaved, `a[k·MR + r]`.
#[derive(Clone, Copy)]
struct Packed<'a>(&'a [f32]);

impl Left for Packed<'_> {
    #[inline(always)]
    fn tile<S: Simd, const R: usize, const NV: usize, const NB: usize>(
        self,
        simd: S,
        b: &[f32],
    ) -> Tile<S> {
        let (ap, _) = pulp::as_arrays::<MR, _>(self.0);
        let (bv, _) = S::as_simd_f32s(b);
        let (bp, _) = pulp::as_arrays::<NB, _>(bv);
        // Exactly `R × NV` accumulators in the loop: LLVM keeps an array of this size in
        // registers, but spills a larger one padded with unused zeros.
        let mut acc = [[simd.splat_f32s(0.0); NV]; R];
        for (ak, bk) in ap.iter().zip(bp) {
            rank1(simd, &mut acc, ak, bk);
        }
        widen(simd, acc)
    }
}

/// One `k` of the micro-kernel: `acc[r][v] += a[r] · b[v]` for `r < R`, `v < NV`.
#[inline(always)]
fn rank1<S: Simd, const R: usize, const NV: usize>(
    simd: S,
    acc: &mut [[S::f32s; NV]; R],
    a: &[f32],
    b: &[S::f32s],
) {
    for (r, row) in acc.iter_mut().enumerate() {
        let x = simd.splat_f32s(a[r]);
        for (v, acc) in row.iter_mut().enumerate() {
            *acc = simd.mul_add_e_f32s(x, b[v], *acc);
        }
    }
}

/// A `R × NV` tile of accumulators as a [`Tile`], zero elsewhere.
#[inline(always)]
fn widen<S: Simd, const R: usize, const NV: usize>(simd: S, acc: [[S::f32s; NV]; R]) -> Tile<S> {
    let mut out = [[simd.splat_f32s(0.0); NV_MAX]; MR];
    for (o, a) in out.iter_mut().zip(&acc) {
        o[..NV].copy_from_slice(a);
    }
    out
}

/// `MR` rows read in place, each exactly `k` long.
#[derive(Clone, Copy)]
struct Rows<'a>([&'a [f32]; MR]);

impl Left for Rows<'_> {
    #[inline(always)]
    fn tile<S: Simd, const R: usize, const NV: usize, const NB: usize>(
        self,
        simd: S,
        b: &[f32],
    ) -> Tile<S> {
        let (bv, _) = S::as_simd_f32s(b);
        let (bp, _) = pulp::as_arrays::<NB, _>(bv);
        let [a0, a1, a2, a3, a4, a5] = self.0;
        let mut acc = [[simd.splat_f32s(0.0); NV]; R];
        if R == MR {
            for ((((((x0, x1), x2), x3), x4), x5), bk) in
                a0.iter().zip(a1).zip(a2).zip(a3).zip(a4).zip(a5).zip(bp)
            {
                rank1(simd, &mut acc, &[*x0, *x1, *x2, *x3, *x4, *x5], bk);
            }
        } else {
            assert_eq!(R, MR_SHORT, "a full or a short tile");
            for ((((x0, x1), x2), x3), bk) in a0.iter().zip(a1).zip(a2).zip(a3).zip(bp) {
                rank1(simd, &mut acc, &[*x0, *x1, *x2, *x3], bk);
            }
        }
        widen(simd, acc)
    }
}

/// The micro-kernel for a tile with `rows` valid rows and `w` valid columns: the short tile for
/// at most [`MR_SHORT`] rows, and only the `⌈w / lanes⌉` vectors that hold valid columns (a
/// ragged last column block: d = 322 is 5 full blocks and 2 columns on AVX-512).
#[inline(always)]
fn tile_for<S: Simd, L: Left>(simd: S, left: L, rows: usize, w: usize, b: &[f32]) -> Tile<S> {
    let short = rows <= MR_SHORT;
    let nv = w.div_ceil(S::F32_LANES);
    if nvec::<S>() == 4 {
        match (short, nv) {
            (true, 1) => left.tile::<S, MR_SHORT, 1, 4>(simd, b),
            (true, 2) => left.tile::<S, MR_SHORT, 2, 4>(simd, b),
            (true, 3) => left.tile::<S, MR_SHORT, 3, 4>(simd, b),
            (true, _) => left.tile::<S, MR_SHORT, 4, 4>(simd, b),
            (false, 1) => left.tile::<S, MR, 1, 4>(simd, b),
            (false, 2) => left.tile::<S, MR, 2, 4>(simd, b),
            (false, 3) => left.tile::<S, MR, 3, 4>(simd, b),
            (false, _) => left.tile::<S, MR, 4, 4>(simd, b),
        }
    } else {
        match (short, nv) {
            (true, 1) => left.tile::<S, MR_SHORT, 1, 2>(simd, b),
            (true, _) => left.tile::<S, MR_SHORT, 2, 2>(simd, b),
            (false, 1) => left.tile::<S, MR, 1, 2>(simd, b),
            (false, _) => left.tile::<S, MR, 2, 2>(simd, b),
        }
    }
}

/// Writes (or adds) the first `rows × w` entries of a tile at columns `j0..` of the rows
/// `dst_row(0), dst_row(1), …` of `c`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn store_tile<S: Simd>(
    simd: S,
    acc: Tile<S>,
    c: &mut ViewMut<'_>,
    dst_row: impl Fn(usize) -> usize,
    rows: usize,
    j0: usize,
    w: usize,
    accum: Accum,
) {
    let (l, nv) = (S::F32_LANES, nvec::<S>());
    for (r, tile_row) in acc.iter().enumerate().take(rows) {
        let row = &mut c.row_mut(dst_row(r))[j0..j0 + w];
        if w == nv * l {
            let (out, _) = S::as_mut_simd_f32s(row);
            for (o, &v) in out.iter_mut().zip(&tile_row[..nv]) {
                *o = if accum == Accum::Add {
                    simd.add_f32s(*o, v)
                } else {
                    v
                };
            }
        } else {
            for (part, &v) in row.chunks_mut(l).zip(&tile_row[..nv]) {
                let v = if accum == Accum::Add {
                    simd.add_f32s(v, simd.partial_load_f32s(part))
                } else {
                    v
                };
                simd.partial_store_f32s(part, v);
            }
        }
    }
}

/// `C[r0 .. r0 + rows, :] (=|+=) A_panel · B` from a packed left panel ([`pack_a`] of those
/// rows, inner dimension `k`) and a packed right factor ([`pack_b`] of `k × C.ncols()`).
#[inline(always)]
#[track_caller]
#[allow(clippy::too_many_arguments)]
pub fn gemm_packed<S: Simd>(
    simd: S,
    c: &mut ViewMut<'_>,
    r0: usize,
    rows: usize,
    k: usize,
    apack: &[f32],
    bpack: &[f32],
    accum: Accum,
) {
    gemm_tiles(simd, c, |i| r0 + i, rows, k, apack, bpack, accum);
}

/// [`gemm_packed`] into scattered rows: row `i` of the product goes to (or is added to) row
/// `dst_rows[i]` of `C`.
///
/// # Panics
/// When a row index is out of range.
#[inline(always)]
#[track_caller]
#[allow(clippy::too_many_arguments)]
pub fn gemm_packed_rows<S: Simd>(
    simd: S,
    c: &mut ViewMut<'_>,
    dst_rows: &[usize],
    k: usize,
    apack: &[f32],
    bpack: &[f32],
    accum: Accum,
) {
    gemm_tiles(
        simd,
        c,
        |i| dst_rows[i],
        dst_rows.len(),
        k,
        apack,
        bpack,
        accum,
    );
}

/// The tile loops of [`gemm_packed`]: product row `i` is row `dst_row(i)` of `c`.
#[inline(always)]
#[track_caller]
#[allow(clippy::too_many_arguments)]
fn gemm_tiles<S: Simd>(
    simd: S,
    c: &mut ViewMut<'_>,
    dst_row: impl Fn(usize) -> usize + Copy,
    rows: usize,
    k: usize,
    apack: &[f32],
    bpack: &[f32],
    accum: Accum,
) {
    let (n, nb) = (c.ncols(), nb::<S>());
    let tiles = rows.div_ceil(MR);
    let apack = &apack[..tiles * k * MR];
    let bpack = &bpack[..n.div_ceil(nb) * k * nb];
    if k == 0 {
        // An empty inner dimension: the kernel's zero tile.
        for jb in 0..n.div_ceil(nb) {
            for t in 0..tiles {
                let acc = [[simd.splat_f32s(0.0); NV_MAX]; MR];
                store_tile(
                    simd,
                    acc,
                    c,
                    |r| dst_row(t * MR + r),
                    MR.min(rows - t * MR),
                    jb * nb,
                    nb.min(n - jb * nb),
                    accum,
                );
            }
        }
        return;
    }
    for (jb, b) in bpack.chunks_exact(k * nb).enumerate() {
        let w = nb.min(n - jb * nb);
        for (t, a) in apack.chunks_exact(k * MR).enumerate() {
            let valid = MR.min(rows - t * MR);
            let acc = tile_for(simd, Packed(a), valid, w, b);
            store_tile(
                simd,
                acc,
                c,
                |r| dst_row(t * MR + r),
                valid,
                jb * nb,
                w,
                accum,
            );
        }
    }
}

/// `C[0 .. rows, :] (=|+=) A · B` with the left factor read in place: row `i` of `A` is
/// `a_row(i)` (at least `k` floats; only the first `k` are read), `B` packed ([`pack_b`] of
/// `k × C.ncols()`). For left factors that are used once per column block sweep and would
/// cost as much to pack as to read.
///
/// # Panics
/// When a row is shorter than `k` or `bpack` is too short.
#[inline(always)]
#[track_caller]
#[allow(clippy::too_many_arguments)]
pub fn gemm_rows<'a, S: Simd>(
    simd: S,
    c: &mut ViewMut<'_>,
    a_row: impl Fn(usize) -> &'a [f32] + Copy,
    rows: usize,
    k: usize,
    bpack: &[f32],
    accum: Accum,
) {
    gemm_rows_to(simd, c, a_row, |i| i, rows, k, bpack, accum);
}

/// [`gemm_rows`] into scattered rows: row `i` of the product goes to (or is added to) row
/// `dst_row(i)` of `C`.
///
/// # Panics
/// When a row is shorter than `k`, a row index is out of range or `bpack` is too short.
#[inline(always)]
#[track_caller]
#[allow(clippy::too_many_arguments)]
pub fn gemm_rows_to<'a, S: Simd>(
    simd: S,
    c: &mut ViewMut<'_>,
    a_row: impl Fn(usize) -> &'a [f32] + Copy,
    dst_row: impl Fn(usize) -> usize + Copy,
    rows: usize,
    k: usize,
    bpack: &[f32],
    accum: Accum,
) {
    let (n, nb) = (c.ncols(), nb::<S>());
    if rows == 0 {
        return;
    }
    for (jb, b) in bpack[..n.div_ceil(nb) * k * nb]
        .chunks_exact(k * nb)
        .enumerate()
    {
        let w = nb.min(n - jb * nb);
        let mut r0 = 0;
        while r0 < rows {
            // Rows past the end repeat the last one; they are computed, never stored.
            let row = |r: usize| &a_row((r0 + r).min(rows - 1))[..k];
            let src = Rows([row(0), row(1), row(2), row(3), row(4), row(5)]);
            let valid = MR.min(rows - r0);
            let acc = tile_for(simd, src, valid, w, b);
            store_tile(simd, acc, c, |r| dst_row(r0 + r), valid, jb * nb, w, accum);
            r0 += MR;
        }
    }
}

/// Rows per packed left panel in [`gemm`].
const GEMM_PANEL: usize = 4 * MR;

/// `C (=|+=) A·B` for strided `A`, `B` and row-major `C`, packing both operands into `scratch`.
///
/// # Panics
/// When the shapes do not agree.
#[inline(always)]
#[track_caller]
pub fn gemm<S: Simd>(
    simd: S,
    mut c: ViewMut<'_>,
    a: View<'_>,
    b: View<'_>,
    accum: Accum,
    scratch: &mut GemmScratch,
) {
    assert_eq!(a.ncols(), b.nrows(), "inner dimensions");
    assert_eq!(
        (c.nrows(), c.ncols()),
        (a.nrows(), b.ncols()),
        "output shape"
    );
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    let bp = scratch.b.get(packed_b_len(k, n));
    pack_b::<S>(b, bp);
    let ap = scratch.a.get(packed_a_len(GEMM_PANEL, k));
    let bp = scratch.b.slice(packed_b_len(k, n));
    let mut r0 = 0;
    while r0 < m {
        let rows = GEMM_PANEL.min(m - r0);
        pack_a(a, r0, rows, ap);
        gemm_packed(simd, &mut c, r0, rows, k, ap, bp, accum);
        r0 += rows;
    }
}

/// Packing buffers of [`gemm`].
#[derive(Debug)]
pub struct GemmScratch {
    a: Scratch,
    b: Scratch,
}

impl GemmScratch {
    /// Empty buffers (they grow on first use and are then reused).
    pub fn new() -> Self {
        Self {
            a: Scratch::zeros(0),
            b: Scratch::zeros(0),
        }
    }
}

impl Default for GemmScratch {
    fn default() -> Self {
        Self::new()
    }
}

/// [`gemm`] as a dispatchable operation.
pub struct Gemm<'a> {
    /// Destination `C`.
    pub c: ViewMut<'a>,
    /// Left factor `A`.
    pub a: View<'a>,
    /// Right factor `B`.
    pub b: View<'a>,
    /// Overwrite or accumulate.
    pub accum: Accum,
    /// Packing buffers.
    pub scratch: &'a mut GemmScratch,
}

impl WithSimd for Gemm<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> Self::Output {
        gemm(simd, self.c, self.a, self.b, self.accum, self.scratch);
    }
}

/// The lanes of a `len`-element tail that hold data.
#[inline(always)]
fn tail_mask<S: Simd>(simd: S, len: usize) -> S::m32s {
    simd.mask_between_m32s(0, len as u32).mask()
}

/// In-place row softmax `x ← exp(x − max x) / Σ exp(x − max x)` (SPEC §11).
///
/// # Panics
/// When `x` is empty.
#[inline(always)]
pub fn softmax_row<S: Simd>(simd: S, x: &mut [f32]) {
    assert!(!x.is_empty(), "softmax of an empty row");
    let max = row_max(simd, x);
    let sum = exp_shift_sum(simd, x, max);
    scale_row(simd, x, 1.0 / sum);
}

/// `max x` with four accumulators.
#[inline(always)]
pub fn row_max<S: Simd>(simd: S, x: &[f32]) -> f32 {
    let (head, tail) = S::as_simd_f32s(x);
    let (quads, rest) = pulp::as_arrays::<4, _>(head);
    let ninf = simd.splat_f32s(f32::NEG_INFINITY);
    let mut m = [ninf; 4];
    for [a, b, c, d] in quads {
        m[0] = simd.max_f32s(m[0], *a);
        m[1] = simd.max_f32s(m[1], *b);
        m[2] = simd.max_f32s(m[2], *c);
        m[3] = simd.max_f32s(m[3], *d);
    }
    for a in rest {
        m[0] = simd.max_f32s(m[0], *a);
    }
    if !tail.is_empty() {
        let t = simd.partial_load_f32s(tail);
        m[1] = simd.max_f32s(m[1], simd.select_f32s(tail_mask(simd, tail.len()), t, ninf));
    }
    let m = simd.max_f32s(simd.max_f32s(m[0], m[1]), simd.max_f32s(m[2], m[3]));
    simd.reduce_max_f32s(m)
}

/// `x ← exp(x − shift)`, returning `Σ x` (four accumulators). `shift` is at least the largest
/// entry (the softmax's row max): the arguments are `≤ 0` and go to [`exp_nonpos_f32s`].
#[inline(always)]
pub fn exp_shift_sum<S: Simd>(simd: S, x: &mut [f32], shift: f32) -> f32 {
    let sh = simd.splat_f32s(shift);
    let (head, tail) = S::as_mut_simd_f32s(x);
    let (quads, rest) = pulp::as_arrays_mut::<4, _>(head);
    let mut s = [simd.splat_f32s(0.0); 4];
    for q in quads {
        for (acc, v) in s.iter_mut().zip(q.iter_mut()) {
            *v = exp_nonpos_f32s(simd, simd.sub_f32s(*v, sh));
            *acc = simd.add_f32s(*acc, *v);
        }
    }
    for v in rest {
        *v = exp_nonpos_f32s(simd, simd.sub_f32s(*v, sh));
        s[0] = simd.add_f32s(s[0], *v);
    }
    if !tail.is_empty() {
        let e = exp_nonpos_f32s(simd, simd.sub_f32s(simd.partial_load_f32s(tail), sh));
        simd.partial_store_f32s(tail, e);
        let e = simd.select_f32s(tail_mask(simd, tail.len()), e, simd.splat_f32s(0.0));
        s[1] = simd.add_f32s(s[1], e);
    }
    simd.reduce_sum_f32s(simd.add_f32s(simd.add_f32s(s[0], s[1]), simd.add_f32s(s[2], s[3])))
}

/// `x ← alpha·x`.
#[inline(always)]
pub fn scale_row<S: Simd>(simd: S, x: &mut [f32], alpha: f32) {
    let a = simd.splat_f32s(alpha);
    let (head, tail) = S::as_mut_simd_f32s(x);
    for v in head {
        *v = simd.mul_f32s(*v, a);
    }
    if !tail.is_empty() {
        let v = simd.mul_f32s(simd.partial_load_f32s(tail), a);
        simd.partial_store_f32s(tail, v);
    }
}

/// `⟨a, b⟩` with four accumulators.
///
/// # Panics
/// When the lengths differ.
#[inline(always)]
#[track_caller]
pub fn dot<S: Simd>(simd: S, a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let (ah, at) = S::as_simd_f32s(a);
    let (bh, bt) = S::as_simd_f32s(b);
    let (aq, ar) = pulp::as_arrays::<4, _>(ah);
    let (bq, br) = pulp::as_arrays::<4, _>(bh);
    let mut s = [simd.splat_f32s(0.0); 4];
    for (x, y) in aq.iter().zip(bq) {
        for i in 0..4 {
            s[i] = simd.mul_add_e_f32s(x[i], y[i], s[i]);
        }
    }
    for (x, y) in ar.iter().zip(br) {
        s[0] = simd.mul_add_e_f32s(*x, *y, s[0]);
    }
    if !at.is_empty() {
        s[1] = simd.mul_add_e_f32s(simd.partial_load_f32s(at), simd.partial_load_f32s(bt), s[1]);
    }
    simd.reduce_sum_f32s(simd.add_f32s(simd.add_f32s(s[0], s[1]), simd.add_f32s(s[2], s[3])))
}

/// `f ← x − f` (the residual `r = x − F` in place), returning `Σ r²`.
///
/// # Panics
/// When the lengths differ.
#[inline(always)]
#[track_caller]
pub fn residual_row<S: Simd>(simd: S, x: &[f32], f: &mut [f32]) -> f32 {
    assert_eq!(x.len(), f.len());
    let (xh, xt) = S::as_simd_f32s(x);
    let (fh, ft) = S::as_mut_simd_f32s(f);
    let mut s = [simd.splat_f32s(0.0); 4];
    for (i, (x, f)) in xh.iter().zip(fh.iter_mut()).enumerate() {
        *f = simd.sub_f32s(*x, *f);
        s[i % 4] = simd.mul_add_e_f32s(*f, *f, s[i % 4]);
    }
    if !xt.is_empty() {
        let r = simd.sub_f32s(simd.partial_load_f32s(xt), simd.partial_load_f32s(ft));
        simd.partial_store_f32s(ft, r);
        s[1] = simd.mul_add_e_f32s(r, r, s[1]);
    }
    simd.reduce_sum_f32s(simd.add_f32s(simd.add_f32s(s[0], s[1]), simd.add_f32s(s[2], s[3])))
}

/// Softmax backward of one row: `ds = sign · a ⊙ (g − ⟨a, g⟩)` (SPEC §5).
///
/// # Panics
/// When the lengths differ.
#[inline(always)]
#[track_caller]
pub fn softmax_backward_row<S: Simd>(simd: S, a: &[f32], g: &[f32], sign: f32, ds: &mut [f32]) {
    assert_eq!(a.len(), ds.len());
    let mean = simd.splat_f32s(dot(simd, a, g));
    let sg = simd.splat_f32s(sign);
    let (ah, at) = S::as_simd_f32s(a);
    let (gh, gt) = S::as_simd_f32s(g);
    let (dh, dt) = S::as_mut_simd_f32s(ds);
    for ((a, g), d) in ah.iter().zip(gh).zip(dh.iter_mut()) {
        *d = simd.mul_f32s(simd.mul_f32s(*a, sg), simd.sub_f32s(*g, mean));
    }
    if !at.is_empty() {
        let (a, g) = (simd.partial_load_f32s(at), simd.partial_load_f32s(gt));
        let d = simd.mul_f32s(simd.mul_f32s(a, sg), simd.sub_f32s(g, mean));
        simd.partial_store_f32s(dt, d);
    }
}

/// `y ← y + alpha·x`.
///
/// # Panics
/// When the lengths differ.
#[inline(always)]
#[track_caller]
pub fn axpy<S: Simd>(simd: S, y: &mut [f32], alpha: f32, x: &[f32]) {
    assert_eq!(x.len(), y.len());
    let al = simd.splat_f32s(alpha);
    let (yh, yt) = S::as_mut_simd_f32s(y);
    let (xh, xt) = S::as_simd_f32s(x);
    for (y, x) in yh.iter_mut().zip(xh) {
        *y = simd.mul_add_e_f32s(al, *x, *y);
    }
    if !yt.is_empty() {
        let v = simd.mul_add_e_f32s(al, simd.partial_load_f32s(xt), simd.partial_load_f32s(yt));
        simd.partial_store_f32s(yt, v);
    }
}

/// `z ← x + y`.
///
/// # Panics
/// When the lengths differ.
#[inline(always)]
#[track_caller]
pub fn add_rows<S: Simd>(simd: S, z: &mut [f32], x: &[f32], y: &[f32]) {
    assert!(x.len() == z.len() && y.len() == z.len());
    let (zh, zt) = S::as_mut_simd_f32s(z);
    let (xh, xt) = S::as_simd_f32s(x);
    let (yh, yt) = S::as_simd_f32s(y);
    for ((z, x), y) in zh.iter_mut().zip(xh).zip(yh) {
        *z = simd.add_f32s(*x, *y);
    }
    if !zt.is_empty() {
        let v = simd.add_f32s(simd.partial_load_f32s(xt), simd.partial_load_f32s(yt));
        simd.partial_store_f32s(zt, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::mat::RowMat;
    use crate::isa::Isa;

    fn filled(r: usize, c: usize, seed: usize) -> RowMat {
        let mut m = RowMat::zeros(r, c);
        for i in 0..r {
            for (j, v) in m.row_mut(i).iter_mut().enumerate() {
                *v = (((i * 131 + j * 71 + seed * 17) % 97) as f32 / 48.0) - 1.0;
            }
        }
        m
    }

    fn sizes(isa: Isa) -> Vec<usize> {
        let l = isa.f32_lanes();
        let mut v = vec![
            1,
            l.saturating_sub(1).max(1),
            l,
            l + 1,
            2 * l + 1,
            // A column block of four vectors (AVX-512): three with a ragged tail, and all four
            // plus one column.
            3 * l - 1,
            4 * l + 1,
            3,
            7,
            13,
            37,
        ];
        v.sort_unstable();
        v.dedup();
        v
    }

    #[test]
    fn gemm_matches_naive_at_awkward_sizes() {
        for isa in crate::fast::test_isas() {
            let arch = isa.arch().unwrap();
            let mut scratch = GemmScratch::new();
            let sz = sizes(isa);
            for &m in sz.iter().chain(&[GEMM_PANEL + 1]) {
                for &k in &sz {
                    for &n in &sz {
                        let a = filled(m, k, 1);
                        let at = filled(k, m, 4);
                        let b = filled(k, n, 2);
                        let bt = filled(n, k, 5);
                        let cases = [
                            (Accum::Replace, a.view(), b.view()),
                            (Accum::Add, a.view(), b.view()),
                            (Accum::Replace, at.view().t(), bt.view().t()),
                        ];
                        for (accum, av, bv) in cases {
                            let mut c = filled(m, n, 3);
                            let c0 = c.clone();
                            let scratch = &mut scratch;
                            arch.dispatch(Gemm {
                                c: c.view_mut(),
                                a: av,
                                b: bv,
                                accum,
                                scratch,
                            });
                            let mut worst = 0.0f64;
                            for i in 0..m {
                                for j in 0..n {
                                    let mut want: f64 = (0..k)
                                        .map(|t| av.at(i, t) as f64 * bv.at(t, j) as f64)
                                        .sum();
                                    if accum == Accum::Add {
                                        want += c0.row(i)[j] as f64;
                                    }
                                    worst = worst.max((c.row(i)[j] as f64 - want).abs());
                                }
                            }
                            assert!(
                                worst < 1e-5 * k as f64,
                                "{isa} {m}x{k}x{n} {accum:?}: {worst}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Two products of the same `b` (`k × n`): `gathered[dst_rows[i], :] (=|+=)
    /// Σ_kk a[i, cols[kk]] · b[kk, :]` through [`pack_a_cols`] and [`gemm_packed_rows`], and
    /// `in_place[i, :] (=|+=) a[order[i], 0..k] · b` through [`gemm_rows`], and the same rows
    /// into `in_place_to[dst_rows[i], :]` through [`gemm_rows_to`].
    struct RowProducts<'a> {
        gathered: ViewMut<'a>,
        in_place: ViewMut<'a>,
        in_place_to: ViewMut<'a>,
        a: &'a RowMat,
        cols: &'a [usize],
        dst_rows: &'a [usize],
        order: &'a [usize],
        b: View<'a>,
        accum: Accum,
    }

    impl WithSimd for RowProducts<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) {
            let Self {
                mut gathered,
                mut in_place,
                mut in_place_to,
                a,
                cols,
                dst_rows,
                order,
                b,
                accum,
            } = self;
            let k = b.nrows();
            let mut bp = vec![0.0; packed_b_len(k, b.ncols())];
            pack_b::<S>(b, &mut bp);
            let mut ap = vec![0.0; packed_a_len(dst_rows.len(), k)];
            pack_a_cols(a.view(), dst_rows.len(), cols, &mut ap);
            gemm_packed_rows(simd, &mut gathered, dst_rows, k, &ap, &bp, accum);
            let rows = order.len();
            gemm_rows(
                simd,
                &mut in_place,
                |i| a.row(order[i]),
                rows,
                k,
                &bp,
                accum,
            );
            gemm_rows_to(
                simd,
                &mut in_place_to,
                |i| a.row(order[i]),
                |i| dst_rows[i],
                rows,
                k,
                &bp,
                accum,
            );
        }
    }

    #[test]
    fn gathered_scattered_and_in_place_products_match_naive() {
        for isa in crate::fast::test_isas() {
            let arch = isa.arch().unwrap();
            let sz = sizes(isa);
            for &rows in sz.iter().chain(&[MR + 1, 2 * MR + 4, 4 * MR + 2]) {
                for &k in &sz {
                    for &n in &sz {
                        // `a` has more columns than either product reads. The gather takes
                        // them out of order and its rows land in every other row of its output,
                        // last row first; the in-place product reads the rows last first.
                        let a = filled(rows, 2 * k + 1, 6);
                        let cols: Vec<usize> =
                            (0..k).map(|i| (2 * k - 2 * i) % (2 * k + 1)).collect();
                        let dst_rows: Vec<usize> = (0..rows).map(|i| 2 * (rows - 1 - i)).collect();
                        let order: Vec<usize> = (0..rows).rev().collect();
                        let b = filled(k, n, 7);
                        let dot = |row: usize, col: &dyn Fn(usize) -> usize, j: usize| -> f64 {
                            (0..k)
                                .map(|t| a.row(row)[col(t)] as f64 * b.row(t)[j] as f64)
                                .sum()
                        };
                        for accum in [Accum::Replace, Accum::Add] {
                            let mut gathered = filled(2 * rows, n, 8);
                            let mut in_place = filled(rows, n, 9);
                            let mut in_place_to = filled(2 * rows, n, 10);
                            let (g0, p0, t0) =
                                (gathered.clone(), in_place.clone(), in_place_to.clone());
                            arch.dispatch(RowProducts {
                                gathered: gathered.view_mut(),
                                in_place: in_place.view_mut(),
                                in_place_to: in_place_to.view_mut(),
                                a: &a,
                                cols: &cols,
                                dst_rows: &dst_rows,
                                order: &order,
                                b: b.view(),
                                accum,
                            });
                            let old = |c0: &RowMat, r: usize, j: usize| match accum {
                                Accum::Add => c0.row(r)[j] as f64,
                                Accum::Replace => 0.0,
                            };
                            let check = |what: &str, got: f32, want: f64| {
                                assert!(
                                    (got as f64 - want).abs() < 1e-5 * (k as f64 + 1.0),
                                    "{isa} {rows}x{k}x{n} {accum:?} {what}: {got} vs {want}"
                                );
                            };
                            for r in 0..2 * rows {
                                for j in 0..n {
                                    let want = match dst_rows.iter().position(|&x| x == r) {
                                        None => g0.row(r)[j] as f64,
                                        Some(i) => dot(i, &|t| cols[t], j) + old(&g0, r, j),
                                    };
                                    check(&format!("gathered[{r},{j}]"), gathered.row(r)[j], want);
                                }
                            }
                            for (i, &src) in order.iter().enumerate() {
                                for j in 0..n {
                                    let want = dot(src, &|t| t, j) + old(&p0, i, j);
                                    check(&format!("in_place[{i},{j}]"), in_place.row(i)[j], want);
                                }
                            }
                            for r in 0..2 * rows {
                                for j in 0..n {
                                    let want = match dst_rows.iter().position(|&x| x == r) {
                                        None => t0.row(r)[j] as f64,
                                        Some(i) => dot(order[i], &|t| t, j) + old(&t0, r, j),
                                    };
                                    let got = in_place_to.row(r)[j];
                                    check(&format!("in_place_to[{r},{j}]"), got, want);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    struct Rows<'a> {
        x: &'a mut [f32],
        g: &'a [f32],
        out: &'a mut Vec<f32>,
    }

    impl WithSimd for Rows<'_> {
        type Output = (f32, f32);
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) -> (f32, f32) {
            let d = dot(simd, self.x, self.g);
            softmax_row(simd, self.x);
            self.out.resize(self.x.len(), 0.0);
            softmax_backward_row(simd, self.x, self.g, -1.0, self.out);
            let mut r = self.g.to_vec();
            let ss = residual_row(simd, self.x, &mut r);
            (d, ss)
        }
    }

    #[test]
    fn row_ops_match_their_formulas_and_softmax_is_stable() {
        for isa in crate::fast::test_isas() {
            let arch = isa.arch().unwrap();
            for &n in &sizes(isa) {
                let x0: Vec<f32> = (0..n).map(|i| ((i * 7 % 11) as f32 - 5.0) * 3.0).collect();
                let g: Vec<f32> = (0..n).map(|i| ((i * 5 % 13) as f32 - 6.0) * 0.5).collect();
                let mut x = x0.clone();
                let mut ds = Vec::new();
                let (d, ss) = arch.dispatch(Rows {
                    x: &mut x,
                    g: &g,
                    out: &mut ds,
                });
                let want_dot: f64 = x0
                    .iter()
                    .zip(&g)
                    .map(|(a, b)| (*a as f64) * (*b as f64))
                    .sum();
                assert!((d as f64 - want_dot).abs() < 1e-4, "{isa} n={n}");
                let max = x0.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
                let e: Vec<f64> = x0.iter().map(|&v| (v as f64 - max).exp()).collect();
                let z: f64 = e.iter().sum();
                let a: Vec<f64> = e.iter().map(|v| v / z).collect();
                let ag: f64 = a.iter().zip(&g).map(|(a, g)| a * *g as f64).sum();
                let mut want_ss = 0.0;
                for i in 0..n {
                    assert!(
                        (x[i] as f64 - a[i]).abs() < 1e-6,
                        "{isa} n={n} softmax[{i}]"
                    );
                    let want = -a[i] * (g[i] as f64 - ag);
                    assert!((ds[i] as f64 - want).abs() < 1e-5, "{isa} n={n} ds[{i}]");
                    want_ss += (a[i] - g[i] as f64).powi(2);
                }
                assert!(
                    (ss as f64 - want_ss).abs() < 1e-4 * want_ss.max(1.0),
                    "{isa} n={n}"
                );
            }
            let mut x = vec![1234.0, 0.0];
            let mut ds = Vec::new();
            arch.dispatch(Rows {
                x: &mut x,
                g: &[0.0, 0.0],
                out: &mut ds,
            });
            assert_eq!(x, vec![1.0, 0.0], "{isa}");
            let mut x = vec![-1e30, 3e38, f32::MAX, -f32::MAX];
            arch.dispatch(Rows {
                x: &mut x,
                g: &[0.0; 4],
                out: &mut ds,
            });
            assert!(x.iter().all(|v| v.is_finite()), "{isa}: {x:?}");
        }
    }
}
