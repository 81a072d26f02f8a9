//! The fast engine's building blocks, generic over pulp's [`Simd`]: a register-blocked product
//! kernel and the row operations of the fused passes (softmax, residual, softmax backward).
//!
//! **Product.** [`gemm`] computes `C (=|+=) A·B` for row-major `A` (`m × k`), `B` (`k × n`) and
//! `C` (`m × n`). The micro-kernel holds an `MR × 2` tile of vectors in registers (6 × 16 floats
//! on AVX2: 12 accumulators, 2 loads of `B` and one broadcast of `A` live at once) and walks `k`;
//! each `B` row segment it loads feeds `2·MR` independent fused multiply-adds. The last column
//! block goes through `partial_load` / `partial_store`. This kernel computes every product of the
//! fused passes (scores `U·Hᵀ`, outputs `A·X̃`, `R·X̃ᵀ`), and every other product too when the
//! engine runs on [`crate::isa::Isa::Scalar`] (see [`super`]).
//!
//! **Rows.** Reductions keep four vector accumulators (their latency, not the loads, bounds
//! them); tails are loaded with `partial_load` and masked where a padding lane would change the
//! result (a max, a sum of exponentials).

use super::exp::exp_f32s;
use super::mat::{View, ViewMut};
use faer::Accum;
use pulp::{Simd, WithSimd};

/// Rows of the micro-tile.
pub const MR: usize = 6;

#[inline(always)]
fn load<S: Simd>(s: &[f32]) -> S::f32s {
    S::as_simd_f32s(&s[..S::F32_LANES]).0[0]
}

#[inline(always)]
fn store<S: Simd>(s: &mut [f32], v: S::f32s) {
    S::as_mut_simd_f32s(&mut s[..S::F32_LANES]).0[0] = v;
}

/// The `R × 2` vector tile `A[rows, :] · B[:, j0 .. j0 + w]`; `FULL` means `w = 2·lanes`.
#[inline(always)]
fn tile<S: Simd, const R: usize, const FULL: bool>(
    simd: S,
    a: &[&[f32]; R],
    b: View<'_>,
    j0: usize,
    w: usize,
) -> [[S::f32s; 2]; R] {
    let l = S::F32_LANES;
    let k = b.nrows();
    let a: [&[f32]; R] = core::array::from_fn(|r| &a[r][..k]);
    let data = b.data();
    let ldb = b.stride();
    let mut acc = [[simd.splat_f32s(0.0); 2]; R];
    let w0 = w.min(l);
    for kk in 0..k {
        let row = &data[kk * ldb + j0..];
        let (b0, b1) = if FULL {
            (load::<S>(&row[..l]), load::<S>(&row[l..2 * l]))
        } else {
            (
                simd.partial_load_f32s(&row[..w0]),
                simd.partial_load_f32s(&row[w0..w]),
            )
        };
        for r in 0..R {
            let x = simd.splat_f32s(a[r][kk]);
            acc[r][0] = simd.mul_add_e_f32s(x, b0, acc[r][0]);
            acc[r][1] = simd.mul_add_e_f32s(x, b1, acc[r][1]);
        }
    }
    acc
}

/// Writes (or adds) a tile into `c[r][j0 .. j0 + w]`.
#[inline(always)]
fn put<S: Simd, const R: usize, const FULL: bool>(
    simd: S,
    acc: [[S::f32s; 2]; R],
    c: &mut [&mut [f32]; R],
    j0: usize,
    w: usize,
    accum: Accum,
) {
    let l = S::F32_LANES;
    let w0 = w.min(l);
    for r in 0..R {
        let row = &mut c[r][j0..];
        if FULL {
            let (lo, hi) = row.split_at_mut(l);
            let (mut v0, mut v1) = (acc[r][0], acc[r][1]);
            if accum == Accum::Add {
                v0 = simd.add_f32s(v0, load::<S>(lo));
                v1 = simd.add_f32s(v1, load::<S>(hi));
            }
            store::<S>(lo, v0);
            store::<S>(hi, v1);
        } else {
            let (lo, hi) = row[..w].split_at_mut(w0);
            let (mut v0, mut v1) = (acc[r][0], acc[r][1]);
            if accum == Accum::Add {
                v0 = simd.add_f32s(v0, simd.partial_load_f32s(lo));
                v1 = simd.add_f32s(v1, simd.partial_load_f32s(hi));
            }
            simd.partial_store_f32s(lo, v0);
            simd.partial_store_f32s(hi, v1);
        }
    }
}

