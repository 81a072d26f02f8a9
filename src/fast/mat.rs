//! Row-major f32 storage for the fast engine: rows padded to a multiple of 16 floats and the
//! buffer aligned to 64 bytes, so every row starts on a cache line and every workspace has the
//! same alignment (which keeps faer's results independent of which worker computed them).

use faer::{MatMut, MatRef};

/// Row stride for `ncols` columns: the next multiple of 16 floats (one cache line).
pub fn padded(ncols: usize) -> usize {
    ncols.next_multiple_of(16).max(16)
}

/// A 64-byte aligned, zero-initialised f32 buffer (no `unsafe`: the slack at the front of an
/// ordinary `Vec` is skipped).
#[derive(Clone, Debug)]
struct Aligned {
    raw: Vec<f32>,
    off: usize,
    len: usize,
}

impl Aligned {
    fn zeros(len: usize) -> Self {
        let raw = vec![0.0f32; len + 16];
        let off = raw.as_ptr().align_offset(64);
        // `align_offset` may decline; an unaligned buffer is still correct.
        let off = if off < 16 { off } else { 0 };
        Self { raw, off, len }
    }

    fn as_slice(&self) -> &[f32] {
        &self.raw[self.off..self.off + self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.raw[self.off..self.off + self.len]
    }
}

/// An owned row-major `nrows × ncols` f32 matrix with a padded row stride.
#[derive(Clone, Debug)]
pub struct RowMat {
    buf: Aligned,
    nrows: usize,
    ncols: usize,
    stride: usize,
}

impl RowMat {
    /// A zero matrix.
    pub fn zeros(nrows: usize, ncols: usize) -> Self {
        let stride = padded(ncols);
        Self {
            buf: Aligned::zeros(nrows * stride),
            nrows,
            ncols,
            stride,
        }
    }

    /// Rows.
    pub fn nrows(&self) -> usize {
        self.nrows
    }

    /// Columns.
    pub fn ncols(&self) -> usize {
        self.ncols
    }

    /// Row stride in floats.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Row `i` (`ncols` floats).
    #[inline]
    pub fn row(&self, i: usize) -> &[f32] {
        &self.buf.as_slice()[i * self.stride..i * self.stride + self.ncols]
    }

    /// Row `i`, mutable.
    #[inline]
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        let s = self.stride;
        &mut self.buf.as_mut_slice()[i * s..i * s + self.ncols]
    }

    /// The whole matrix as a view.
    pub fn view(&self) -> View<'_> {
        View {
            data: self.buf.as_slice(),
            nrows: self.nrows,
            ncols: self.ncols,
            rs: self.stride,
            cs: 1,
        }
    }

    /// The whole matrix as a mutable view.
    pub fn view_mut(&mut self) -> ViewMut<'_> {
        ViewMut {
            data: self.buf.as_mut_slice(),
            nrows: self.nrows,
            ncols: self.ncols,
            stride: self.stride,
        }
    }

    /// The whole buffer (`nrows · stride` floats, padding included), mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        self.buf.as_mut_slice()
    }

    /// Sets every entry (padding included) to zero.
    pub fn fill_zero(&mut self) {
        self.buf.as_mut_slice().fill(0.0);
    }
}

/// A borrowed strided matrix: entry `(i, j)` is `data[i·rs + j·cs]`. Row-major when `cs = 1`
/// (the usual case), column-major after [`View::t`].
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    data: &'a [f32],
    nrows: usize,
    ncols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> View<'a> {
    /// A row-major view of `data` as `nrows × ncols` with row stride `stride`.
    ///
    /// # Panics
    /// When `data` is too short or `stride < ncols`.
    #[track_caller]
    pub fn new(data: &'a [f32], nrows: usize, ncols: usize, stride: usize) -> Self {
        assert!(stride >= ncols, "stride {stride} < ncols {ncols}");
        assert!(
            nrows == 0 || data.len() >= (nrows - 1) * stride + ncols,
            "buffer too short"
        );
        Self {
            data,
            nrows,
            ncols,
            rs: stride,
            cs: 1,
        }
    }

    /// Rows.
    #[inline]
    pub fn nrows(&self) -> usize {
        self.nrows
    }

    /// Columns.
    #[inline]
    pub fn ncols(&self) -> usize {
        self.ncols
    }

    /// Row stride.
    #[inline]
    pub fn row_stride(&self) -> usize {
        self.rs
    }

    /// Column stride (1 for a row-major view).
    #[inline]
    pub fn col_stride(&self) -> usize {
        self.cs
    }

    /// The underlying slice, starting at entry (0, 0).
    #[inline]
    pub fn data(&self) -> &'a [f32] {
        self.data
    }

    /// Entry `(i, j)`.
    #[inline]
    pub fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }

    /// Row `i` of a row-major view.
    ///
    /// # Panics
    /// When the view is not row-major.
    #[inline]
    #[track_caller]
    pub fn row(&self, i: usize) -> &'a [f32] {
        assert_eq!(self.cs, 1, "row() of a non-row-major view");
        &self.data[i * self.rs..i * self.rs + self.ncols]
    }

    /// The transpose (no copy).
    pub fn t(self) -> View<'a> {
        View {
            data: self.data,
            nrows: self.ncols,
            ncols: self.nrows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// Rows `start..start + n`.
    #[track_caller]
    pub fn rows(&self, start: usize, n: usize) -> View<'a> {
        assert!(start + n <= self.nrows);
        let data = if n == 0 || self.ncols == 0 {
            &[][..]
        } else {
            &self.data[start * self.rs..]
        };
        View {
            data,
            nrows: n,
            ..*self
        }
    }

    /// Columns `start..start + n`.
    #[track_caller]
    pub fn cols(&self, start: usize, n: usize) -> View<'a> {
        self.t().rows(start, n).t()
    }

    /// The same matrix as a faer view.
    pub fn faer(&self) -> MatRef<'a, f32> {
        if self.nrows == 0 || self.ncols == 0 {
            return MatRef::from_row_major_slice(&[], self.nrows, self.ncols);
        }
        if self.cs == 1 {
            MatRef::from_row_major_slice_with_stride(self.data, self.nrows, self.ncols, self.rs)
        } else {
            assert_eq!(self.rs, 1, "faer views need one unit stride");
            MatRef::from_column_major_slice_with_stride(self.data, self.nrows, self.ncols, self.cs)
        }
    }
}

