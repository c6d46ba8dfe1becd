//! Launcher for matmul on `shaders/gemm.wgsl` (MODE 0): strided operands, broadcast batch dimensions,
//! an optional bias and ReLU applied in the store.

use std::sync::Arc;

use super::gemm::{self, A_VEC4, B_VEC4, GemmCall, GemmShape, HAS_BIAS, RELU};
use super::params::Params;
use super::{GpuBuffer, GpuContext};
use crate::layout::coalesce_dims;
use crate::ops::matmul::{MatmulDims, matrix_strides};
use crate::{Error, Layout, Result};

/// Batch dimensions the kernel walks (after merging).
const MAX_BATCH_RANK: usize = 4;

/// `C = A · B (+ bias[n])`, then `max(C, 0)` with `relu`, with A, B already broadcast to the batch
/// shape; C is contiguous `[batch.., m, n]`.
pub(crate) fn matmul(
    ctx: &Arc<GpuContext>,
    (a, la): (&GpuBuffer, &Layout),
    (b, lb): (&GpuBuffer, &Layout),
    bias: Option<&GpuBuffer>,
    relu: bool,
    d: &MatmulDims,
) -> Result<GpuBuffer> {
    let op = "matmul";
    let batches: usize = d.batch.iter().product();
    let out = ctx.alloc(op, (batches * d.m * d.n * 4) as u64)?;
    let (a_rs, a_cs, a_bs) = matrix_strides(la);
    let (b_rs, b_cs, b_bs) = matrix_strides(lb);
    let (batch_dims, batch_strides) = coalesce_dims(&d.batch, &[a_bs, b_bs]);
    if batch_dims.len() > MAX_BATCH_RANK {
        return Err(Error::invalid(
            op,
            format!(
                "{} batch dimensions that cannot be merged; reshape the batch to at most {MAX_BATCH_RANK}",
                batch_dims.len()
            ),
        ));
    }
    let params = Params::new()
        .with_words(
            op,
            8,
            &[
                la.offset(),
                a_rs,
                a_cs,
                lb.offset(),
                b_rs,
                b_cs,
                batch_dims.len(),
            ],
        )?
        .with_words(op, 16, &batch_dims)?
        .with_words(op, 20, &batch_strides[0])?
        .with_words(op, 24, &batch_strides[1])?;
    // The contiguous axis of each operand decides how its tile is loaded (coalesced either way).
    let shape = GemmShape {
        m: d.m,
        n: d.n,
        k: d.k,
        batch: batches,
        a_k_major: a_cs == 1 || (a_rs != 1 && a_cs < a_rs),
        b_k_major: b_rs == 1 && b_cs != 1,
    };
    // An operand is read as vec4 along its contiguous axis when that axis has stride 1 and a length
    // that is a multiple of four, and its offset and every other stride are too: each quad then
    // starts at a multiple of four and lies wholly inside or outside the matrix.
    let quads =
        |(contiguous, other): (usize, usize), length: usize, offset: usize, batch: &[usize]| {
            contiguous == 1
                && length.is_multiple_of(4)
                && [other, offset]
                    .iter()
                    .chain(batch)
                    .all(|s| s.is_multiple_of(4))
        };
    let a_strides = if shape.a_k_major {
        (a_cs, a_rs)
    } else {
        (a_rs, a_cs)
    };
    let a_len = if shape.a_k_major { d.k } else { d.m };
    let b_strides = if shape.b_k_major {
        (b_rs, b_cs)
    } else {
        (b_cs, b_rs)
    };
    let b_len = if shape.b_k_major { d.k } else { d.n };
    let mut vec4_flags = 0;
    if quads(a_strides, a_len, la.offset(), &batch_strides[0]) {
        vec4_flags |= A_VEC4;
    }
    if quads(b_strides, b_len, lb.offset(), &batch_strides[1]) {
        vec4_flags |= B_VEC4;
    }
    gemm::run(
        ctx,
        GemmCall {
            op,
            mode: 0,
            shape,
            params,
            flags: vec4_flags
                | if bias.is_some() { HAS_BIAS } else { 0 }
                | if relu { RELU } else { 0 },
            a,
            b,
            bias,
            out: &out,
            out2: None,
        },
    )?;
    Ok(out)
}
