//! The one CPU GEMM that matmul, conv1d and conv2d call: `C (m×n) = A (m×k) · B (k×n) [+ C]` on
//! strided f32 matrices, run by the `gemm` crate (AVX-512, AVX2/FMA or scalar micro-kernels, chosen
//! at run time; AVX-512 through its `x86-v4` feature). On an AVX-512 machine it measured 1.0–2.5×
//! `matrixmultiply` on the training steps' shapes and 1.17× on square ones, single-threaded; a
//! hand-written AVX-512 kernel tried earlier bought nothing (`cargo bench --bench cpu_matmul`,
//! figures in BENCHMARKS.md).
//!
//! Threads come from rayon, the pool every other CPU kernel uses: a large product is cut into one
//! block of rows (or columns) per worker, each multiplied single-threaded. A GEMM library's own
//! thread pool would hand work from rayon's workers to a second set of threads and back; on two
//! cores the two pools' context switches cost ~15% of a text-CNN training step (`perf`).

/// A strided matrix: its data starts at `data[0]`; element (i, j) is at `i·row_stride + j·col_stride`.
pub(crate) struct Matrix<'a> {
    pub data: &'a [f32],
    pub row_stride: usize,
    pub col_stride: usize,
}

/// `c = a · b`, or `c += a · b` when `accumulate`; `c` is row-major `m×n`.
pub(crate) fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: Matrix<'_>,
    b: Matrix<'_>,
    c: &mut [f32],
    accumulate: bool,
) {
    sgemm_strided(m, n, k, a, b, c, n, accumulate);
}

