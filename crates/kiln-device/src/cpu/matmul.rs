//! CPU matmul: one strided GEMM per batch (`cpu/gemm.rs`), so transposed views cost nothing; many
//! small products run in parallel over the batch.

use rayon::prelude::*;

use std::mem::MaybeUninit;

use super::gemm::{Matrix, sgemm_uninit};
use super::host_pool;
use crate::Layout;
use crate::ops::matmul::{MatmulDims, matrix_strides};

/// Below this many multiply-adds per matrix, batches run in parallel.
const SMALL_PRODUCT: usize = 1 << 18;

/// `C = A · B` for strided `A` and `B` (already broadcast to the batch shape); returns C contiguous.
pub(crate) fn matmul(
    (a, la): (&[f32], &Layout),
    (b, lb): (&[f32], &Layout),
    d: &MatmulDims,
) -> Vec<f32> {
    let batches: usize = d.batch.iter().product();
    let len = batches * d.m * d.n;
    if d.m == 0 || d.n == 0 || d.k == 0 {
        return host_pool::zeros(len);
    }
    // Not zeroed first: the GEMM writes every element without reading it.
    let mut out = host_pool::take(len);
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
    let product = |(batch, c): (usize, &mut [MaybeUninit<f32>])| {
        let a = Matrix {
            data: &a[offset(batch, a_bs, la.offset())..],
            row_stride: a_rs,
            col_stride: a_cs,
        };
        let b = Matrix {
            data: &b[offset(batch, b_bs, lb.offset())..],
            row_stride: b_rs,
            col_stride: b_cs,
        };
        sgemm_uninit(d.m, d.n, d.k, a, b, c);
    };
    let matrices = &mut out.spare_capacity_mut()[..len];
    if batches > 1 && (small || batches >= threads) {
        (matrices.par_chunks_mut(d.m * d.n).enumerate()).for_each(product);
    } else {
        (matrices.chunks_mut(d.m * d.n).enumerate()).for_each(product);
    }
    // SAFETY: the matrices cover the first `len` elements and `sgemm_uninit` wrote every one.
    unsafe { out.set_len(len) };
    out
}

/// A dense layer on the host: `x · wᵀ` for `x` `[n, k]` (`x_layout` over `x`) and `w` `[out, k]`
/// (contiguous), plus `bias` and then max(·, 0) with `relu`, applied to each row right after the
/// product wrote it (no pass of their own, no intermediate tensors).
pub(crate) fn linear(
    (x, x_layout): (&[f32], &Layout),
    w: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    (n, k, out): (usize, usize, usize),
) -> Vec<f32> {
    let len = n * out;
    if n == 0 || out == 0 {
        return host_pool::zeros(len);
    }
    let mut y = host_pool::take(len);
    let (x_rs, x_cs, _) = matrix_strides(x_layout);
    let xm = Matrix {
        data: &x[x_layout.offset()..],
        row_stride: x_rs,
        col_stride: x_cs,
    };
    // wᵀ read through strides: element (p, j) of the [k, out] operand is w[j·k + p].
    let wt = Matrix {
        data: w,
        row_stride: 1,
        col_stride: k,
    };
    let values = sgemm_uninit(n, out, k, xm, wt, &mut y.spare_capacity_mut()[..len]);
    bias_relu_rows(values, out, bias, relu);
    // SAFETY: `sgemm_uninit` wrote all `len` elements.
    unsafe { y.set_len(len) };
    y
}

/// Rows of `width` values: `bias` (one per column) added, then max(·, 0) with `relu`, in one pass
/// (the epilogue of a product whose columns are output channels: Dense, the channels-last conv1d).
pub(crate) fn bias_relu_rows(values: &mut [f32], width: usize, bias: Option<&[f32]>, relu: bool) {
    if bias.is_none() && !relu {
        return;
    }
    for row in values.chunks_mut(width.max(1)) {
        match (bias, relu) {
            (Some(b), true) => (row.iter_mut().zip(b)).for_each(|(v, b)| *v = (*v + b).max(0.0)),
            (Some(b), false) => row.iter_mut().zip(b).for_each(|(v, b)| *v += b),
            (None, _) => row.iter_mut().for_each(|v| *v = v.max(0.0)),
        }
    }
}