/// A 64-byte aligned f32 scratch vector that only ever grows.
#[derive(Clone, Debug)]
pub struct Scratch {
    buf: Aligned,
}

impl Scratch {
    /// A scratch vector of `len` zeros.
    pub fn zeros(len: usize) -> Self {
        Self {
            buf: Aligned::zeros(len),
        }
    }

    /// The first `len` floats, growing the buffer (once) when it is shorter.
    pub fn get(&mut self, len: usize) -> &mut [f32] {
        if self.buf.len < len {
            self.buf = Aligned::zeros(len);
        }
        &mut self.buf.as_mut_slice()[..len]
    }

    /// The first `len` floats, read-only.
    ///
    /// # Panics
    /// When the buffer is shorter than `len`.
    #[track_caller]
    pub fn slice(&self, len: usize) -> &[f32] {
        &self.buf.as_slice()[..len]
    }
}

/// A mutable row-major matrix view.
#[derive(Debug)]
pub struct ViewMut<'a> {
    data: &'a mut [f32],
    nrows: usize,
    ncols: usize,
    stride: usize,
}

impl<'a> ViewMut<'a> {
    /// A view of `data` as `nrows × ncols` with row stride `stride`.
    ///
    /// # Panics
    /// When `data` is too short or `stride < ncols`.
    #[track_caller]
    pub fn new(data: &'a mut [f32], nrows: usize, ncols: usize, stride: usize) -> Self {
        assert!(stride >= ncols, "stride {stride} < ncols {ncols}");
        assert!(
            nrows == 0 || data.len() >= (nrows - 1) * stride + ncols,
            "buffer too short"
        );
        Self {
            data,
            nrows,
            ncols,
            stride,
        }
    }

    /// Rows.
    #[inline]
    pub fn nrows(&self) -> usize {
        self.nrows
    }

    /// Columns.
    #[inline]
    pub fn ncols(&self) -> usize {
        self.ncols
    }

    /// Row stride.
    #[inline]
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Row `i`, mutable.
    #[inline]
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        &mut self.data[i * self.stride..i * self.stride + self.ncols]
    }

    /// Read-only reborrow.
    pub fn rb(&self) -> View<'_> {
        View {
            data: self.data,
            nrows: self.nrows,
            ncols: self.ncols,
            rs: self.stride,
            cs: 1,
        }
    }

    /// Mutable reborrow.
    pub fn rb_mut(&mut self) -> ViewMut<'_> {
        ViewMut {
            data: self.data,
            nrows: self.nrows,
            ncols: self.ncols,
            stride: self.stride,
        }
    }

    /// Rows `start..start + n`.
    #[track_caller]
    pub fn into_rows(self, start: usize, n: usize) -> ViewMut<'a> {
        assert!(start + n <= self.nrows);
        if n == 0 {
            return ViewMut {
                data: &mut [],
                nrows: 0,
                ncols: self.ncols,
                stride: self.stride,
            };
        }
        ViewMut::new(
            &mut self.data[start * self.stride..],
            n,
            self.ncols,
            self.stride,
        )
    }

    /// Columns `start..start + n`.
    #[track_caller]
    pub fn into_cols(self, start: usize, n: usize) -> ViewMut<'a> {
        assert!(start + n <= self.ncols);
        if self.nrows == 0 {
            return ViewMut {
                data: &mut [],
                nrows: 0,
                ncols: n,
                stride: self.stride,
            };
        }
        ViewMut::new(&mut self.data[start..], self.nrows, n, self.stride)
    }

    /// The same matrix as a mutable faer view.
    pub fn faer(self) -> MatMut<'a, f32> {
        if self.nrows == 0 || self.ncols == 0 {
            return MatMut::from_row_major_slice_mut(&mut [], self.nrows, self.ncols);
        }
        // Not `from_row_major_slice_with_stride_mut`: in faer 0.24.4 it swaps the two strides
        // (it builds a column-major view), which writes outside the matrix. The transpose of a
        // column-major view is the row-major view we mean.
        MatMut::from_column_major_slice_with_stride_mut(
            self.data,
            self.ncols,
            self.nrows,
            self.stride,
        )
        .transpose_mut()
    }
}