/// `c[r] (=|+=) a[r] · B` for `R` rows: every column block of `B` once.
#[inline(always)]
fn panel<S: Simd, const R: usize>(
    simd: S,
    a: [&[f32]; R],
    b: View<'_>,
    mut c: [&mut [f32]; R],
    accum: Accum,
) {
    let bw = 2 * S::F32_LANES;
    let n = b.ncols();
    let mut j0 = 0;
    while j0 + bw <= n {
        let acc = tile::<S, R, true>(simd, &a, b, j0, bw);
        put::<S, R, true>(simd, acc, &mut c, j0, bw, accum);
        j0 += bw;
    }
    if j0 < n {
        let acc = tile::<S, R, false>(simd, &a, b, j0, n - j0);
        put::<S, R, false>(simd, acc, &mut c, j0, n - j0, accum);
    }
}

#[inline(always)]
fn panel_at<S: Simd, const R: usize>(
    simd: S,
    c: &mut ViewMut<'_>,
    a: View<'_>,
    b: View<'_>,
    r0: usize,
    accum: Accum,
) {
    let rows: [&[f32]; R] = core::array::from_fn(|r| a.row(r0 + r));
    panel::<S, R>(simd, rows, b, c.row_array::<R>(r0), accum);
}

/// `C (=|+=) A·B`, all row-major.
///
/// # Panics
/// When the shapes do not agree.
#[inline(always)]
#[track_caller]
pub fn gemm<S: Simd>(simd: S, mut c: ViewMut<'_>, a: View<'_>, b: View<'_>, accum: Accum) {
    assert_eq!(a.ncols(), b.nrows(), "inner dimensions");
    assert_eq!(
        (c.nrows(), c.ncols()),
        (a.nrows(), b.ncols()),
        "output shape"
    );
    let m = a.nrows();
    let mut r0 = 0;
    while r0 < m {
        let rows = (m - r0).min(MR);
        match rows {
            6 => panel_at::<S, 6>(simd, &mut c, a, b, r0, accum),
            5 => panel_at::<S, 5>(simd, &mut c, a, b, r0, accum),
            4 => panel_at::<S, 4>(simd, &mut c, a, b, r0, accum),
            3 => panel_at::<S, 3>(simd, &mut c, a, b, r0, accum),
            2 => panel_at::<S, 2>(simd, &mut c, a, b, r0, accum),
            _ => panel_at::<S, 1>(simd, &mut c, a, b, r0, accum),
        }
        r0 += rows;
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
}

impl WithSimd for Gemm<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> Self::Output {
        gemm(simd, self.c, self.a, self.b, self.accum);
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

/// `x ← exp(x − shift)`, returning `Σ x` (four accumulators).
#[inline(always)]
pub fn exp_shift_sum<S: Simd>(simd: S, x: &mut [f32], shift: f32) -> f32 {
    let sh = simd.splat_f32s(shift);
    let (head, tail) = S::as_mut_simd_f32s(x);
    let (quads, rest) = pulp::as_arrays_mut::<4, _>(head);
    let mut s = [simd.splat_f32s(0.0); 4];
    for q in quads {
        for (acc, v) in s.iter_mut().zip(q.iter_mut()) {
            *v = exp_f32s(simd, simd.sub_f32s(*v, sh));
            *acc = simd.add_f32s(*acc, *v);
        }
    }
    for v in rest {
        *v = exp_f32s(simd, simd.sub_f32s(*v, sh));
        s[0] = simd.add_f32s(s[0], *v);
    }
    if !tail.is_empty() {
        let e = exp_f32s(simd, simd.sub_f32s(simd.partial_load_f32s(tail), sh));
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
            l + 1,
            2 * l + 1,
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
        for isa in Isa::available() {
            let arch = isa.arch().unwrap();
            for &m in &sizes(isa) {
                for &k in &sizes(isa) {
                    for &n in &sizes(isa) {
                        let a = filled(m, k, 1);
                        let b = filled(k, n, 2);
                        for accum in [Accum::Replace, Accum::Add] {
                            let mut c = filled(m, n, 3);
                            let c0 = c.clone();
                            arch.dispatch(Gemm {
                                c: c.view_mut(),
                                a: a.view(),
                                b: b.view(),
                                accum,
                            });
                            let mut worst = 0.0f64;
                            for i in 0..m {
                                for j in 0..n {
                                    let mut want: f64 = (0..k)
                                        .map(|t| a.row(i)[t] as f64 * b.row(t)[j] as f64)
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
        for isa in Isa::available() {
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
