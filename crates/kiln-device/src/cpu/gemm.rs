//! The one CPU GEMM that matmul and conv2d call: `C (m×n) = A (m×k) · B (k×n) [+ C]` on strided f32
//! matrices, run by `matrixmultiply` (multi-threaded, AVX2/FMA). It measured faster than the `gemm`
//! crate on every size here, and as fast as a hand-written AVX-512 kernel that was tried and dropped
//! (`cargo bench --bench cpu_matmul`; figures in BENCHMARKS.md).

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
    assert!(c.len() >= c_extent, "output holds m×n elements");
    assert!(
        a.data.len() >= extent(&a, m, k) && b.data.len() >= extent(&b, k, n),
        "operands within their slices"
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserts above keep every strided access of A, B and C inside their slices.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.data.as_ptr(),
            a.row_stride as isize,
            a.col_stride as isize,
            b.data.as_ptr(),
            b.row_stride as isize,
            b.col_stride as isize,
            if accumulate { 1.0 } else { 0.0 },
            c.as_mut_ptr(),
            c_row_stride as isize,
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{Matrix, sgemm};

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