/// `c = a · b` into memory that need not be initialised (row-major `m×n`): every element is
/// written, none read, so an output buffer need not be zeroed first. Returns `c` initialised.
pub(crate) fn sgemm_uninit<'c>(
    m: usize,
    n: usize,
    k: usize,
    a: Matrix<'_>,
    b: Matrix<'_>,
    c: &'c mut [std::mem::MaybeUninit<f32>],
) -> &'c mut [f32] {
    assert_eq!(c.len(), m * n, "output holds m×n elements");
    if takes_gemv(m, n, &b) {
        // One row: zeros first (n elements), then the unpacked product adds into them.
        c.iter_mut().for_each(|v| {
            v.write(0.0);
        });
        // SAFETY: every element was just written; `f32` and `MaybeUninit<f32>` share a layout.
        let c = unsafe { &mut *(c as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
        gemv(k, &a, &b, c, true);
        return c;
    }
    // SAFETY: with `accumulate` false gemm writes every element of C without reading it
    // (`read_dst = false`), and the blocks of `gemm` cover all of C; so C may be
    // uninitialised, and is initialised afterwards. `f32` and `MaybeUninit<f32>` share a layout.
    unsafe {
        gemm(m, n, k, a, b, c.as_mut_ptr().cast(), c.len(), n, false);
        &mut *(c as *mut [std::mem::MaybeUninit<f32>] as *mut [f32])
    }
}

/// [`sgemm`] into an `m×n` matrix whose rows are `c_row_stride` apart in `c` (≥ n).
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm_strided(
    m: usize,
    n: usize,
    k: usize,
    a: Matrix<'_>,
    b: Matrix<'_>,
    c: &mut [f32],
    c_row_stride: usize,
    accumulate: bool,
) {
    if takes_gemv(m, n, &b) {
        return gemv(k, &a, &b, &mut c[..n], accumulate);
    }
    // SAFETY: `c` is an initialised slice of its own length.
    unsafe {
        gemm(
            m,
            n,
            k,
            a,
            b,
            c.as_mut_ptr(),
            c.len(),
            c_row_stride,
            accumulate,
        )
    }
}

/// The GEMM behind [`sgemm_strided`] and [`sgemm_uninit`], on C's pointer and length.
///
/// # Safety
/// `c` points to `c_len` writable f32 (initialised ones unless `accumulate` is false).
#[allow(clippy::too_many_arguments)]
unsafe fn gemm(
    m: usize,
    n: usize,
    k: usize,
    a: Matrix<'_>,
    b: Matrix<'_>,
    c: *mut f32,
    c_len: usize,
    c_row_stride: usize,
    accumulate: bool,
) {
    assert!(c_row_stride >= n, "rows of C do not overlap");
    let extent = |x: &Matrix<'_>, rows: usize, cols: usize| {
        if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * x.row_stride + (cols - 1) * x.col_stride + 1
        }
    };
    let c_extent = if m == 0 || n == 0 {
        0
    } else {
        (m - 1) * c_row_stride + n
    };
    assert!(c_len >= c_extent, "output holds m×n elements");
    assert!(
        a.data.len() >= extent(&a, m, k) && b.data.len() >= extent(&b, k, n),
        "operands within their slices"
    );
    if m == 0 || n == 0 {
        return;
    }
    // Called from a rayon worker, the caller's parallel loop already keeps every thread busy;
    // cutting the product again would only pack B once more per block.
    let threads = if rayon::current_thread_index().is_some() {
        1
    } else {
        rayon::current_num_threads()
    };
    let blocks = BlockPlan::for_shape(m, n, k, threads);
    let c_ptr = SendPtr(c);
    let run_block = |block: usize| {
        let (rows, cols) = blocks.block(block, m, n);
        if rows.is_empty() || cols.is_empty() {
            return;
        }
        // SAFETY: the asserts above keep every strided access of A, B and C inside their slices,
        // and the blocks cover disjoint rows (or columns) of C, so no two write the same element.
        // With `read_dst` false gemm writes C without reading it (α is ignored).
        unsafe {
            gemm::gemm(
                rows.len(),
                cols.len(),
                k,
                c_ptr.get().add(rows.start * c_row_stride + cols.start),
                1,
                c_row_stride as isize,
                accumulate,
                a.data.as_ptr().add(rows.start * a.row_stride),
                a.col_stride as isize,
                a.row_stride as isize,
                b.data.as_ptr().add(cols.start * b.col_stride),
                b.col_stride as isize,
                b.row_stride as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    };
    if blocks.count == 1 {
        run_block(0);
    } else {
        use rayon::prelude::*;
        (0..blocks.count).into_par_iter().for_each(run_block);
    }
}

/// Whether a product goes to [`gemv`]: one row of C, and B contiguous along one of its axes.
fn takes_gemv(m: usize, n: usize, b: &Matrix<'_>) -> bool {
    m == 1 && n > 0 && (b.col_stride == 1 || b.row_stride == 1)
}

/// One row of C (`m = 1`, batch-1 inference): `c = a · B` without packing B, which for a single row
/// costs as much as the product. B row-major (`k×n`): rows of B scaled and added; B transposed
/// (a stored `n×k`, as a Dense layer's weights): one dot product per output.
fn gemv(k: usize, a: &Matrix<'_>, b: &Matrix<'_>, c: &mut [f32], accumulate: bool) {
    let a_at = |p: usize| a.data[p * a.col_stride];
    if b.col_stride == 1 {
        if !accumulate {
            c.fill(0.0);
        }
        for p in 0..k {
            let (scale, row) = (a_at(p), &b.data[p * b.row_stride..][..c.len()]);
            c.iter_mut().zip(row).for_each(|(c, &b)| *c += scale * b);
        }
    } else {
        let a_row: Vec<f32> = (0..k).map(a_at).collect();
        for (j, out) in c.iter_mut().enumerate() {
            let column = &b.data[j * b.col_stride..][..k];
            let dot = dot(&a_row, column);
            *out = if accumulate { *out + dot } else { dot };
        }
    }
}

/// Σ x·y with 16 independent partial sums, so the loop vectorises.
fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let (xc, yc) = (x.chunks_exact(16), y.chunks_exact(16));
    let tail: f32 = (xc.remainder().iter().zip(yc.remainder()))
        .map(|(a, b)| a * b)
        .sum();
    for (xs, ys) in xc.zip(yc) {
        for ((l, a), b) in lanes.iter_mut().zip(xs).zip(ys) {
            *l += a * b;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// C's pointer, shared by the blocks that write disjoint parts of it.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: each block writes only its own rows or columns of C (see `gemm`).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// How a product is cut between threads: `count` blocks of whole rows (`by_rows`) or whole columns.
#[derive(Debug, PartialEq)]
struct BlockPlan {
    count: usize,
    by_rows: bool,
}

/// Below this many multiply-adds a product runs on one thread (a hand-off costs a few µs).
const PARALLEL_MIN_MACS: usize = 1 << 18;
/// Rows or columns per block are a multiple of this (the micro-kernels' tile edge).
const BLOCK_ALIGN: usize = 16;

impl BlockPlan {
    /// One block per thread, cutting the longer of C's sides, when the product is large enough and
    /// that side has at least two aligned blocks' worth; otherwise one block.
    fn for_shape(m: usize, n: usize, k: usize, threads: usize) -> BlockPlan {
        let by_rows = m >= n;
        let side = if by_rows { m } else { n };
        let count = if m.saturating_mul(n).saturating_mul(k) < PARALLEL_MIN_MACS {
            1
        } else {
            threads.min(side / BLOCK_ALIGN).max(1)
        };
        BlockPlan { count, by_rows }
    }

    /// Block `i`'s rows and columns of C.
    fn block(
        &self,
        i: usize,
        m: usize,
        n: usize,
    ) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let side = if self.by_rows { m } else { n };
        let per = side.div_ceil(self.count).next_multiple_of(BLOCK_ALIGN);
        let part = (i * per).min(side)..((i + 1) * per).min(side);
        if self.by_rows {
            (part, 0..n)
        } else {
            (0..m, part)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BlockPlan, Matrix, sgemm, sgemm_uninit};

    #[test]
    fn blocks_cover_the_output_once() {
        for &(m, n, k, threads) in &[(1000, 10, 64, 2), (10, 1000, 64, 3), (100, 100, 100, 8)] {
            let plan = BlockPlan::for_shape(m, n, k, threads);
            assert!(plan.count > 1, "{m}x{n}x{k} is worth splitting");
            let mut covered = vec![0u8; m * n];
            for i in 0..plan.count {
                let (rows, cols) = plan.block(i, m, n);
                for r in rows {
                    for c in cols.clone() {
                        covered[r * n + c] += 1;
                    }
                }
            }
            assert!(covered.iter().all(|&c| c == 1), "{m}x{n}x{k} on {threads}");
        }
        assert_eq!(BlockPlan::for_shape(8, 8, 8, 2).count, 1);
    }

    /// One row of C (the unpacked path) with B row-major and transposed, overwriting and
    /// accumulating, against a plain loop.
    #[test]
    fn one_row_products_match_a_plain_loop() {
        for &(n, k) in &[(1, 1), (10, 5408), (33, 17), (70, 300)] {
            let (a, b) = (values(k, 1.0), values(k * n, 2.0));
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            for (data, row_stride, col_stride) in [(&b, n, 1), (&bt, 1, k)] {
                // accumulate, then overwrite, then into uninitialised memory
                for (accumulate, uninit) in [(true, false), (false, false), (false, true)] {
                    let mut c = vec![0.5f32; n];
                    let am = Matrix {
                        data: &a,
                        row_stride: k,
                        col_stride: 1,
                    };
                    let bm = Matrix {
                        data,
                        row_stride,
                        col_stride,
                    };
                    if uninit {
                        let mut out = Vec::with_capacity(n);
                        sgemm_uninit(1, n, k, am, bm, &mut out.spare_capacity_mut()[..n]);
                        // SAFETY: sgemm_uninit wrote all n elements.
                        unsafe { out.set_len(n) };
                        c = out;
                    } else {
                        sgemm(1, n, k, am, bm, &mut c, accumulate);
                    }
                    for (j, got) in c.iter().enumerate() {
                        let want: f32 = (0..k).map(|p| a[p] * b[p * n + j]).sum::<f32>()
                            + if accumulate { 0.5 } else { 0.0 };
                        assert!(
                            (got - want).abs() <= 1e-3 * (1.0 + want.abs()),
                            "1x{n}x{k} column {j}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    fn values(n: usize, seed: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32 * 12.9898 + seed).sin() * 43758.547).fract())
            .collect()
    }

    /// Every tile edge case of the blocked kernels against a plain triple loop, with row-major and
    /// transposed operands, overwriting and accumulating.
    #[test]
    fn matches_a_plain_loop_on_awkward_shapes() {
        for &(m, n, k) in &[
            (1, 1, 1),
            (12, 16, 1),
            (13, 33, 17),
            (100, 70, 300),
            (97, 2100, 5),
            (200, 40, 600),
        ] {
            let (a, b) = (values(m * k, 1.0), values(k * n, 2.0));
            for transposed in [false, true] {
                // A as stored row-major, or as the transpose of a stored k×m matrix.
                let (at, a_rs, a_cs) = if transposed {
                    (
                        (0..k * m)
                            .map(|i| a[(i % m) * k + i / m])
                            .collect::<Vec<_>>(),
                        1,
                        m,
                    )
                } else {
                    (a.clone(), k, 1)
                };
                for accumulate in [false, true] {
                    let mut c = vec![0.5f32; m * n];
                    let am = Matrix {
                        data: &at,
                        row_stride: a_rs,
                        col_stride: a_cs,
                    };
                    let bm = Matrix {
                        data: &b,
                        row_stride: n,
                        col_stride: 1,
                    };
                    sgemm(m, n, k, am, bm, &mut c, accumulate);
                    for i in 0..m {
                        for j in 0..n {
                            let want: f32 =
                                (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum::<f32>()
                                    + if accumulate { 0.5 } else { 0.0 };
                            let got = c[i * n + j];
                            assert!(
                                (got - want).abs() <= 1e-3 * (1.0 + want.abs()),
                                "{m}x{n}x{k} ({i},{j}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
