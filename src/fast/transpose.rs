//! In-register transposes for packing a column-major right factor on x86 (the MAE `X_Vᵀ` and the
//! CL `Hᵀ` of [`super::kernels::pack_b`]).
//!
//! Packing `Bᵀ`-shaped data means that packed row `kk` of a column block gathers element `kk` of
//! `nb` different source runs. Done element by element, packing `X_V` and `X_Vᵀ` took about 7% of
//! an MAE sample on AVX-512; with the tiles below the sample is 2–3% faster on AVX-512 and on AVX2
//! (P = 256, one thread). Here square tiles of `T × T` floats (`T` = the f32 lanes:
//! 16 on AVX-512, 8 on AVX2) are loaded as `T` vectors, one per source run, transposed in
//! registers with the classic unpack / shuffle network (`4·T` shuffles for `T = 16`, `3·T` for
//! `T = 8`) and stored as `T` vectors, one per packed row. pulp's portable `Simd` trait has no
//! lane shuffles, so this part uses the x86 tokens of pulp (`V4`, `V3`) directly; their intrinsic
//! methods are safe to call with the token, and no `unsafe` is needed. Other ISAs, and the parts
//! of a block that do not fill a whole tile, keep the portable path of `pack_b`.

use pulp::Simd;
#[cfg(target_arch = "x86_64")]
use pulp::bytemuck;

/// Packs whole `T × T` tiles of columns `0 .. w` of one column block: for every column `c` in
/// the tiles and every `kk < k`, `blk[kk·nb + c] = col(c)[kk]`, where `col(c)` is
/// `src[c·cs .. c·cs + k]`. Returns how many leading columns it packed (a multiple of `T`; 0
/// where no in-register transpose applies), so the caller packs columns from there on.
///
/// # Panics
/// When `src` or `blk` is too short for the tiles.
#[inline(always)]
#[track_caller]
pub fn pack_cols<S: Simd>(
    src: &[f32],
    cs: usize,
    k: usize,
    w: usize,
    nb: usize,
    blk: &mut [f32],
) -> usize {
    #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
    if S::F32_LANES == 16
        && let Some(v4) = pulp::x86::V4::try_new()
    {
        return v4.vectorize(Tiles::new(v4, src, cs, k, w, nb, blk));
    }
    #[cfg(target_arch = "x86_64")]
    if S::F32_LANES == 8
        && let Some(v3) = pulp::x86::V3::try_new()
    {
        return v3.vectorize(Tiles::new(v3, src, cs, k, w, nb, blk));
    }
    let _ = (src, cs, k, w, nb, blk);
    0
}

/// An ISA token that transposes `T × T` tiles in registers.
#[cfg(target_arch = "x86_64")]
trait Transposer: Copy {
    /// The tile side (the f32 lanes).
    const T: usize;

    /// Transposes the tile whose row `i` is `src[row(i) .. row(i) + T]` into
    /// `blk[out(j) .. out(j) + T]` for column `j`.
    fn tile(
        self,
        src: &[f32],
        row: impl Fn(usize) -> usize,
        blk: &mut [f32],
        out: impl Fn(usize) -> usize,
    );
}

/// The tile loops over one column block, run with the token's target features
/// (`X::vectorize`).
#[cfg(target_arch = "x86_64")]
struct Tiles<'a, X> {
    x: X,
    src: &'a [f32],
    cs: usize,
    k: usize,
    w: usize,
    nb: usize,
    blk: &'a mut [f32],
}

