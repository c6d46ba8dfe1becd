//! CPU matmul through the `gemm` crate (cache-blocked, SIMD micro-kernels, rayon threads); it reads
//! strided operands directly, so transposed views cost nothing. `benches/matmul.rs` compares it with
//! `matrixmultiply`.

use rayon::prelude::*;

use crate::Layout;
use crate::ops::matmul::{MatmulDims, matrix_strides};

/// Below this many multiply-adds per matrix, batches run in parallel and each product on one thread.
const SMALL_PRODUCT: usize = 1 << 18;

/// `C = A · B` for strided `A` and `B` (already broadcast to the batch shape); returns C contiguous.
pub(crate) fn matmul(
    (a, la): (&[f32], &Layout),
    (b, lb): (&[f32], &Layout),
    d: &MatmulDims,
) -> Vec<f32> {
    let batches: usize = d.batch.iter().product();
    let mut out = vec![0.0f32; batches * d.m * d.n];
    if d.m == 0 || d.n == 0 || d.k == 0 {
        return out;
    }
    let (a_rs, a_cs, a_bs) = matrix_strides(la);
    let (b_rs, b_cs, b_bs) = matrix_strides(lb);
    let offset = |batch: usize, strides: &[usize], base: usize| {
        let mut rest = batch;
        let mut off = base;
        for (dim, stride) in d.batch.iter().zip(strides).rev() {
            off += (rest % dim) * stride;
            rest /= dim;
        }
        off
    };
    let small = d.m * d.n * d.k < SMALL_PRODUCT;
    let threads = rayon::current_num_threads();
    let product = |(batch, c): (usize, &mut [f32])| {
        let parallelism = if small || batches >= threads {
            gemm::Parallelism::None
        } else {
            gemm::Parallelism::Rayon(threads)
        };
        let a_ptr = a[offset(batch, a_bs, la.offset())..].as_ptr();
        let b_ptr = b[offset(batch, b_bs, lb.offset())..].as_ptr();
        // SAFETY: the layouts lie within their storages (checked when the views were made), and the
        // strides describe m×k and k×n matrices starting at these pointers; `c` holds m×n elements.
        unsafe {
            gemm::gemm(
                d.m,
                d.n,
                d.k,
                c.as_mut_ptr(),
                1,
                d.n as isize,
                false,
                a_ptr,
                a_cs as isize,
                a_rs as isize,
                b_ptr,
                b_cs as isize,
                b_rs as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
    };
    if batches > 1 && (small || batches >= threads) {
        out.par_chunks_mut(d.m * d.n).enumerate().for_each(product);
    } else {
        out.chunks_mut(d.m * d.n).enumerate().for_each(product);
    }
    out
}