#[cfg(target_arch = "x86_64")]
impl<'a, X: Transposer> Tiles<'a, X> {
    #[inline(always)]
    fn new(
        x: X,
        src: &'a [f32],
        cs: usize,
        k: usize,
        w: usize,
        nb: usize,
        blk: &'a mut [f32],
    ) -> Self {
        Self {
            x,
            src,
            cs,
            k,
            w,
            nb,
            blk,
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl<X: Transposer> pulp::NullaryFnOnce for Tiles<'_, X> {
    type Output = usize;

    #[inline(always)]
    fn call(self) -> usize {
        let Self {
            x,
            src,
            cs,
            k,
            w,
            nb,
            blk,
        } = self;
        let t = X::T;
        let (tiles_c, tiles_k) = (w / t * t, k / t * t);
        for c0 in (0..tiles_c).step_by(t) {
            for k0 in (0..tiles_k).step_by(t) {
                x.tile(src, |i| (c0 + i) * cs + k0, blk, |j| (k0 + j) * nb + c0);
            }
            // The rows past the last whole tile, element by element.
            for c in c0..c0 + t {
                let col = &src[c * cs..c * cs + k];
                for kk in tiles_k..k {
                    blk[kk * nb + c] = col[kk];
                }
            }
        }
        tiles_c
    }
}

/// AVX-512: 16 × 16 tiles.
#[cfg(all(target_arch = "x86_64", feature = "avx512"))]
impl Transposer for pulp::x86::V4 {
    const T: usize = 16;

    #[inline(always)]
    fn tile(
        self,
        src: &[f32],
        row: impl Fn(usize) -> usize,
        blk: &mut [f32],
        out: impl Fn(usize) -> usize,
    ) {
        use core::arch::x86_64::__m512;
        let f = self.avx512f;
        let mut r: [__m512; 16] = core::array::from_fn(|i| {
            let v: [f32; 16] = src[row(i)..row(i) + 16].try_into().expect("16 floats");
            bytemuck::cast(v)
        });
        // Pairs of rows interleaved by 32-bit lanes, then by 64-bit lanes: every 128-bit lane
        // of r[4g + j] then holds column 4·lane + j of rows 4g .. 4g + 4.
        let mut t = r;
        for i in 0..8 {
            t[2 * i] = f._mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = f._mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        let pd = |x: __m512| f._mm512_castps_pd(x);
        for g in 0..4 {
            let (a, b) = (pd(t[4 * g]), pd(t[4 * g + 1]));
            let (c, d) = (pd(t[4 * g + 2]), pd(t[4 * g + 3]));
            r[4 * g] = f._mm512_castpd_ps(f._mm512_unpacklo_pd(a, c));
            r[4 * g + 1] = f._mm512_castpd_ps(f._mm512_unpackhi_pd(a, c));
            r[4 * g + 2] = f._mm512_castpd_ps(f._mm512_unpacklo_pd(b, d));
            r[4 * g + 3] = f._mm512_castpd_ps(f._mm512_unpackhi_pd(b, d));
        }
        // Then whole 128-bit lanes: two rounds of shuffles across the groups.
        for h in 0..2 {
            for i in 0..4 {
                let (a, b) = (r[8 * h + i], r[8 * h + 4 + i]);
                t[8 * h + i] = f._mm512_shuffle_f32x4::<0x88>(a, b);
                t[8 * h + 4 + i] = f._mm512_shuffle_f32x4::<0xdd>(a, b);
            }
        }
        for i in 0..8 {
            r[i] = f._mm512_shuffle_f32x4::<0x88>(t[i], t[8 + i]);
            r[8 + i] = f._mm512_shuffle_f32x4::<0xdd>(t[i], t[8 + i]);
        }
        for (j, v) in r.iter().enumerate() {
            let v: [f32; 16] = bytemuck::cast(*v);
            blk[out(j)..out(j) + 16].copy_from_slice(&v);
        }
    }
}

/// AVX2: 8 × 8 tiles.
#[cfg(target_arch = "x86_64")]
impl Transposer for pulp::x86::V3 {
    const T: usize = 8;

    #[inline(always)]
    fn tile(
        self,
        src: &[f32],
        row: impl Fn(usize) -> usize,
        blk: &mut [f32],
        out: impl Fn(usize) -> usize,
    ) {
        use core::arch::x86_64::__m256;
        let f = self.avx;
        let r: [__m256; 8] = core::array::from_fn(|i| {
            let v: [f32; 8] = src[row(i)..row(i) + 8].try_into().expect("8 floats");
            bytemuck::cast(v)
        });
        let mut t = r;
        for i in 0..4 {
            t[2 * i] = f._mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = f._mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        let mut u = t;
        for g in 0..2 {
            let (a, b, c, d) = (t[4 * g], t[4 * g + 1], t[4 * g + 2], t[4 * g + 3]);
            u[4 * g] = f._mm256_shuffle_ps::<0x44>(a, c);
            u[4 * g + 1] = f._mm256_shuffle_ps::<0xee>(a, c);
            u[4 * g + 2] = f._mm256_shuffle_ps::<0x44>(b, d);
            u[4 * g + 3] = f._mm256_shuffle_ps::<0xee>(b, d);
        }
        for i in 0..4 {
            let (lo, hi) = (u[i], u[4 + i]);
            let rows = [
                (i, f._mm256_permute2f128_ps::<0x20>(lo, hi)),
                (4 + i, f._mm256_permute2f128_ps::<0x31>(lo, hi)),
            ];
            for (j, v) in rows {
                let v: [f32; 8] = bytemuck::cast(v);
                blk[out(j)..out(j) + 8].copy_from_slice(&v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pack_cols;
    use pulp::{Simd, WithSimd};

    /// `pack_cols` on `S`, then the columns it left packed element by element.
    struct Pack<'a> {
        src: &'a [f32],
        cs: usize,
        k: usize,
        w: usize,
        nb: usize,
    }

    impl WithSimd for Pack<'_> {
        type Output = (Vec<f32>, usize);
        #[inline(always)]
        fn with_simd<S: Simd>(self, _simd: S) -> (Vec<f32>, usize) {
            let Self { src, cs, k, w, nb } = self;
            let mut blk = vec![f32::NAN; k * nb];
            let done = pack_cols::<S>(src, cs, k, w, nb, &mut blk);
            for c in done..w {
                for kk in 0..k {
                    blk[kk * nb + c] = src[c * cs + kk];
                }
            }
            (blk, done)
        }
    }

    #[test]
    fn tiles_transpose_exactly_at_awkward_sizes() {
        for isa in crate::fast::test_isas() {
            let arch = isa.arch().unwrap();
            let l = isa.f32_lanes();
            let sizes = [1, 7, l.max(2) - 1, l, l + 1, 2 * l, 2 * l + 3, 37];
            for &k in &sizes {
                for &w in &sizes {
                    let nb = w.next_multiple_of(2 * l) + 2 * l;
                    // Column c of the source is the run of k floats at c·cs; cs > k leaves gaps.
                    let cs = k + 3;
                    let src: Vec<f32> = (0..w * cs).map(|i| i as f32 * 0.5 - 7.0).collect();
                    let (blk, done) = arch.dispatch(Pack {
                        src: &src,
                        cs,
                        k,
                        w,
                        nb,
                    });
                    assert!(
                        done <= w && done % l.max(1) == 0,
                        "{isa} k={k} w={w}: {done}"
                    );
                    if matches!(isa, crate::isa::Isa::V3 | crate::isa::Isa::V4) && k >= l {
                        assert_eq!(done, w / l * l, "{isa}: whole tiles go through registers");
                    }
                    for kk in 0..k {
                        for c in 0..w {
                            assert_eq!(
                                blk[kk * nb + c].to_bits(),
                                src[c * cs + kk].to_bits(),
                                "{isa} k={k} w={w}: row {kk}, column {c}"
                            );
                        }
                        // Columns past w are not written.
                        assert!(blk[kk * nb + w..(kk + 1) * nb].iter().all(|v| v.is_nan()));
                    }
                }
            }
        }
    }
}
